-- mamori SQLite schema, version 3: the account model of the identity issue (issue 4).
-- Accounts are never deleted, only disabled, so no ON DELETE here.

ALTER TABLE users ADD COLUMN department TEXT;
ALTER TABLE users ADD COLUMN title TEXT;
ALTER TABLE users ADD COLUMN valid_until INTEGER;
ALTER TABLE users ADD COLUMN vendor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until INTEGER;
ALTER TABLE users ADD COLUMN last_login_at INTEGER;
ALTER TABLE users ADD COLUMN password_changed_at INTEGER NOT NULL DEFAULT 0;
UPDATE users SET password_changed_at = created_at;
-- Wrapped under the master key (AES-256-GCM), never plaintext.
ALTER TABLE users ADD COLUMN totp_secret BLOB;
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;

-- Earlier password hashes (Argon2id PHC strings), for the "not one of the last N" rule.
CREATE TABLE password_history (
    user_id       BLOB NOT NULL REFERENCES users(id),
    seq           INTEGER NOT NULL,
    password_hash TEXT NOT NULL,
    replaced_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;

-- SHA-256 of unused one-time recovery codes; a used code is deleted.
CREATE TABLE recovery_codes (
    user_id   BLOB NOT NULL REFERENCES users(id),
    code_hash BLOB NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) WITHOUT ROWID;
