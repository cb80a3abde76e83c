-- Proof of solvency. A snapshot is one instant of the ledger: its secret derives every
-- member's nonces (both schemes), and the leaves (member, key, amount) per currency are kept so that a
-- member's partial tree can be re-derived for as long as the snapshot is retained. Amounts in these
-- tables are TEXT decimal integers: a sum over many BIGINT accounts need not fit in 64 bits.
CREATE TABLE solvency_snapshots (
    id {id},
    name TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    secret TEXT NOT NULL DEFAULT '',
    taken_at BIGINT,
    build_ms BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX solvency_snapshots_taken ON solvency_snapshots (state, taken_at);
CREATE TABLE solvency_liabilities (
    snapshot_id BIGINT NOT NULL REFERENCES solvency_snapshots(id),
    currency TEXT NOT NULL,
    decimals INTEGER NOT NULL,
    accounts INTEGER NOT NULL,
    total TEXT NOT NULL,
    house TEXT NOT NULL,
    maxwell_root TEXT NOT NULL,
    v2_root TEXT NOT NULL,
    leaves TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, currency)
);
CREATE TABLE solvency_assets (
    id {id},
    snapshot_id BIGINT NOT NULL REFERENCES solvency_snapshots(id),
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    amount TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    signature TEXT NOT NULL DEFAULT '',
    evidence TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX solvency_assets_snapshot ON solvency_assets (snapshot_id, currency, id);
CREATE TABLE solvency_asset_status (
    snapshot_id BIGINT NOT NULL REFERENCES solvency_snapshots(id),
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (snapshot_id, currency)
);
CREATE TABLE solvency_fiat (
    id {id},
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    evidence TEXT NOT NULL,
    declared_by TEXT NOT NULL DEFAULT '',
    declared_at BIGINT NOT NULL
);
CREATE INDEX solvency_fiat_currency ON solvency_fiat (currency, id);
