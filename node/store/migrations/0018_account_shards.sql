-- Account shards: a member's accounts belong to shard `member_id % [actors] account_shards`, and in a
-- cluster each shard has one owner, leased like a market (lease `accounts/<shard>` in market_leases).
-- The grant copies the lease epoch into the shard's row here in the same transaction; every batch
-- that writes the shard's accounts first reads that row `FOR SHARE` and requires its own epoch, so a
-- deposed owner's late batch rolls back (and a grant waits for a batch in flight).
CREATE TABLE account_shards (
    shard BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL DEFAULT 0
);
-- The settlement outbox: balance changes that a market's batch made for members of a shard it does
-- not own, written in that batch's transaction, one row per ledger row to come. The shard's owner
-- applies them exactly once: it sets `applied_at` (only where it is still NULL) and posts the rows
-- it claimed to the ledger in the same transaction. Until then the books count them as in flight.
CREATE TABLE settlements (
    id BIGINT PRIMARY KEY,
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
CREATE INDEX settlements_unapplied ON settlements (shard, id) WHERE applied_at IS NULL;
-- The account shard epoch each ledger row was written under (0 outside the order path, or without
-- leases): a checker can tell that a shard's rows were written by one owner at a time.
ALTER TABLE ledger ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
