-- Wallets: deposit addresses, coin and bank deposits, withdrawals, wallet cursors, alerts.
-- A coin deposit is one output: exactly once per (currency, txid, txout); admin deposits keep txout 0.
-- A withdrawal in state `processing` with its `send_key` is the idempotency record, committed before
-- the daemon is asked to pay, so that a crash between paying and recording is reconciled, never repaid.
ALTER TABLE deposits ADD COLUMN txout INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deposits ADD COLUMN address TEXT;
ALTER TABLE deposits ADD COLUMN block_hash TEXT;
ALTER TABLE deposits ADD COLUMN memo TEXT;
ALTER TABLE deposits ADD COLUMN updated_at BIGINT;
DROP INDEX deposits_txid;
CREATE UNIQUE INDEX deposits_txid ON deposits (currency, txid, txout);
CREATE INDEX deposits_state ON deposits (currency, state, id);
CREATE TABLE deposit_addresses (
    id {id},
    member_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE UNIQUE INDEX deposit_addresses_address ON deposit_addresses (currency, address);
CREATE INDEX deposit_addresses_member ON deposit_addresses (member_id, currency, id);
CREATE TABLE withdraws (
    id {id},
    sn TEXT NOT NULL DEFAULT '',
    member_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    fee BIGINT NOT NULL DEFAULT 0 CHECK (fee >= 0),
    total BIGINT NOT NULL CHECK (total > 0),
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    txid TEXT,
    send_key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    network_fee BIGINT,
    audited_at BIGINT,
    approved_at BIGINT,
    approved_by TEXT,
    processing_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE UNIQUE INDEX withdraws_send_key ON withdraws (send_key);
CREATE INDEX withdraws_member ON withdraws (member_id, id);
CREATE INDEX withdraws_state ON withdraws (currency, state, id);
CREATE TABLE wallet_cursors (
    currency TEXT PRIMARY KEY,
    block_cursor TEXT,
    height BIGINT,
    status TEXT NOT NULL DEFAULT 'starting',
    last_error TEXT,
    balance BIGINT,
    node TEXT,
    checked_at BIGINT,
    updated_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE wallet_alerts (
    id {id},
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolution TEXT
);
CREATE UNIQUE INDEX wallet_alerts_ref ON wallet_alerts (currency, kind, ref);
