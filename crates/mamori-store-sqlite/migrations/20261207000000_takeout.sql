-- mamori SQLite schema, version 5: take-out control (issue 9). Never edit a landed migration.

-- Export requests. `spec` (fields, filter, purpose, recipient) is sealed under the master
-- key, as is `secret` (the file password set on approval): both may name people.
CREATE TABLE export_requests (
    id                TEXT PRIMARY KEY,
    user_id           BLOB NOT NULL REFERENCES users(id),
    requested_by      TEXT NOT NULL,
    requested_at      INTEGER NOT NULL,
    collection        TEXT NOT NULL,
    spec              BLOB NOT NULL,
    rows              INTEGER NOT NULL CHECK (rows >= 0),
    protection        TEXT NOT NULL CHECK (protection IN ('password', 'age', 'split', 'none')),
    status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled', 'closed')),
    decided_by        TEXT,
    decided_at        INTEGER,
    download_until    INTEGER,
    downloads_allowed INTEGER NOT NULL CHECK (downloads_allowed > 0),
    downloads_used    INTEGER NOT NULL DEFAULT 0 CHECK (downloads_used >= 0 AND downloads_used <= downloads_allowed),
    due_at            INTEGER NOT NULL,
    secret            BLOB
);
CREATE INDEX export_requests_by_status ON export_requests (status, requested_at);

-- The take-out ledger (持ち出し管理台帳): append-only lines; `detail` is JSON with ids,
-- counts, methods and logins, never a personal value.
CREATE TABLE takeout_ledger (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    export_id TEXT REFERENCES export_requests(id),
    kind      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    user_id   BLOB REFERENCES users(id),
    rows      INTEGER NOT NULL DEFAULT 0 CHECK (rows >= 0),
    detail    TEXT NOT NULL
);
CREATE INDEX takeout_ledger_by_user ON takeout_ledger (user_id, at);
CREATE INDEX takeout_ledger_by_export ON takeout_ledger (export_id, seq);
