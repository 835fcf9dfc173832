-- The eight tables of the NYX founding document
-- (shared/seeds/000_c3f3fe06ac52f5ef.txt), column for column: types,
-- defaults, CHECKs and foreign keys exactly as specified. The document's
-- inline INDEX clauses, which PostgreSQL does not accept inside CREATE
-- TABLE, are created under the same names in 0002_indexes.sql.

CREATE TABLE thought_trees (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_id UUID REFERENCES thought_trees(id),
    root_id UUID REFERENCES thought_trees(id),
    goal TEXT NOT NULL,
    status VARCHAR(20) NOT NULL CHECK (status IN ('pending', 'in_progress', 'completed', 'failed', 'cancelled')),
    depth INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    completed_at TIMESTAMP WITH TIME ZONE,
    metadata JSONB DEFAULT '{}',

    -- Reinforcement Learning Metrics
    success_score DECIMAL(5,4) DEFAULT 0.0,
    quality_score DECIMAL(5,4) DEFAULT 0.0,
    speed_score DECIMAL(5,4) DEFAULT 0.0,
    usefulness_score DECIMAL(5,4) DEFAULT 0.0,
    overall_weight DECIMAL(5,4) DEFAULT 0.5,
    importance_level VARCHAR(10) DEFAULT 'medium' CHECK (importance_level IN ('low', 'medium', 'high'))
);

CREATE TABLE agents (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    thought_tree_id UUID NOT NULL REFERENCES thought_trees(id),
    agent_type VARCHAR(20) NOT NULL CHECK (agent_type IN ('task', 'council', 'validator', 'memory')),
    agent_class VARCHAR(100) NOT NULL,
    status VARCHAR(20) NOT NULL CHECK (status IN ('spawned', 'active', 'completed', 'failed', 'terminated')),
    spawned_by UUID REFERENCES agents(id),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    completed_at TIMESTAMP WITH TIME ZONE,

    -- Resource tracking
    max_recursion_depth INTEGER DEFAULT 5,
    current_recursion_depth INTEGER DEFAULT 0,

    -- Context and state
    context JSONB DEFAULT '{}',
    state JSONB DEFAULT '{}'
);

CREATE TABLE orchestrators (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_orchestrator_id UUID REFERENCES orchestrators(id),
    thought_tree_id UUID NOT NULL REFERENCES thought_trees(id),
    orchestrator_type VARCHAR(20) NOT NULL CHECK (orchestrator_type IN ('top_level', 'sub')),
    status VARCHAR(20) NOT NULL CHECK (status IN ('active', 'completed', 'failed', 'paused')),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    completed_at TIMESTAMP WITH TIME ZONE,

    -- Configuration
    max_concurrent_agents INTEGER DEFAULT 10,
    current_active_agents INTEGER DEFAULT 0,

    -- Context
    global_context JSONB DEFAULT '{}'
);

CREATE TABLE llm_interactions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id UUID REFERENCES agents(id),
    thought_tree_id UUID NOT NULL REFERENCES thought_trees(id),

    -- API Details
    provider VARCHAR(20) NOT NULL DEFAULT 'claude',
    model VARCHAR(50) NOT NULL,

    -- Request/Response
    prompt_text TEXT NOT NULL,
    system_prompt TEXT,
    response_text TEXT,

    -- Metadata
    request_timestamp TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    response_timestamp TIMESTAMP WITH TIME ZONE,

    -- Metrics
    token_count_input INTEGER,
    token_count_output INTEGER,
    cached_token_count INTEGER DEFAULT 0,  -- Tokens saved by native caching
    cache_creation_input_tokens INTEGER DEFAULT 0,  -- Tokens used to create cache
    cache_read_input_tokens INTEGER DEFAULT 0,      -- Reduced tokens from cache usage
    latency_ms INTEGER,
    cost_usd DECIMAL(10,6),
    cost_without_cache_usd DECIMAL(10,6),  -- What cost would have been without caching

    -- Native Caching Details
    uses_prompt_caching BOOLEAN DEFAULT FALSE,
    cache_ttl_seconds INTEGER,  -- TTL for cached prompts
    cache_hit BOOLEAN DEFAULT FALSE,  -- Whether this call used cached prompts

    -- Status
    success BOOLEAN DEFAULT FALSE,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0
);

CREATE TABLE tool_executions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id UUID NOT NULL REFERENCES agents(id),
    thought_tree_id UUID NOT NULL REFERENCES thought_trees(id),

    -- Tool Details
    tool_name VARCHAR(50) NOT NULL,
    tool_class VARCHAR(100) NOT NULL,

    -- Execution
    input_parameters JSONB NOT NULL,
    output_result JSONB,
    stdout TEXT,
    stderr TEXT,

    -- Timing
    started_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    completed_at TIMESTAMP WITH TIME ZONE,
    duration_ms INTEGER,

    -- Status
    success BOOLEAN DEFAULT FALSE,
    exit_code INTEGER,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0
);

CREATE TABLE prompt_templates (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(100) NOT NULL UNIQUE,
    template_type VARCHAR(20) NOT NULL CHECK (template_type IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    variables JSONB DEFAULT '[]',  -- List of template variables

    -- Versioning
    version INTEGER NOT NULL DEFAULT 1,
    is_active BOOLEAN DEFAULT TRUE,

    -- Metadata
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    created_by VARCHAR(100),

    -- Usage tracking
    usage_count INTEGER DEFAULT 0,
    success_rate DECIMAL(5,4) DEFAULT 0.0
);

CREATE TABLE system_config (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    config_key VARCHAR(100) NOT NULL UNIQUE,
    config_value JSONB NOT NULL,
    config_type VARCHAR(20) NOT NULL CHECK (config_type IN ('limit', 'setting', 'credential')),
    description TEXT,

    -- Metadata
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE agent_communications (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    sender_agent_id UUID NOT NULL REFERENCES agents(id),
    receiver_agent_id UUID REFERENCES agents(id), -- NULL for broadcast
    thought_tree_id UUID NOT NULL REFERENCES thought_trees(id),

    -- Message
    message_type VARCHAR(20) NOT NULL CHECK (message_type IN ('context_share', 'request', 'response', 'notification')),
    content JSONB NOT NULL,

    -- Timing
    sent_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    received_at TIMESTAMP WITH TIME ZONE,

    -- Status
    delivered BOOLEAN DEFAULT FALSE,
    processed BOOLEAN DEFAULT FALSE
);
