-- Audit trail, part 2: indexed columns for queries, signed checkpoints and pruning anchors.
-- Never edit a landed migration: add a new file.

-- Copies of some event fields, so that queries filter in SQL. The chain hash covers only
-- event_json; `mamori audit verify` checks that these columns agree with it. Existing rows
-- are back-filled from their JSON; a row that does not parse gets empty columns (and verify
-- reports it) instead of stopping the upgrade.
ALTER TABLE audit_events
    ADD COLUMN at         BIGINT,
    ADD COLUMN actor      TEXT,
    ADD COLUMN action     TEXT,
    ADD COLUMN outcome    TEXT,
    ADD COLUMN collection TEXT,
    ADD COLUMN record     TEXT,
    ADD COLUMN subject    TEXT;

CREATE FUNCTION pg_temp.mamori_try_jsonb(t TEXT) RETURNS JSONB LANGUAGE plpgsql AS $$
BEGIN
    RETURN t::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

CREATE FUNCTION pg_temp.mamori_try_micros(t TEXT) RETURNS BIGINT LANGUAGE plpgsql AS $$
BEGIN
    RETURN (extract(epoch FROM t::timestamptz) * 1000000)::bigint;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

UPDATE audit_events
SET at         = coalesce(pg_temp.mamori_try_micros(parsed.j ->> 'at'), 0),
    actor      = coalesce(parsed.j ->> 'actor', ''),
    action     = coalesce(parsed.j ->> 'action', ''),
    outcome    = coalesce(parsed.j ->> 'outcome', ''),
    collection = parsed.j ->> 'collection',
    record     = parsed.j ->> 'record',
    subject    = parsed.j ->> 'subject'
FROM (SELECT seq AS s, pg_temp.mamori_try_jsonb(event_json) AS j FROM audit_events) AS parsed
WHERE audit_events.seq = parsed.s;

ALTER TABLE audit_events
    ALTER COLUMN at SET NOT NULL,
    ALTER COLUMN actor SET NOT NULL,
    ALTER COLUMN action SET NOT NULL,
    ALTER COLUMN outcome SET NOT NULL;

-- Each index ends with seq: queries page in sequence order. Actions are compared bytewise
-- (COLLATE "C"), so that a prefix is a plain range the index serves.
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_action ON audit_events (action COLLATE "C", seq);
CREATE INDEX audit_events_subject ON audit_events (subject, seq) WHERE subject IS NOT NULL;
CREATE INDEX audit_events_collection ON audit_events (collection, seq) WHERE collection IS NOT NULL;
CREATE INDEX audit_events_record ON audit_events (record, seq) WHERE record IS NOT NULL;

-- Checkpoints (kind 'checkpoint') and pruning anchors (kind 'anchor'), each signed with the
-- ECDSA P-256 audit key over (kind, seq, head_hash, at, key_id). The public key is in meta.
CREATE TABLE audit_checkpoints (
    seq       BIGINT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('checkpoint', 'anchor')),
    head_hash BYTEA NOT NULL,
    at        BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (seq, kind)
);
CREATE INDEX audit_checkpoints_kind ON audit_checkpoints (kind, seq);
