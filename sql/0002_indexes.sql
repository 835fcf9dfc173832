-- The founding document's indexes, under the names it gives them.
CREATE INDEX idx_thought_trees_parent_id ON thought_trees (parent_id);
CREATE INDEX idx_thought_trees_root_id ON thought_trees (root_id);
CREATE INDEX idx_thought_trees_status ON thought_trees (status);
CREATE INDEX idx_thought_trees_depth ON thought_trees (depth);
CREATE INDEX idx_thought_trees_overall_weight ON thought_trees (overall_weight);

CREATE INDEX idx_agents_thought_tree_id ON agents (thought_tree_id);
CREATE INDEX idx_agents_type_status ON agents (agent_type, status);
CREATE INDEX idx_agents_spawned_by ON agents (spawned_by);

CREATE INDEX idx_orchestrators_parent_id ON orchestrators (parent_orchestrator_id);
CREATE INDEX idx_orchestrators_thought_tree_id ON orchestrators (thought_tree_id);
CREATE INDEX idx_orchestrators_status ON orchestrators (status);

CREATE INDEX idx_llm_interactions_agent_id ON llm_interactions (agent_id);
CREATE INDEX idx_llm_interactions_thought_tree_id ON llm_interactions (thought_tree_id);
CREATE INDEX idx_llm_interactions_timestamp ON llm_interactions (request_timestamp);
CREATE INDEX idx_llm_interactions_provider_model ON llm_interactions (provider, model);

CREATE INDEX idx_tool_executions_agent_id ON tool_executions (agent_id);
CREATE INDEX idx_tool_executions_thought_tree_id ON tool_executions (thought_tree_id);
CREATE INDEX idx_tool_executions_tool_name ON tool_executions (tool_name);
CREATE INDEX idx_tool_executions_started_at ON tool_executions (started_at);

-- name is UNIQUE, which already indexes it; the document asks for this one
-- too, so it exists under its name.
CREATE INDEX idx_prompt_templates_name ON prompt_templates (name);
CREATE INDEX idx_prompt_templates_type_active ON prompt_templates (template_type, is_active);

CREATE INDEX idx_system_config_key ON system_config (config_key);
CREATE INDEX idx_system_config_type ON system_config (config_type);

CREATE INDEX idx_agent_communications_sender ON agent_communications (sender_agent_id);
CREATE INDEX idx_agent_communications_receiver ON agent_communications (receiver_agent_id);
CREATE INDEX idx_agent_communications_thought_tree ON agent_communications (thought_tree_id);
CREATE INDEX idx_agent_communications_sent_at ON agent_communications (sent_at);

-- The document's indexing strategy: partial indexes on active and pending
-- records (the engine's hot queries: what is left to do, what is running),
-- and time-based indexes for audit trails.
CREATE INDEX idx_thought_trees_open ON thought_trees (root_id, depth)
    WHERE status IN ('pending', 'in_progress');
CREATE INDEX idx_thought_trees_roots ON thought_trees (created_at)
    WHERE parent_id IS NULL;
CREATE INDEX idx_thought_trees_created_at ON thought_trees (created_at);
CREATE INDEX idx_agents_live ON agents (thought_tree_id, agent_type)
    WHERE status IN ('spawned', 'active');
CREATE INDEX idx_agents_created_at ON agents (created_at);
CREATE INDEX idx_orchestrators_live ON orchestrators (thought_tree_id)
    WHERE status IN ('active', 'paused');
CREATE INDEX idx_agent_communications_pending ON agent_communications (receiver_agent_id, sent_at)
    WHERE NOT processed;
CREATE INDEX idx_llm_interactions_failed ON llm_interactions (thought_tree_id, request_timestamp)
    WHERE NOT success;
CREATE INDEX idx_prompt_templates_active ON prompt_templates (template_type)
    WHERE is_active;
