-- Web pages: server-side sessions (`id` is the SHA-256 of the cookie value, so a copy of the
-- database does not hand out live sessions), single-use e-mail tokens (activation, password reset; only
-- their hash is kept) and each member's login history.
CREATE TABLE web_sessions (
    id TEXT PRIMARY KEY,
    member_id BIGINT,
    csrf TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_member ON web_sessions (member_id);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
CREATE TABLE member_tokens (
    id {id},
    member_id BIGINT NOT NULL REFERENCES members(id),
    purpose TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX member_tokens_member ON member_tokens (member_id, purpose);
CREATE TABLE login_history (
    id {id},
    member_id BIGINT NOT NULL REFERENCES members(id),
    ok INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX login_history_member ON login_history (member_id, id);
