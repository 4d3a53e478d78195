-- The account model of the identity issue (issue 4). Logical twin of the SQLite backend's
-- migration of the same name.
-- Accounts are never deleted, only disabled, so no ON DELETE here.

ALTER TABLE users
    ADD COLUMN department          TEXT,
    ADD COLUMN title               TEXT,
    ADD COLUMN valid_until         BIGINT,
    ADD COLUMN vendor              BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN failed_logins       INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN locked_until        BIGINT,
    ADD COLUMN last_login_at       BIGINT,
    ADD COLUMN password_changed_at BIGINT,
    -- Wrapped under the master key (AES-256-GCM), never plaintext.
    ADD COLUMN totp_secret         BYTEA,
    ADD COLUMN totp_last_step      BIGINT;

-- Existing accounts last set their password when they were created, as far as we know.
UPDATE users SET password_changed_at = created_at;
ALTER TABLE users ALTER COLUMN password_changed_at SET NOT NULL;

-- Earlier password hashes (Argon2id PHC strings), for the "not one of the last N" rule.
CREATE TABLE password_history (
    user_id       UUID NOT NULL REFERENCES users (id),
    seq           INTEGER NOT NULL,
    password_hash TEXT NOT NULL,
    replaced_at   BIGINT NOT NULL,
    PRIMARY KEY (user_id, seq)
);

-- SHA-256 of unused one-time recovery codes; a used code is deleted.
CREATE TABLE recovery_codes (
    user_id   UUID NOT NULL REFERENCES users (id),
    code_hash BYTEA NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);
