-- The book is rebuilt from `wait` orders sorted in memory: keeping `seq` out of this index saves an
-- index move for every order that starts resting (measured: ~4% more orders/s on SQLite).
DROP INDEX orders_market_state;
CREATE INDEX orders_market_state ON orders (market, state);
