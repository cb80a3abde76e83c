-- Rights changes (node/auth_changes.py): every node drops what they name from its caches.
CREATE TABLE auth_changes (
    id {id},
    member_id BIGINT NOT NULL,
    access_key TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX auth_changes_created ON auth_changes (created_at);
