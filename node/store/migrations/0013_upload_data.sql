-- Uploaded files kept in the store too, on PostgreSQL (node/admin/uploads.py): any node serves them.
CREATE TABLE upload_data (
    upload_id BIGINT PRIMARY KEY,
    data {blob} NOT NULL
);
