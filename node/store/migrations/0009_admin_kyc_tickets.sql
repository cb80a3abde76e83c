-- Admin area, KYC, support tickets and editable pages. Roles beyond the admins named in
-- cluster.toml (admin actions go to the security audit log, `audit_log`, as `admin.*`); balance
-- corrections that wait for a second admin; identity data (files live on disk, outside the web
-- root: `uploads` only points at them); tickets with comments, where `*_seen_id` is the last comment each
-- side has read, so an unread marker is a comparison of two ids; and pages in both languages.
CREATE TABLE admin_roles (
    member_id BIGINT NOT NULL,
    role TEXT NOT NULL,
    granted_by TEXT NOT NULL DEFAULT '',
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, role)
);
CREATE TABLE balance_adjustments (
    id {id},
    member_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount <> 0),
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    proposed_by BIGINT NOT NULL,
    proposed_at BIGINT NOT NULL,
    decided_by BIGINT,
    decided_at BIGINT,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX balance_adjustments_state ON balance_adjustments (state, id);
CREATE INDEX balance_adjustments_member ON balance_adjustments (member_id, id);
CREATE TABLE kyc_profiles (
    member_id BIGINT PRIMARY KEY,
    state TEXT NOT NULL,
    level INTEGER NOT NULL DEFAULT 0,
    full_name TEXT NOT NULL DEFAULT '',
    birth_date TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    country TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    doc_type TEXT NOT NULL DEFAULT '',
    doc_number TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    submitted_at BIGINT,
    reviewed_at BIGINT,
    reviewed_by BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX kyc_profiles_state ON kyc_profiles (state, submitted_at);
CREATE TABLE uploads (
    id {id},
    member_id BIGINT NOT NULL,
    purpose TEXT NOT NULL,
    owner_id BIGINT NOT NULL DEFAULT 0,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX uploads_owner ON uploads (purpose, owner_id, id);
CREATE INDEX uploads_member ON uploads (member_id, purpose, id);
CREATE TABLE tickets (
    id {id},
    member_id BIGINT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    assignee_id BIGINT,
    last_member_comment BIGINT NOT NULL DEFAULT 0,
    last_staff_comment BIGINT NOT NULL DEFAULT 0,
    member_seen_id BIGINT NOT NULL DEFAULT 0,
    staff_seen_id BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE INDEX tickets_member ON tickets (member_id, id);
CREATE INDEX tickets_state ON tickets (state, updated_at);
CREATE TABLE ticket_comments (
    id {id},
    ticket_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    staff INTEGER NOT NULL,
    body TEXT NOT NULL,
    upload_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_id, id);
CREATE TABLE cms_pages (
    slug TEXT NOT NULL,
    lang TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (slug, lang)
);
