-- The founding document's initial configuration, verbatim.
INSERT INTO system_config (config_key, config_value, config_type, description) VALUES
('max_recursion_depth', '{"value": 10}', 'limit', 'Maximum depth for recursive agent spawning'),
('max_concurrent_agents', '{"value": 50}', 'limit', 'Maximum number of concurrent agents system-wide'),
('max_thought_tree_age_days', '{"value": 365}', 'limit', 'Maximum age before thought trees marked as archival'),
('default_retry_attempts', '{"value": 3}', 'setting', 'Default number of retry attempts for failed operations'),
('llm_timeout_seconds', '{"value": 60}', 'setting', 'Default timeout for LLM API calls'),
('tool_timeout_seconds', '{"value": 30}', 'setting', 'Default timeout for tool executions');
