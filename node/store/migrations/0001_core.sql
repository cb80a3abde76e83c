-- The core: members, their accounts and the ledger that explains every balance change, orders and
-- trades, each market's state, id blocks, deposits and withdrawals, API tokens and their tonces.
CREATE TABLE members (
    id {id},
    sn TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    activated INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    api_disabled INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE accounts (
    member_id BIGINT NOT NULL REFERENCES members(id),
    currency TEXT NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    locked BIGINT NOT NULL DEFAULT 0 CHECK (locked >= 0),
    PRIMARY KEY (member_id, currency)
);
CREATE TABLE ledger (
    id {id},
    member_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    d_balance BIGINT NOT NULL,
    d_locked BIGINT NOT NULL,
    fee BIGINT NOT NULL DEFAULT 0,
    reason TEXT NOT NULL,
    ref_type TEXT NOT NULL,
    ref_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_account ON ledger (member_id, currency, id);
CREATE TABLE orders (
    id BIGINT PRIMARY KEY,
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
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_client_id ON orders (member_id, client_id);
CREATE INDEX orders_market_state ON orders (market, state, seq);
CREATE INDEX orders_member_state ON orders (member_id, state, id);
CREATE TABLE trades (
    id BIGINT PRIMARY KEY,
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
CREATE INDEX trades_market ON trades (market, id);
CREATE INDEX trades_ask ON trades (ask_id);
CREATE INDEX trades_bid ON trades (bid_id);
CREATE INDEX trades_ask_member ON trades (ask_member_id, id);
CREATE INDEX trades_bid_member ON trades (bid_member_id, id);
CREATE TABLE markets_state (
    market TEXT PRIMARY KEY,
    next_seq BIGINT NOT NULL DEFAULT 1,
    last_price BIGINT,
    halted INTEGER NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE id_blocks (
    name TEXT PRIMARY KEY,
    next_block BIGINT NOT NULL
);
CREATE TABLE deposits (
    id {id},
    member_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    fee BIGINT NOT NULL DEFAULT 0,
    txid TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    confirmations INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE UNIQUE INDEX deposits_txid ON deposits (currency, txid);
CREATE INDEX deposits_member ON deposits (member_id, id);
CREATE TABLE api_tokens (
    id {id},
    member_id BIGINT NOT NULL REFERENCES members(id),
    access_key TEXT NOT NULL UNIQUE,
    secret_enc TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT 'all',
    ip_whitelist TEXT NOT NULL DEFAULT '',
    expires_at BIGINT,
    disabled INTEGER NOT NULL DEFAULT 0,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_member ON api_tokens (member_id);
CREATE TABLE tonces (
    access_key TEXT NOT NULL,
    tonce BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (access_key, tonce)
);
CREATE INDEX tonces_expiry ON tonces (expires_at);
