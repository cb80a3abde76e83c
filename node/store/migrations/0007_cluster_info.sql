CREATE TABLE cluster_info (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
