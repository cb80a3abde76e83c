-- Notices to members (node/notices.py): one row per money or KYC event, written by whichever node
-- sees it first (the unique key makes that node the one that mails); members' languages for mails.
CREATE TABLE notices (
    id {id},
    member_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    ref_id BIGINT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX notices_event ON notices (kind, ref_id, state);
CREATE INDEX notices_member ON notices (member_id, id);
CREATE INDEX deposits_done ON deposits (done_at);
CREATE INDEX withdraws_updated ON withdraws (updated_at);
CREATE INDEX kyc_profiles_updated ON kyc_profiles (updated_at);
ALTER TABLE members ADD COLUMN lang TEXT NOT NULL DEFAULT 'en';
