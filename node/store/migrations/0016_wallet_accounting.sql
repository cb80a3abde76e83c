-- Wallets that account for every coin. A withdrawal's payment is built and signed first and its bytes
-- (`raw_tx`) and txid stored before it is broadcast; it is followed to `confirmations`
-- (`almost_done` until then). Members see `note`; `admin_note` carries daemon details for staff.
-- A credited deposit that a re-org takes away is `reverted`: `reversed` says how much was taken
-- back, the rest is the member's shortfall and freezes the member's withdrawals (`withdraw_freezes`)
-- until an admin resolves it. Receives to wallet addresses no member owns are `wallet_receipts`.
ALTER TABLE withdraws ADD COLUMN raw_tx TEXT;
ALTER TABLE withdraws ADD COLUMN confirmations INTEGER NOT NULL DEFAULT 0;
ALTER TABLE withdraws ADD COLUMN admin_note TEXT NOT NULL DEFAULT '';
ALTER TABLE withdraws ADD COLUMN broadcast_at BIGINT;
ALTER TABLE deposits ADD COLUMN reversed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deposits ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE deposits ADD COLUMN coinbase INTEGER NOT NULL DEFAULT 0;
CREATE TABLE withdraw_freezes (
    id {id},
    member_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    ref TEXT NOT NULL,
    shortfall BIGINT NOT NULL DEFAULT 0,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolved_by TEXT,
    resolution TEXT
);
CREATE UNIQUE INDEX withdraw_freezes_ref ON withdraw_freezes (currency, ref);
CREATE INDEX withdraw_freezes_member ON withdraw_freezes (member_id, resolved_at);
CREATE TABLE wallet_receipts (
    id {id},
    currency TEXT NOT NULL,
    txid TEXT NOT NULL,
    txout INTEGER NOT NULL,
    address TEXT NOT NULL,
    amount BIGINT NOT NULL,
    coinbase INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX wallet_receipts_out ON wallet_receipts (currency, txid, txout);
