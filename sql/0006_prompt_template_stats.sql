-- Prompt templates as files (lua/nyx/prompts.lua): what prompt_templates has
-- no column for, in tables of nyx's own (the eight tables are a contract).
-- prompt_templates.name holds NAME@N and version N; these tables key on the
-- template row's id.

-- Per version: the cache TTL its file asked for, and the exact sum of the
-- success scores recorded for it, so success_rate (DECIMAL(5,4)) is always
-- the exact mean rounded once, never a rounded value rounded again.
CREATE TABLE prompt_template_stats (
    template_id UUID PRIMARY KEY REFERENCES prompt_templates(id),
    cache_ttl VARCHAR(2) NOT NULL DEFAULT '5m' CHECK (cache_ttl IN ('5m', '1h')),
    uses BIGINT NOT NULL DEFAULT 0,        -- = usage_count
    success_sum NUMERIC NOT NULL DEFAULT 0, -- sum of the recorded scores (0..1)
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

-- The versions of a name: WHERE split_part(name, '@', 1) = NAME.
CREATE INDEX idx_prompt_templates_base_name ON prompt_templates (split_part(name, '@', 1), version);

-- Per template file: the version it provides now. A file that changes points
-- at its new version; a file that is removed keeps its row (nothing is
-- deleted). origin: "prompts/FILE" for the built-in folder, else the path.
CREATE TABLE prompt_template_files (
    origin TEXT PRIMARY KEY,
    template_id UUID NOT NULL REFERENCES prompt_templates(id),
    synced_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_prompt_template_files_template_id ON prompt_template_files (template_id);

CREATE TRIGGER prompt_template_stats_updated_at BEFORE UPDATE ON prompt_template_stats
    FOR EACH ROW EXECUTE FUNCTION nyx_touch_updated_at();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['prompt_template_stats', 'prompt_template_files']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON %I FOR EACH ROW '
                       'EXECUTE FUNCTION nyx_refuse_delete()', t || '_keep_rows', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION nyx_refuse_delete()', t || '_keep_table', t);
    END LOOP;
END;
$$;

-- Which template version an LLM call was made from (set by nyx.llm when a
-- request names its template).
ALTER TABLE llm_call_details ADD COLUMN prompt_template_id UUID REFERENCES prompt_templates(id);
CREATE INDEX idx_llm_call_details_prompt_template_id ON llm_call_details (prompt_template_id)
    WHERE prompt_template_id IS NOT NULL;
