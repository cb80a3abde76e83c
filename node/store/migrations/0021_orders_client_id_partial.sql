-- only on postgresql
-- Most orders have no client id, yet each had an entry in this unique index, and PostgreSQL moved it
-- twice per order: at the insert (`pending`) and again at the batch's update, which changes `state`
-- and so can never be a HOT update (every index of the row gets a new entry). Only rows with a
-- client id need the index: NULLs never conflicted in it, and the one query by client id
-- (`client_id = ANY(…)`, node/actors/account.py) implies `client_id IS NOT NULL`, so it still uses
-- it. Two index writes fewer per order. Built before the old index is dropped, so a client id is
-- never unguarded; on a large `orders` table this migration takes a while, once.
CREATE UNIQUE INDEX orders_client_id_set ON orders (member_id, client_id) WHERE client_id IS NOT NULL;
DROP INDEX orders_client_id;
ALTER INDEX orders_client_id_set RENAME TO orders_client_id;
