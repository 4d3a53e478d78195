-- mamori SQLite schema, version 7: shares of a secret-split export held for their custodians
-- (issue 9). Never edit a landed migration.

-- One row per share of a split export whose shares go to named custodians. `sealed` is the
-- share file sealed under the master key, kept only until its custodian fetches it (or the
-- export's window closes); then it is cleared and `state` says which.
CREATE TABLE export_shares (
    -- `<export id>/<share index>/<custodian id>`: one text key, like the other tables that
    -- hold a value sealed under the master key (the key rotation re-seals them by id); the
    -- sealed share is bound to it.
    id           TEXT PRIMARY KEY,
    export_id    TEXT NOT NULL REFERENCES export_requests(id),
    share_index  INTEGER NOT NULL CHECK (share_index BETWEEN 1 AND 255),
    custodian_id BLOB NOT NULL REFERENCES users(id),
    custodian    TEXT NOT NULL,
    held_at      INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('held', 'fetched', 'discarded')),
    ended_at     INTEGER,
    sealed       BLOB,
    CHECK ((state = 'held') = (sealed IS NOT NULL)),
    UNIQUE (export_id, share_index),
    UNIQUE (export_id, custodian_id)
);
CREATE INDEX export_shares_by_custodian ON export_shares (custodian_id, state);
