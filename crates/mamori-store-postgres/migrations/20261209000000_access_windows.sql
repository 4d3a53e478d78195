-- mamori PostgreSQL schema, version 7: per-account access windows (issue 4). Never edit a landed
-- migration.

-- When and from where the account may be used (allowed hours, weekdays, holidays, source
-- networks), as the JSON of `mamori_core::access_window::AccessWindow`. NULL: the window of the
-- account's role in mamori.toml applies.
ALTER TABLE users ADD COLUMN access_window TEXT;
