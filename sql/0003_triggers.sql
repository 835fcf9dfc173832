-- updated_at follows every change to a row that has one.
CREATE FUNCTION nyx_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE TRIGGER thought_trees_updated_at BEFORE UPDATE ON thought_trees
    FOR EACH ROW EXECUTE FUNCTION nyx_touch_updated_at();
CREATE TRIGGER prompt_templates_updated_at BEFORE UPDATE ON prompt_templates
    FOR EACH ROW EXECUTE FUNCTION nyx_touch_updated_at();
CREATE TRIGGER system_config_updated_at BEFORE UPDATE ON system_config
    FOR EACH ROW EXECUTE FUNCTION nyx_touch_updated_at();

-- The retention policy: no automatic cleanup, every record kept, trees keep
-- their complete lineage. DELETE and TRUNCATE on NYX's tables are refused
-- unless a session says, deliberately, that it is doing manual archival:
--   SET nyx.allow_delete = on;
CREATE FUNCTION nyx_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('nyx.allow_delete', true), '') IN ('on', 'true', '1') THEN
        RETURN CASE WHEN TG_LEVEL = 'ROW' THEN OLD END;
    END IF;
    RAISE EXCEPTION 'NYX keeps every record: % on % refused', TG_OP, TG_TABLE_NAME
        USING HINT = 'low-value records are marked importance_level = ''low'', not deleted; for manual archival run SET nyx.allow_delete = on first',
              ERRCODE = 'insufficient_privilege';
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['thought_trees', 'agents', 'orchestrators',
        'llm_interactions', 'tool_executions', 'prompt_templates',
        'system_config', 'agent_communications']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON %I FOR EACH ROW '
                       'EXECUTE FUNCTION nyx_refuse_delete()', t || '_keep_rows', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION nyx_refuse_delete()', t || '_keep_table', t);
    END LOOP;
END;
$$;
