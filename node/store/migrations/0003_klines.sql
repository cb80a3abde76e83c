CREATE TABLE klines (
    market TEXT NOT NULL,
    period INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    price_open BIGINT NOT NULL,
    price_high BIGINT NOT NULL,
    price_low BIGINT NOT NULL,
    price_close BIGINT NOT NULL,
    volume BIGINT NOT NULL,
    funds BIGINT NOT NULL DEFAULT 0,
    trades INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (market, period, ts)
);
CREATE TABLE kline_state (
    market TEXT PRIMARY KEY,
    last_trade_id BIGINT NOT NULL DEFAULT 0,
    last_ts BIGINT NOT NULL DEFAULT 0
);
