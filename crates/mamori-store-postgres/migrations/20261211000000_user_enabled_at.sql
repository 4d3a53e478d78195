-- mamori PostgreSQL schema, version 9: when an administrator last enabled (or activated) an account.
-- Dormancy (auth.dormant_days) counts from the latest of creation, last login and this: an
-- account re-enabled after a dormancy lock is not locked again at its next login. Never edit
-- a landed migration.
ALTER TABLE users ADD COLUMN enabled_at BIGINT;
