-- Recovery reads a market's book as `WHERE market = ? AND state = 'wait' ORDER BY seq`. Without
-- `seq` in this index SQLite sorted every resting order in a temporary B-tree on every start (~15%
-- of the read at 1M orders); with it the index hands the rows out in book order. Each order still
-- moves in this one index when its state changes (migration 0011 kept `seq` out to save ~4% of
-- orders/s; a node's start with a large book is what that saving cost).
DROP INDEX orders_market_state;
CREATE INDEX orders_market_state ON orders (market, state, seq);
