CREATE TABLE market_leases (
    market TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
