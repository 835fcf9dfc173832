-- The schema against the founding document (shared/seeds/000_c3f3fe06ac52f5ef.txt):
-- every table, column, type, default, CHECK, foreign key and index, the
-- initial configuration, the updated_at triggers and the retention policy.
local H = require "tests.lua.helper"

local V20, V10, V50, V100 = "character varying(20)", "character varying(10)",
  "character varying(50)", "character varying(100)"
local TS, NUM = "timestamp with time zone", "numeric(5,4)"
local NOW, UUIDGEN = "CURRENT_TIMESTAMP", "gen_random_uuid()"

-- name, type, not null, default (nil: none)
local TABLES = {
  thought_trees = {
    { "id", "uuid", true, UUIDGEN }, { "parent_id", "uuid" }, { "root_id", "uuid" },
    { "goal", "text", true }, { "status", V20, true }, { "depth", "integer", true, "0" },
    { "created_at", TS, false, NOW }, { "updated_at", TS, false, NOW }, { "completed_at", TS },
    { "metadata", "jsonb", false, "'{}'::jsonb" },
    { "success_score", NUM, false, "0.0" }, { "quality_score", NUM, false, "0.0" },
    { "speed_score", NUM, false, "0.0" }, { "usefulness_score", NUM, false, "0.0" },
    { "overall_weight", NUM, false, "0.5" },
    { "importance_level", V10, false, "'medium'::character varying" },
  },
  agents = {
    { "id", "uuid", true, UUIDGEN }, { "thought_tree_id", "uuid", true },
    { "agent_type", V20, true }, { "agent_class", V100, true }, { "status", V20, true },
    { "spawned_by", "uuid" }, { "created_at", TS, false, NOW }, { "completed_at", TS },
    { "max_recursion_depth", "integer", false, "5" }, { "current_recursion_depth", "integer", false, "0" },
    { "context", "jsonb", false, "'{}'::jsonb" }, { "state", "jsonb", false, "'{}'::jsonb" },
  },
  orchestrators = {
    { "id", "uuid", true, UUIDGEN }, { "parent_orchestrator_id", "uuid" },
    { "thought_tree_id", "uuid", true }, { "orchestrator_type", V20, true }, { "status", V20, true },
    { "created_at", TS, false, NOW }, { "completed_at", TS },
    { "max_concurrent_agents", "integer", false, "10" }, { "current_active_agents", "integer", false, "0" },
    { "global_context", "jsonb", false, "'{}'::jsonb" },
  },
  llm_interactions = {
    { "id", "uuid", true, UUIDGEN }, { "agent_id", "uuid" }, { "thought_tree_id", "uuid", true },
    { "provider", V20, true, "'claude'::character varying" }, { "model", V50, true },
    { "prompt_text", "text", true }, { "system_prompt", "text" }, { "response_text", "text" },
    { "request_timestamp", TS, false, NOW }, { "response_timestamp", TS },
    { "token_count_input", "integer" }, { "token_count_output", "integer" },
    { "cached_token_count", "integer", false, "0" }, { "cache_creation_input_tokens", "integer", false, "0" },
    { "cache_read_input_tokens", "integer", false, "0" }, { "latency_ms", "integer" },
    { "cost_usd", "numeric(10,6)" }, { "cost_without_cache_usd", "numeric(10,6)" },
    { "uses_prompt_caching", "boolean", false, "false" }, { "cache_ttl_seconds", "integer" },
    { "cache_hit", "boolean", false, "false" }, { "success", "boolean", false, "false" },
    { "error_message", "text" }, { "retry_count", "integer", false, "0" },
  },
  tool_executions = {
    { "id", "uuid", true, UUIDGEN }, { "agent_id", "uuid", true }, { "thought_tree_id", "uuid", true },
    { "tool_name", V50, true }, { "tool_class", V100, true },
    { "input_parameters", "jsonb", true }, { "output_result", "jsonb" },
    { "stdout", "text" }, { "stderr", "text" },
    { "started_at", TS, false, NOW }, { "completed_at", TS }, { "duration_ms", "integer" },
    { "success", "boolean", false, "false" }, { "exit_code", "integer" },
    { "error_message", "text" }, { "retry_count", "integer", false, "0" },
  },
  prompt_templates = {
    { "id", "uuid", true, UUIDGEN }, { "name", V100, true }, { "template_type", V20, true },
    { "content", "text", true }, { "variables", "jsonb", false, "'[]'::jsonb" },
    { "version", "integer", true, "1" }, { "is_active", "boolean", false, "true" },
    { "created_at", TS, false, NOW }, { "updated_at", TS, false, NOW }, { "created_by", V100 },
    { "usage_count", "integer", false, "0" }, { "success_rate", NUM, false, "0.0" },
  },
  system_config = {
    { "id", "uuid", true, UUIDGEN }, { "config_key", V100, true }, { "config_value", "jsonb", true },
    { "config_type", V20, true }, { "description", "text" },
    { "created_at", TS, false, NOW }, { "updated_at", TS, false, NOW },
  },
  agent_communications = {
    { "id", "uuid", true, UUIDGEN }, { "sender_agent_id", "uuid", true }, { "receiver_agent_id", "uuid" },
    { "thought_tree_id", "uuid", true }, { "message_type", V20, true }, { "content", "jsonb", true },
    { "sent_at", TS, false, NOW }, { "received_at", TS },
    { "delivered", "boolean", false, "false" }, { "processed", "boolean", false, "false" },
  },
}

