-- Security (node/security/): two-factor secrets (TOTP secrets sealed with the server key,
-- recovery and SMS codes only as keyed hashes), the TOTP replay memory (`last_step`: a time step is
-- accepted once), failed attempts and lockouts shared by every node, the append-only audit log
-- (hash-chained through `audit_head`, whose single row also serialises writers), the withdrawal
-- address book and the holds on withdrawals that wait for an e-mail confirmation or an address hold.
CREATE TABLE security_totp (
    member_id BIGINT PRIMARY KEY REFERENCES members(id),
    secret_enc TEXT NOT NULL,
    enabled_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT -1,
    created_at BIGINT NOT NULL
);
CREATE TABLE security_recovery_codes (
    id {id},
    member_id BIGINT NOT NULL REFERENCES members(id),
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX security_recovery_codes_member ON security_recovery_codes (member_id, code_hash);
CREATE TABLE security_phones (
    member_id BIGINT PRIMARY KEY REFERENCES members(id),
    phone TEXT NOT NULL,
    verified_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE security_sms_codes (
    id {id},
    member_id BIGINT NOT NULL REFERENCES members(id),
    phone TEXT NOT NULL,
    purpose TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX security_sms_codes_member ON security_sms_codes (member_id, id);
CREATE TABLE security_attempts (
    id {id},
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX security_attempts_subject ON security_attempts (scope, subject, created_at);
CREATE INDEX security_attempts_age ON security_attempts (created_at);
CREATE TABLE security_lockouts (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    locked_until BIGINT NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    member_id BIGINT,
    actor_id BIGINT,
    actor TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    ok INTEGER NOT NULL DEFAULT 1,
    detail TEXT NOT NULL DEFAULT '{}',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_member ON audit_log (member_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE TABLE withdraw_addresses (
    id {id},
    member_id BIGINT NOT NULL REFERENCES members(id),
    currency TEXT NOT NULL,
    address TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    usable_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX withdraw_addresses_member ON withdraw_addresses (member_id, currency, address);
CREATE TABLE withdraw_holds (
    withdraw_id BIGINT PRIMARY KEY,
    member_id BIGINT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    release_at BIGINT NOT NULL,
    confirm_by BIGINT NOT NULL,
    confirmed_at BIGINT,
    released_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX withdraw_holds_open ON withdraw_holds (released_at, release_at);
