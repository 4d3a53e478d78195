-- Initial schema. Logical twin of the SQLite backend's schema: both backends must keep the
-- same semantics, so a change here needs a matching change there.
--
-- Times are microseconds since the Unix epoch (BIGINT), byte columns hold ciphertexts,
-- wrapped keys or blind-index tokens, never plaintext personal values.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE collections (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    schema_version    INTEGER NOT NULL,
    kek_version       INTEGER NOT NULL,
    wrapped_index_key BYTEA NOT NULL,
    created_at        BIGINT NOT NULL
);

CREATE TABLE collection_schemas (
    collection_id BIGINT NOT NULL REFERENCES collections (id),
    version       INTEGER NOT NULL,
    schema_json   TEXT NOT NULL,
    PRIMARY KEY (collection_id, version)
);

CREATE TABLE collection_keks (
    collection_id BIGINT NOT NULL REFERENCES collections (id),
    version       INTEGER NOT NULL,
    wrapped       BYTEA NOT NULL,
    PRIMARY KEY (collection_id, version)
);

-- The foreign key onto collection_keks is what makes dropping an old KEK safe against a
-- writer that stores a subject key under it at the same moment: the database, not a
-- check-then-delete in the application, refuses to orphan a wrapped key.
CREATE TABLE subject_keys (
    collection_id BIGINT NOT NULL,
    subject       TEXT NOT NULL,
    kek_version   INTEGER NOT NULL,
    wrapped_dek   BYTEA NOT NULL,
    PRIMARY KEY (collection_id, subject),
    FOREIGN KEY (collection_id, kek_version) REFERENCES collection_keks (collection_id, version)
);
CREATE INDEX subject_keys_subject ON subject_keys (subject);
CREATE INDEX subject_keys_kek_version ON subject_keys (collection_id, kek_version);

-- No foreign keys on records and blind_index: they are the bulk tables (COPY imports), where a
-- per-row referential check and the share locks it takes on the parent row cost throughput,
-- and every writer of these tables keeps them consistent within one transaction anyway.
CREATE TABLE records (
    collection_id  BIGINT NOT NULL,
    id             UUID NOT NULL,
    subject        TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    fields         BYTEA NOT NULL,
    -- The record's blind-index tokens (mamori_store::encode_tokens), so that deleting the
    -- record can find its index entries through the primary key of blind_index.
    tokens         BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (collection_id, id)
);
CREATE INDEX records_subject ON records (subject);

CREATE TABLE blind_index (
    collection_id BIGINT NOT NULL,
    token         BYTEA NOT NULL,
    record_id     UUID NOT NULL,
    is_unique     BOOLEAN NOT NULL,
    PRIMARY KEY (collection_id, token, record_id)
);
-- Unique values are enforced here rather than by a read-then-write in the application, so
-- that two concurrent writers of the same value cannot both succeed.
CREATE UNIQUE INDEX blind_index_unique_token ON blind_index (collection_id, token) WHERE is_unique;

CREATE TABLE erasure_certificates (
    id        TEXT PRIMARY KEY,
    subject   TEXT NOT NULL,
    erased_at BIGINT NOT NULL,
    body_json TEXT NOT NULL,
    -- What the erasure transaction itself removed, not what the caller expected.
    keys_destroyed  BIGINT NOT NULL,
    records_deleted BIGINT NOT NULL
);

CREATE TABLE users (
    id                   UUID PRIMARY KEY,
    login                TEXT NOT NULL UNIQUE,
    display_name         TEXT NOT NULL,
    role                 TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    must_change_password BOOLEAN NOT NULL,
    disabled             BOOLEAN NOT NULL,
    created_at           BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash           BYTEA PRIMARY KEY,
    user_id              UUID NOT NULL REFERENCES users (id),
    created_at           BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    last_seen_at         BIGINT NOT NULL,
    password_change_only BOOLEAN NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    event_json TEXT NOT NULL,
    hash       BYTEA NOT NULL
);