-- "table.column -> table.column"
local FOREIGN_KEYS = {
  "agent_communications.receiver_agent_id -> agents.id",
  "agent_communications.sender_agent_id -> agents.id",
  "agent_communications.thought_tree_id -> thought_trees.id",
  "agents.spawned_by -> agents.id",
  "agents.thought_tree_id -> thought_trees.id",
  "llm_call_details.interaction_id -> llm_interactions.id", -- nyx's own table
  "llm_call_details.prompt_template_id -> prompt_templates.id", -- nyx's own (0006)
  "llm_interactions.agent_id -> agents.id",
  "llm_interactions.thought_tree_id -> thought_trees.id",
  "orchestrators.parent_orchestrator_id -> orchestrators.id",
  "orchestrators.thought_tree_id -> thought_trees.id",
  "prompt_template_files.template_id -> prompt_templates.id", -- nyx's own (0006)
  "prompt_template_stats.template_id -> prompt_templates.id", -- nyx's own (0006)
  "thought_trees.parent_id -> thought_trees.id",
  "thought_trees.root_id -> thought_trees.id",
  "tool_executions.agent_id -> agents.id",
  "tool_executions.thought_tree_id -> thought_trees.id",
}

-- the document's INDEX clauses: name -> "table (columns)"
local INDEXES = {
  idx_thought_trees_parent_id = "thought_trees (parent_id)",
  idx_thought_trees_root_id = "thought_trees (root_id)",
  idx_thought_trees_status = "thought_trees (status)",
  idx_thought_trees_depth = "thought_trees (depth)",
  idx_thought_trees_overall_weight = "thought_trees (overall_weight)",
  idx_agents_thought_tree_id = "agents (thought_tree_id)",
  idx_agents_type_status = "agents (agent_type, status)",
  idx_agents_spawned_by = "agents (spawned_by)",
  idx_orchestrators_parent_id = "orchestrators (parent_orchestrator_id)",
  idx_orchestrators_thought_tree_id = "orchestrators (thought_tree_id)",
  idx_orchestrators_status = "orchestrators (status)",
  idx_llm_interactions_agent_id = "llm_interactions (agent_id)",
  idx_llm_interactions_thought_tree_id = "llm_interactions (thought_tree_id)",
  idx_llm_interactions_timestamp = "llm_interactions (request_timestamp)",
  idx_llm_interactions_provider_model = "llm_interactions (provider, model)",
  idx_tool_executions_agent_id = "tool_executions (agent_id)",
  idx_tool_executions_thought_tree_id = "tool_executions (thought_tree_id)",
  idx_tool_executions_tool_name = "tool_executions (tool_name)",
  idx_tool_executions_started_at = "tool_executions (started_at)",
  idx_prompt_templates_name = "prompt_templates (name)",
  idx_prompt_templates_type_active = "prompt_templates (template_type, is_active)",
  idx_system_config_key = "system_config (config_key)",
  idx_system_config_type = "system_config (config_type)",
  idx_agent_communications_sender = "agent_communications (sender_agent_id)",
  idx_agent_communications_receiver = "agent_communications (receiver_agent_id)",
  idx_agent_communications_thought_tree = "agent_communications (thought_tree_id)",
  idx_agent_communications_sent_at = "agent_communications (sent_at)",
}

