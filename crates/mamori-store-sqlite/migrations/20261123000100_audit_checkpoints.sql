-- Audit trail, part 2: indexed columns for queries, signed checkpoints and pruning anchors.
-- Never edit a landed migration: add a new file.

-- Copies of some event fields, so that queries filter in SQL. The chain hash covers only
-- event_json; `mamori audit verify` checks that these columns agree with it. Existing rows
-- are back-filled from their JSON (a row that is not valid JSON gets empty columns, and
-- verify reports it). Times are microseconds since the epoch; back-filled ones are exact to
-- the millisecond, which is all SQLite's date functions read.
CREATE TABLE audit_events_v2 (
    seq        INTEGER PRIMARY KEY,
    event_json TEXT NOT NULL,
    hash       BLOB NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    collection TEXT,
    record     TEXT,
    subject    TEXT
);

INSERT INTO audit_events_v2 (seq, event_json, hash, at, actor, action, outcome, collection, record, subject)
SELECT seq, event_json, hash,
       coalesce(CASE WHEN json_valid(event_json)
           THEN CAST(round(unixepoch(json_extract(event_json, '$.at'), 'subsec') * 1000) AS INTEGER) * 1000 END, 0),
       coalesce(CASE WHEN json_valid(event_json) THEN json_extract(event_json, '$.actor') END, ''),
       coalesce(CASE WHEN json_valid(event_json) THEN json_extract(event_json, '$.action') END, ''),
       coalesce(CASE WHEN json_valid(event_json) THEN json_extract(event_json, '$.outcome') END, ''),
       CASE WHEN json_valid(event_json) THEN json_extract(event_json, '$.collection') END,
       CASE WHEN json_valid(event_json) THEN json_extract(event_json, '$.record') END,
       CASE WHEN json_valid(event_json) THEN json_extract(event_json, '$.subject') END
FROM audit_events;

DROP TABLE audit_events;
ALTER TABLE audit_events_v2 RENAME TO audit_events;

-- Each index ends with seq: queries page in sequence order.
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_subject ON audit_events (subject, seq) WHERE subject IS NOT NULL;
CREATE INDEX audit_events_collection ON audit_events (collection, seq) WHERE collection IS NOT NULL;
CREATE INDEX audit_events_record ON audit_events (record, seq) WHERE record IS NOT NULL;

-- Checkpoints (kind 'checkpoint') and pruning anchors (kind 'anchor'), each signed with the
-- ECDSA P-256 audit key over (kind, seq, head_hash, at, key_id). The public key is in meta.
CREATE TABLE audit_checkpoints (
    seq       INTEGER NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('checkpoint', 'anchor')),
    head_hash BLOB NOT NULL,
    at        INTEGER NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (seq, kind)
) WITHOUT ROWID;
CREATE INDEX audit_checkpoints_kind ON audit_checkpoints (kind, seq);
