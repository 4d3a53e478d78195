-- mamori SQLite schema, version 4: authorization (issue 5). Never edit a landed migration.

-- Attributes that policies decide on. Department codes and tiers are organisational
-- metadata, not personal data.
ALTER TABLE users ADD COLUMN clearance TEXT;
ALTER TABLE users ADD COLUMN training_valid_until INTEGER;
ALTER TABLE users ADD COLUMN pledge_signed_at INTEGER;
-- The last access review (recertification) of the account: when and by whom.
ALTER TABLE users ADD COLUMN reviewed_at INTEGER;
ALTER TABLE users ADD COLUMN reviewed_by TEXT;
ALTER TABLE sessions ADD COLUMN mfa INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN department TEXT;

-- Versions of the editable Cedar policies. The active version is the highest approved one;
-- an approval is accepted only while base_version is still active (four-eyes, no lost update).
CREATE TABLE policy_versions (
    version      INTEGER PRIMARY KEY,
    base_version INTEGER,
    policies     TEXT NOT NULL,
    summary      TEXT NOT NULL,
    proposed_by  TEXT NOT NULL,
    proposed_at  INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by   TEXT,
    decided_at   INTEGER
);

-- Break-glass grants. The reason is sealed under the master key: it may name people.
CREATE TABLE break_glass_grants (
    id           TEXT PRIMARY KEY,
    user_id      BLOB NOT NULL REFERENCES users(id),
    collection   TEXT NOT NULL,
    reason       BLOB NOT NULL,
    minutes      INTEGER NOT NULL CHECK (minutes > 0 AND minutes <= 240),
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'revoked')),
    decided_by   TEXT,
    decided_at   INTEGER,
    expires_at   INTEGER
);
CREATE INDEX break_glass_by_user ON break_glass_grants (user_id, collection, status);
