-- mamori PostgreSQL schema, version 6: change notifications. Never edit a landed migration.
--
-- Several `mamori serve` instances share one database and cache what rarely changes: the
-- active policies, collection keys and schemas, the master key. Each instance LISTENs on
-- `mamori_changes`; these triggers NOTIFY it when such a change commits (PostgreSQL delivers
-- notifications only on commit, and folds duplicates within one transaction). The payload
-- is `<schema> <what>`, so installations in different schemas of one database ignore each
-- other. Triggers rather than application code: every writer notifies, whatever its version.

CREATE FUNCTION mamori_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mamori_changes', current_schema() || ' ' || TG_ARGV[0]);
    RETURN NULL;
END
$$;

CREATE TRIGGER policy_versions_changed AFTER INSERT OR UPDATE OR DELETE ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION mamori_notify_change('policy');
CREATE TRIGGER collections_changed AFTER INSERT OR UPDATE OR DELETE ON collections
    FOR EACH STATEMENT EXECUTE FUNCTION mamori_notify_change('collections');
CREATE TRIGGER collection_keks_changed AFTER INSERT OR UPDATE OR DELETE ON collection_keks
    FOR EACH STATEMENT EXECUTE FUNCTION mamori_notify_change('collections');
CREATE TRIGGER schema_versions_changed AFTER INSERT OR UPDATE OR DELETE ON collection_schemas
    FOR EACH STATEMENT EXECUTE FUNCTION mamori_notify_change('collections');
CREATE TRIGGER key_check_changed AFTER INSERT OR UPDATE ON meta
    FOR EACH ROW WHEN (NEW.key = 'key_check') EXECUTE FUNCTION mamori_notify_change('master_key');
