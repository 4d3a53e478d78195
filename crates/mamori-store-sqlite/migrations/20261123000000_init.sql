-- mamori SQLite schema, version 1. Never edit a landed migration: add a new file.
-- Columns named wrapped_* hold keys wrapped under a higher key; fields holds AES-256-GCM
-- ciphertexts; token columns hold blind-index HMACs. No column holds a plaintext value.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE collections (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    schema_version    INTEGER NOT NULL,
    kek_version       INTEGER NOT NULL,
    wrapped_index_key BLOB NOT NULL,
    created_at        INTEGER NOT NULL
);

CREATE TABLE collection_schemas (
    collection_id INTEGER NOT NULL REFERENCES collections(id),
    version       INTEGER NOT NULL,
    schema_json   TEXT NOT NULL,
    PRIMARY KEY (collection_id, version)
) WITHOUT ROWID;

CREATE TABLE collection_keks (
    collection_id INTEGER NOT NULL REFERENCES collections(id),
    version       INTEGER NOT NULL,
    wrapped       BLOB NOT NULL,
    PRIMARY KEY (collection_id, version)
) WITHOUT ROWID;

CREATE TABLE subject_keys (
    collection_id INTEGER NOT NULL,
    subject       TEXT NOT NULL,
    kek_version   INTEGER NOT NULL,
    wrapped_dek   BLOB NOT NULL,
    PRIMARY KEY (collection_id, subject),
    -- A data key can only be stored under a KEK that exists, so a writer racing a rotation
    -- that already destroyed its KEK fails instead of storing an unreadable key.
    FOREIGN KEY (collection_id, kek_version) REFERENCES collection_keks (collection_id, version)
) WITHOUT ROWID;
CREATE INDEX subject_keys_by_subject ON subject_keys(subject);

CREATE TABLE records (
    collection_id  INTEGER NOT NULL,
    id             BLOB NOT NULL,
    subject        TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    fields         BLOB NOT NULL,
    tokens         BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (collection_id, id)
);
CREATE INDEX records_by_subject ON records(subject);

CREATE TABLE blind_index (
    collection_id INTEGER NOT NULL,
    token         BLOB NOT NULL,
    record_id     BLOB NOT NULL,
    is_unique     INTEGER NOT NULL,
    PRIMARY KEY (collection_id, token, record_id)
) WITHOUT ROWID;
-- The database itself keeps unique values unique, whatever the number of writers.
CREATE UNIQUE INDEX blind_index_unique ON blind_index(collection_id, token) WHERE is_unique = 1;

CREATE TABLE erasure_certificates (
    id        TEXT PRIMARY KEY,
    subject   TEXT NOT NULL,
    erased_at INTEGER NOT NULL,
    body_json TEXT NOT NULL,
    keys_destroyed  INTEGER NOT NULL,
    records_deleted INTEGER NOT NULL
);

CREATE TABLE users (
    id                   BLOB PRIMARY KEY,
    login                TEXT NOT NULL UNIQUE,
    display_name         TEXT NOT NULL,
    role                 TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    must_change_password INTEGER NOT NULL,
    disabled             INTEGER NOT NULL,
    created_at           INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash           BLOB PRIMARY KEY,
    user_id              BLOB NOT NULL REFERENCES users(id),
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    last_seen_at         INTEGER NOT NULL,
    password_change_only INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    event_json TEXT NOT NULL,
    hash       BLOB NOT NULL
);
