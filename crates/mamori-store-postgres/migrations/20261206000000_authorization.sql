-- Authorization (issue 5). Logical twin of the SQLite backend's migration of the same name.

-- Attributes that policies decide on. Department codes and tiers are organisational
-- metadata, not personal data.
ALTER TABLE users
    ADD COLUMN clearance            TEXT,
    ADD COLUMN training_valid_until BIGINT,
    ADD COLUMN pledge_signed_at     BIGINT,
    -- The last access review (recertification) of the account: when and by whom.
    ADD COLUMN reviewed_at          BIGINT,
    ADD COLUMN reviewed_by          TEXT;
ALTER TABLE sessions ADD COLUMN mfa BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE records ADD COLUMN department TEXT;

-- Versions of the editable Cedar policies. The active version is the highest approved one;
-- an approval is accepted only while base_version is still active (four-eyes, no lost update).
CREATE TABLE policy_versions (
    version      BIGINT PRIMARY KEY,
    base_version BIGINT,
    policies     TEXT NOT NULL,
    summary      TEXT NOT NULL,
    proposed_by  TEXT NOT NULL,
    proposed_at  BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by   TEXT,
    decided_at   BIGINT
);

-- Break-glass grants. The reason is sealed under the master key: it may name people.
CREATE TABLE break_glass_grants (
    id           TEXT PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id),
    collection   TEXT NOT NULL,
    reason       BYTEA NOT NULL,
    minutes      INTEGER NOT NULL CHECK (minutes > 0 AND minutes <= 240),
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'revoked')),
    decided_by   TEXT,
    decided_at   BIGINT,
    expires_at   BIGINT
);
CREATE INDEX break_glass_by_user ON break_glass_grants (user_id, collection, status);
