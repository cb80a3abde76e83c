-- Market ownership with fencing. Each grant of a market's lease carries a strictly increasing
-- `epoch`, copied into the market's state row in the same transaction; every batch a market actor
-- writes updates that row only `WHERE epoch = <its own>`, so a deposed owner's late write changes
-- nothing and rolls its whole batch back. `owner` is the node's name plus its boot id. `nodes_seen`
-- is each running process's heartbeat, so that `status` reads the truth about every node from the
-- store (and a command can tell whether a node is alive before it asks it to act). `orders.intake`
-- is the order in which the market took its orders in (a per-market counter), which lets a checker
-- prove that each member's orders reached the book in the order they were accepted.
ALTER TABLE market_leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE market_leases ADD COLUMN acquired_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE market_leases ADD COLUMN renewed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE markets_state ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE markets_state ADD COLUMN next_intake BIGINT NOT NULL DEFAULT 1;
ALTER TABLE orders ADD COLUMN intake BIGINT NOT NULL DEFAULT 0;
CREATE TABLE nodes_seen (
    node TEXT NOT NULL,
    boot TEXT NOT NULL,
    address TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    stopped_at BIGINT,
    status TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (node, boot)
);
CREATE INDEX nodes_seen_recent ON nodes_seen (seen_at);