local CONFIG = {
  { "max_recursion_depth", 10, "limit", "Maximum depth for recursive agent spawning" },
  { "max_concurrent_agents", 50, "limit", "Maximum number of concurrent agents system-wide" },
  { "max_thought_tree_age_days", 365, "limit", "Maximum age before thought trees marked as archival" },
  { "default_retry_attempts", 3, "setting", "Default number of retry attempts for failed operations" },
  { "llm_timeout_seconds", 60, "setting", "Default timeout for LLM API calls" },
  { "tool_timeout_seconds", 30, "setting", "Default timeout for tool executions" },
}

local function sqlstate(fn, ...)
  local ok, e = pcall(fn, ...)
  assert(not ok, "expected an error")
  return type(e) == "table" and e.sqlstate or tostring(e)
end

describe("the schema", function()
  local dbname
  setup(function() dbname = H.fresh_db() end)
  teardown(function() H.drop_db(dbname) end)

  it("has exactly the eight tables of the document, plus nyx's own", function()
    local got = {}
    for _, r in ipairs(nyx.db.query(
      "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")) do
      got[#got + 1] = r.tablename
    end
    -- nyx's own: the migrations it applied, what the API said per call,
    -- which template version each prompt file gives and the versions' sums
    local want = { "schema_migrations", "llm_call_details", "prompt_template_files", "prompt_template_stats" }
    for t in pairs(TABLES) do want[#want + 1] = t end
    table.sort(want)
    assert.are.same(want, got)
  end)

  for tname, cols in pairs(TABLES) do
    it("gives " .. tname .. " every column with its type, NOT NULL and default", function()
      local rows = nyx.db.query([[
        SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
               a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS def
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum]], tname)
      local got, want = {}, {}
      for _, r in ipairs(rows) do got[#got + 1] = { r.name, r.type, r.notnull, r.def } end
      for _, c in ipairs(cols) do want[#want + 1] = { c[1], c[2], c[3] or false, c[4] } end
      assert.are.same(want, got)
      local pk = nyx.db.query([[SELECT a.attname FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = $1::regclass AND i.indisprimary]], tname)
      assert.are.same({ { attname = "id" } }, pk)
    end)
  end

  it("has the document's foreign keys and no others", function()
    local got = {}
    for _, r in ipairs(nyx.db.query([==[
      SELECT c.conrelid::regclass::text || '.' || a.attname || ' -> ' ||
             c.confrelid::regclass::text || '.' || fa.attname AS fk
      FROM pg_constraint c
      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
      JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
      WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace ORDER BY 1]==])) do
      got[#got + 1] = r.fk
    end
    assert.are.same(FOREIGN_KEYS, got)
  end)

  it("creates each of the document's indexes under its name", function()
    for name, def in pairs(INDEXES) do
      local r = nyx.db.query("SELECT indexdef FROM pg_indexes WHERE indexname = $1", name)[1]
      assert.is_not_nil(r, name)
      local tbl, cols = def:match("^(%S+) (.+)$")
      local want = "ON public." .. tbl .. " USING btree " .. cols
      assert.are.equal(want, r.indexdef:sub(-#want), name)
    end
  end)

  it("has partial indexes on active and pending records", function()
    local function partial(tbl, pattern)
      for _, r in ipairs(nyx.db.query("SELECT indexdef FROM pg_indexes WHERE tablename = $1", tbl)) do
        if r.indexdef:find(pattern, 1, true) then return true end
      end
      return false
    end
    assert.is_true(partial("thought_trees", "WHERE ((status)::text = ANY ((ARRAY['pending'::character varying, 'in_progress'::character varying])::text[]))"))
    assert.is_true(partial("agents", "WHERE ((status)::text = ANY ((ARRAY['spawned'::character varying, 'active'::character varying])::text[]))"))
    assert.is_true(partial("agent_communications", "WHERE (NOT processed)"))
    -- and the planner uses the thought_trees one for open work
    nyx.db.exec("SET enable_seqscan = off")
    local plan = nyx.db.query("EXPLAIN SELECT id FROM thought_trees WHERE root_id = $1 AND status IN ('pending', 'in_progress')",
                              nyx.uuid())
    nyx.db.exec("RESET enable_seqscan")
    local text = {}
    for _, r in ipairs(plan) do text[#text + 1] = r["QUERY PLAN"] end
    assert.matches("idx_thought_trees_open", table.concat(text, "\n"))
  end)

  it("inserts the six initial configuration rows", function()
    local rows = nyx.db.query([[SELECT config_key, config_value, config_type, description FROM system_config
                                WHERE config_key NOT LIKE 'model\_%' ORDER BY created_at, config_key]])
    assert.are.equal(#CONFIG, #rows)
    local by_key = {}
    for _, r in ipairs(rows) do by_key[r.config_key] = r end
    for _, c in ipairs(CONFIG) do
      local r = by_key[c[1]]
      assert.is_not_nil(r, c[1])
      assert.are.same({ value = c[2] }, r.config_value)
      assert.are.equal(c[3], r.config_type)
      assert.are.equal(c[4], r.description)
    end
  end)

  it("inserts a model for each role strategies use (0007)", function()
    local rows = nyx.db.query("SELECT config_key, config_value, config_type FROM system_config WHERE config_key LIKE 'model\\_%'")
    local roles = {}
    for _, r in ipairs(rows) do
      roles[r.config_key:sub(7)] = r.config_value.value
      assert.are.equal("setting", r.config_type)
    end
    assert.are.same(nyx.strategy.ROLES, roles)
  end)

  it("indexes goals for search only where a search can find them, and the memory agents' query uses it (0008)", function()
    local def = nyx.db.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_thought_trees_goal_fts'")[1].indexdef
    assert.matches("gin", def)
    assert.matches("status.*'completed'", def)
    assert.matches("metadata %? 'result'", def)
    -- the memory agents' WHERE clause (lua/agents/memory.lua) implies the
    -- index's: among many finished nodes, the planner picks the index for
    -- a rare word (in a transaction rolled back: the rows cannot be deleted)
    local plan = {}
    local ok, err = pcall(nyx.db.transaction, function()
      nyx.db.exec([[INSERT INTO thought_trees (goal, status, metadata)
        SELECT 'Step ' || g || ' of a long plan', 'completed', '{"result": "done"}' FROM generate_series(1, 2000) g]])
      nyx.db.exec("INSERT INTO thought_trees (goal, status, metadata) VALUES ('A hiking trip', 'completed', '{\"result\": \"x\"}')")
      nyx.db.exec("ANALYZE thought_trees")
      for _, r in ipairs(nyx.db.query([[EXPLAIN SELECT t.id FROM thought_trees t, to_tsquery('english', 'hiking') q
        WHERE t.status = 'completed' AND t.metadata ? 'result' AND to_tsvector('english', t.goal) @@ q]])) do
        plan[#plan + 1] = r["QUERY PLAN"]
      end
      error("roll back", 0)
    end)
    assert.is_false(ok)
    assert.are.equal("roll back", err)
    assert.matches("idx_thought_trees_goal_fts", table.concat(plan, "\n"))
  end)

  describe("constraints and defaults", function()
    local tree, agent
    before_each(function()
      tree = nyx.db.query("INSERT INTO thought_trees (goal, status) VALUES ('g', 'pending') RETURNING *")[1]
      agent = nyx.db.query("INSERT INTO agents (thought_tree_id, agent_type, agent_class, status) " ..
                           "VALUES ($1, 'task', 'x', 'spawned') RETURNING *", tree.id)[1]
    end)

    it("fills thought_trees' defaults", function()
      assert.matches("^%x+%-", tree.id)
      assert.are.equal(0, tree.depth)
      assert.are.same({}, tree.metadata)
      assert.are.equal(0, tree.success_score)
      assert.are.equal(0.5, tree.overall_weight)
      assert.are.equal("medium", tree.importance_level)
      assert.is_nil(tree.completed_at)
      assert.is_string(tree.created_at)
    end)

    it("checks every CHECK'd value set", function()
      -- table, column, allowed values, an INSERT taking the value as $1
      local checks = {
        { "thought_trees.status", { "pending", "in_progress", "completed", "failed", "cancelled" },
          "INSERT INTO thought_trees (goal, status) VALUES ('g', $1)" },
        { "thought_trees.importance_level", { "low", "medium", "high" },
          "INSERT INTO thought_trees (goal, status, importance_level) VALUES ('g', 'pending', $1)" },
        { "agents.agent_type", { "task", "council", "validator", "memory" },
          "INSERT INTO agents (thought_tree_id, agent_type, agent_class, status) VALUES ($2, $1, 'c', 'spawned')" },
        { "agents.status", { "spawned", "active", "completed", "failed", "terminated" },
          "INSERT INTO agents (thought_tree_id, agent_type, agent_class, status) VALUES ($2, 'task', 'c', $1)" },
        { "orchestrators.orchestrator_type", { "top_level", "sub" },
          "INSERT INTO orchestrators (thought_tree_id, orchestrator_type, status) VALUES ($2, $1, 'active')" },
        { "orchestrators.status", { "active", "completed", "failed", "paused" },
          "INSERT INTO orchestrators (thought_tree_id, orchestrator_type, status) VALUES ($2, 'sub', $1)" },
        { "prompt_templates.template_type", { "system", "user", "assistant" },
          "INSERT INTO prompt_templates (name, template_type, content) VALUES (gen_random_uuid()::text || $2, $1, 'c')" },
        { "system_config.config_type", { "limit", "setting", "credential" },
          "INSERT INTO system_config (config_key, config_value, config_type) VALUES (gen_random_uuid()::text || $2, '{}', $1)" },
        { "agent_communications.message_type", { "context_share", "request", "response", "notification" },
          "INSERT INTO agent_communications (sender_agent_id, thought_tree_id, message_type, content) " ..
          "VALUES ($3, $2, $1, '{}')" },
      }
      for _, c in ipairs(checks) do
        local sql = c[3]
        local args = {} -- only the parameters the statement uses
        if sql:find("$2", 1, true) then args[1] = tree.id end
        if sql:find("$3", 1, true) then args[2] = agent.id end
        for _, v in ipairs(c[2]) do
          assert.are.equal(1, nyx.db.exec(sql, v, table.unpack(args)), c[1] .. " = " .. v)
        end
        assert.are.equal("23514", sqlstate(nyx.db.exec, sql, "bogus", table.unpack(args)), c[1])
      end
    end)

    it("enforces NOT NULL and foreign keys", function()
      assert.are.equal("23502", sqlstate(nyx.db.exec, "INSERT INTO thought_trees (goal, status) VALUES (NULL, 'pending')"))
      assert.are.equal("23502", sqlstate(nyx.db.exec, "INSERT INTO thought_trees (goal) VALUES ('no status')"))
      assert.are.equal("23503", sqlstate(nyx.db.exec,
        "INSERT INTO thought_trees (goal, status, parent_id) VALUES ('g', 'pending', $1)", nyx.uuid()))
      assert.are.equal("23503", sqlstate(nyx.db.exec,
        "INSERT INTO agents (thought_tree_id, agent_type, agent_class, status) VALUES ($1, 'task', 'c', 'spawned')", nyx.uuid()))
      assert.are.equal("23503", sqlstate(nyx.db.exec,
        "INSERT INTO tool_executions (agent_id, thought_tree_id, tool_name, tool_class, input_parameters) VALUES ($1, $2, 't', 'c', '{}')",
        nyx.uuid(), tree.id))
      assert.are.equal("23502", sqlstate(nyx.db.exec,
        "INSERT INTO tool_executions (agent_id, thought_tree_id, tool_name, tool_class) VALUES ($1, $2, 't', 'c')",
        agent.id, tree.id))
      assert.are.equal("23502", sqlstate(nyx.db.exec,
        "INSERT INTO llm_interactions (thought_tree_id, model) VALUES ($1, 'm')", tree.id))
    end)

    it("fills the defaults of the logging tables", function()
      local llm = nyx.db.query("INSERT INTO llm_interactions (thought_tree_id, model, prompt_text) " ..
                               "VALUES ($1, 'claude-x', 'p') RETURNING *", tree.id)[1]
      assert.are.equal("claude", llm.provider)
      assert.are.equal(0, llm.cached_token_count)
      assert.are.equal(0, llm.cache_creation_input_tokens)
      assert.are.equal(0, llm.cache_read_input_tokens)
      assert.is_false(llm.uses_prompt_caching)
      assert.is_false(llm.cache_hit)
      assert.is_false(llm.success)
      assert.are.equal(0, llm.retry_count)
      assert.is_string(llm.request_timestamp)
      assert.is_nil(llm.cost_usd)
      local tool = nyx.db.query("INSERT INTO tool_executions (agent_id, thought_tree_id, tool_name, tool_class, input_parameters) " ..
                                "VALUES ($1, $2, 'ls', 'process', '{\"argv\": [\"ls\"]}') RETURNING *", agent.id, tree.id)[1]
      assert.is_false(tool.success)
      assert.are.equal(0, tool.retry_count)
      assert.are.same({ argv = { "ls" } }, tool.input_parameters)
      assert.are.equal(5, agent.max_recursion_depth)
      assert.are.equal(0, agent.current_recursion_depth)
      assert.are.same({}, agent.context)
      local orch = nyx.db.query("INSERT INTO orchestrators (thought_tree_id, orchestrator_type, status) " ..
                                "VALUES ($1, 'top_level', 'active') RETURNING *", tree.id)[1]
      assert.are.equal(10, orch.max_concurrent_agents)
      assert.are.equal(0, orch.current_active_agents)
      local tpl = nyx.db.query("INSERT INTO prompt_templates (name, template_type, content) " ..
                               "VALUES ($1, 'system', 'c') RETURNING *", nyx.uuid())[1]
      assert.are.same({}, tpl.variables)
      assert.are.equal(1, tpl.version)
      assert.is_true(tpl.is_active)
      assert.are.equal(0, tpl.usage_count)
      assert.are.equal(0, tpl.success_rate)
      local msg = nyx.db.query("INSERT INTO agent_communications (sender_agent_id, thought_tree_id, message_type, content) " ..
                               "VALUES ($1, $2, 'notification', '{}') RETURNING *", agent.id, tree.id)[1]
      assert.is_false(msg.delivered)
      assert.is_false(msg.processed)
      assert.is_nil(msg.receiver_agent_id)
    end)

    it("keeps names and keys unique", function()
      local name = nyx.uuid()
      nyx.db.exec("INSERT INTO prompt_templates (name, template_type, content) VALUES ($1, 'user', 'a')", name)
      assert.are.equal("23505", sqlstate(nyx.db.exec,
        "INSERT INTO prompt_templates (name, template_type, content) VALUES ($1, 'user', 'b')", name))
      assert.are.equal("23505", sqlstate(nyx.db.exec,
        "INSERT INTO system_config (config_key, config_value, config_type) VALUES ('max_recursion_depth', '{}', 'limit')"))
    end)

    it("keeps updated_at current", function()
      local function moved(tbl, key, value, change)
        local where = (" WHERE %s = $1"):format(key)
        local before = nyx.db.query("SELECT updated_at FROM " .. tbl .. where, value)[1].updated_at
        nyx.db.exec("UPDATE " .. tbl .. " SET " .. change .. where, value)
        return nyx.db.query("SELECT updated_at > $2::timestamptz AS moved FROM " .. tbl .. where,
                            value, before)[1].moved
      end
      assert.is_true(moved("thought_trees", "id", tree.id, "goal = 'changed'"))
      assert.is_true(moved("system_config", "config_key", "max_recursion_depth", "description = 'changed'"))
      local name = nyx.uuid()
      nyx.db.exec("INSERT INTO prompt_templates (name, template_type, content) VALUES ($1, 'user', 'a')", name)
      assert.is_true(moved("prompt_templates", "name", name, "usage_count = usage_count + 1"))
    end)
  end)

  it("keeps every record: DELETE and TRUNCATE are refused", function()
    nyx.db.exec("INSERT INTO thought_trees (goal, status) VALUES ('keep me', 'pending')")
    local ok, e = pcall(nyx.db.exec, "DELETE FROM thought_trees WHERE goal = 'keep me'")
    assert.is_false(ok)
    assert.matches("NYX keeps every record: DELETE on thought_trees refused", e.message, 1, true)
    assert.matches("importance_level = 'low'", e.hint, 1, true)
    for t in pairs(TABLES) do
      assert.are.equal("42501", sqlstate(nyx.db.exec, "TRUNCATE " .. t .. " CASCADE"), t)
    end
    assert.are.equal("42501", sqlstate(nyx.db.exec, "TRUNCATE llm_call_details"))
    assert.are.equal(1, nyx.db.query("SELECT count(*) AS n FROM thought_trees WHERE goal = 'keep me'")[1].n)
    -- manual archival says so, deliberately
    local ok2 = pcall(nyx.db.transaction, function()
      nyx.db.exec("SET LOCAL nyx.allow_delete = on")
      assert.are.equal(1, nyx.db.exec("DELETE FROM thought_trees WHERE goal = 'keep me'"))
      error("roll back")
    end)
    assert.is_false(ok2)
    assert.are.equal(1, nyx.db.query("SELECT count(*) AS n FROM thought_trees WHERE goal = 'keep me'")[1].n)
  end)
end)
