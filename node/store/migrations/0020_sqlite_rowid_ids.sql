-- only on sqlite
-- `orders`, `trades` and `settlements` were made with `id BIGINT PRIMARY KEY`, which SQLite keeps as
-- a unique index of its own beside the table's B-tree (keyed by a hidden rowid): each insert wrote
-- both, and each update by id looked up both. Rebuilt here with `id INTEGER PRIMARY KEY`, the rowid
-- itself: one B-tree fewer per row. Every column, constraint and index is kept as it was. PostgreSQL
-- has no hidden rowid (its primary key is the one index): this file runs on SQLite only.
CREATE TABLE orders_rowid (
    id INTEGER PRIMARY KEY,
    member_id BIGINT NOT NULL,
    market TEXT NOT NULL,
    side TEXT NOT NULL,
    ord_type TEXT NOT NULL,
    tif TEXT NOT NULL,
    price BIGINT NOT NULL,
    stop_price BIGINT NOT NULL DEFAULT 0,
    volume BIGINT NOT NULL CHECK (volume > 0),
    remaining BIGINT NOT NULL CHECK (remaining >= 0),
    funds BIGINT NOT NULL DEFAULT 0,
    origin_locked BIGINT NOT NULL CHECK (origin_locked >= 0),
    locked BIGINT NOT NULL CHECK (locked >= 0),
    funds_used BIGINT NOT NULL DEFAULT 0,
    trades_count INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0,
    triggered INTEGER NOT NULL DEFAULT 0,
    client_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    intake BIGINT NOT NULL DEFAULT 0
);
INSERT INTO orders_rowid (id, member_id, market, side, ord_type, tif, price, stop_price, volume, remaining, funds,
                          origin_locked, locked, funds_used, trades_count, state, seq, triggered, client_id,
                          created_at, updated_at, intake)
SELECT id, member_id, market, side, ord_type, tif, price, stop_price, volume, remaining, funds, origin_locked, locked,
       funds_used, trades_count, state, seq, triggered, client_id, created_at, updated_at, intake
FROM orders ORDER BY id;
DROP TABLE orders;
ALTER TABLE orders_rowid RENAME TO orders;
CREATE UNIQUE INDEX orders_client_id ON orders (member_id, client_id);
CREATE INDEX orders_market_state ON orders (market, state, seq);
CREATE INDEX orders_member_state ON orders (member_id, state, id);
CREATE TABLE trades_rowid (
    id INTEGER PRIMARY KEY,
    market TEXT NOT NULL,
    price BIGINT NOT NULL,
    volume BIGINT NOT NULL,
    funds BIGINT NOT NULL,
    ask_id BIGINT NOT NULL,
    bid_id BIGINT NOT NULL,
    ask_member_id BIGINT NOT NULL,
    bid_member_id BIGINT NOT NULL,
    taker_side TEXT NOT NULL,
    ask_fee BIGINT NOT NULL,
    bid_fee BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO trades_rowid (id, market, price, volume, funds, ask_id, bid_id, ask_member_id, bid_member_id, taker_side,
                          ask_fee, bid_fee, created_at)
SELECT id, market, price, volume, funds, ask_id, bid_id, ask_member_id, bid_member_id, taker_side, ask_fee, bid_fee,
       created_at
FROM trades ORDER BY id;
DROP TABLE trades;
ALTER TABLE trades_rowid RENAME TO trades;
CREATE INDEX trades_market ON trades (market, id);
CREATE INDEX trades_ask ON trades (ask_id);
CREATE INDEX trades_bid ON trades (bid_id);
CREATE INDEX trades_ask_member ON trades (ask_member_id, id);
CREATE INDEX trades_bid_member ON trades (bid_member_id, id);
CREATE TABLE settlements_rowid (
    id INTEGER PRIMARY KEY,
    shard BIGINT NOT NULL,
    member_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    d_balance BIGINT NOT NULL,
    d_locked BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    reason TEXT NOT NULL,
    ref_type TEXT NOT NULL,
    ref_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    applied_at BIGINT
);
INSERT INTO settlements_rowid (id, shard, member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id,
                               created_at, applied_at)
SELECT id, shard, member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, created_at, applied_at
FROM settlements ORDER BY id;
DROP TABLE settlements;
ALTER TABLE settlements_rowid RENAME TO settlements;
CREATE INDEX settlements_unapplied ON settlements (shard, id) WHERE applied_at IS NULL;
