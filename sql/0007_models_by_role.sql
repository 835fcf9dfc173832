-- Which model does what (issue 5): a strong model plans and judges, a
-- cheap one answers leaves and validates. Strategies read model_ROLE
-- through nyx.strategy.model (a strategy's options.models, or a call's own
-- model, override these). Change them with nyx.config.set("model_leaf", ...).
INSERT INTO system_config (config_key, config_value, config_type, description) VALUES
('model_plan', '{"value": "claude-opus-5-5"}', 'setting', 'Model that decomposes goals into subtasks'),
('model_leaf', '{"value": "claude-haiku-5-5"}', 'setting', 'Model that answers atomic goals and direct attempts'),
('model_validate', '{"value": "claude-haiku-5-5"}', 'setting', 'Model that validates results'),
('model_council', '{"value": "claude-sonnet-5-5"}', 'setting', 'Model of council members'' proposals'),
('model_judge', '{"value": "claude-opus-5-5"}', 'setting', 'Model that judges or votes among proposals'),
('model_synthesize', '{"value": "claude-sonnet-5-5"}', 'setting', 'Model that combines subtasks'' results')
ON CONFLICT (config_key) DO NOTHING;

-- The memory strategy's search: full-text on goals.
CREATE INDEX idx_thought_trees_goal_fts ON thought_trees USING gin (to_tsvector('english', goal));
