-- Cluster membership and market placement, kept in the store and changed by commands
-- (`cluster node add|remove`, `market place`, `market move`), so that adding a node or moving a
-- market does not mean editing every machine's cluster.toml. cluster.toml seeds both at the first
-- start (nodes: when the store has none; a market: when it has no placement yet). A removed node
-- keeps its row (`removed_at`), so status can still name it. `standbys` is a comma-separated list of
-- node names, or `*` for every other node of the cluster. `version` grows with every change, so a
-- node that runs a market can tell that the placement was changed after it took the market.
CREATE TABLE cluster_nodes (
    name TEXT PRIMARY KEY,
    address TEXT NOT NULL DEFAULT '',
    added_at BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE TABLE market_placement (
    market TEXT PRIMARY KEY,
    primary_node TEXT NOT NULL,
    standbys TEXT NOT NULL DEFAULT '*',
    version BIGINT NOT NULL DEFAULT 1,
    placed_at BIGINT NOT NULL
);
