-- What llm_interactions has no column for, one row per LLM call, so that
-- everything the API said stays queryable: its request-id, the rate-limit
-- and retry headers, each attempt, the usage as given, the stop reason.
CREATE TABLE llm_call_details (
    interaction_id UUID PRIMARY KEY REFERENCES llm_interactions(id),
    request_id TEXT,             -- the API's request-id (last attempt)
    response_id TEXT,            -- msg_...
    http_status INTEGER,         -- of the last attempt; 0: no response
    stop_reason TEXT,
    error_type TEXT,             -- rate_limit_error, timeout, ... on failure
    streamed BOOLEAN NOT NULL DEFAULT FALSE,
    usage JSONB,                 -- usage exactly as the API reported it
    rate_limit JSONB,            -- anthropic-ratelimit-*, retry-after, ...
    attempts JSONB NOT NULL DEFAULT '[]', -- [{status, request_id, ms, delay_ms, curl_code}]
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_llm_call_details_request_id ON llm_call_details (request_id);
CREATE INDEX idx_llm_call_details_error_type ON llm_call_details (error_type)
    WHERE error_type IS NOT NULL;

CREATE TRIGGER llm_call_details_keep_rows BEFORE DELETE ON llm_call_details
    FOR EACH ROW EXECUTE FUNCTION nyx_refuse_delete();
CREATE TRIGGER llm_call_details_keep_table BEFORE TRUNCATE ON llm_call_details
    FOR EACH STATEMENT EXECUTE FUNCTION nyx_refuse_delete();
