-- bench/pgfloor.lua [B D [RUNS]]: what PostgreSQL alone needs to write the
-- rows of a fractal tree (bench/fractal.lua) on this schema, with nothing
-- of nyx in the way: each table's rows in one set-based statement, in one
-- transaction, values made by the server (generate_series), the fewest row
-- versions the runtime's rules allow:
--   each node: inserted, then updated once (completed, with its scores);
--   each agent: inserted active, then updated once (completed);
--   each orchestrator: one insert, final (a sub-orchestrator's row is
--     written when it ends, nyx.runtime.orchestrator_row_delay);
--   each LLM call: its llm_interactions and llm_call_details rows.
-- The transaction is rolled back (nyx's rows are never deleted). Prints
-- the time of each statement and the total, best of RUNS. No values to
-- parse, no round trips: a floor for the tree's writes on one connection.
-- nyx's log writer has two (its lanes write independent rows at once), so
-- on a machine with a core to spare a tree's writes can take less wall
-- time than this, though not less server CPU. Uses the database nyx would use (the bigger its tables, the deeper
-- their indexes: run it where the runtime's figures were taken).
--
-- One thing differs from a real run: here a row is updated in the
-- transaction that inserted it, and PostgreSQL then checks its foreign
-- keys again; nyx updates in a later batch, where it does not. Each
-- update is run under EXPLAIN ANALYZE and those checks' time is taken out.
local B, D, runs = tonumber(arg[1]) or 3, tonumber(arg[2]) or 6, tonumber(arg[3]) or 3
local db, core = nyx.db, nyx.core

-- The tree's nodes as (id, parent, depth, position), breadth first.
local STEPS = {
  { "nodes", [[
    CREATE TEMP TABLE floor_nodes ON COMMIT DROP AS
    WITH RECURSIVE t(id, parent, depth, n) AS (
      SELECT gen_random_uuid(), NULL::uuid, 0, 1
      UNION ALL
      SELECT gen_random_uuid(), t.id, t.depth + 1, g FROM t, generate_series(1, $1::int) g WHERE t.depth < $2::int)
    SELECT id, parent, depth, n, gen_random_uuid() AS agent, gen_random_uuid() AS orch,
           gen_random_uuid() AS call FROM t]] },
  { "thought_trees insert", [[
    INSERT INTO thought_trees (id, parent_id, root_id, depth, goal, status, metadata, created_at, updated_at)
    SELECT id, parent, (SELECT id FROM floor_nodes WHERE depth = 0), depth,
           'Plan part ' || n || ' of the fractal workload at depth ' || depth, 'in_progress',
           '{"strategy": {"name": "decompose", "version": "0123456789abcdef"}}', now(), now()
    FROM floor_nodes ORDER BY depth]] },
  { "orchestrators insert", [[
    INSERT INTO orchestrators (id, parent_orchestrator_id, thought_tree_id, orchestrator_type, status, created_at,
                               max_concurrent_agents, current_active_agents, global_context, completed_at)
    SELECT f.orch, p.orch, f.id, CASE WHEN f.depth = 0 THEN 'top_level' ELSE 'sub' END, 'completed', now(),
           50, 0, '{}', now()
    FROM floor_nodes f LEFT JOIN floor_nodes p ON p.id = f.parent ORDER BY f.depth]] },
  { "agents insert", [[
    INSERT INTO agents (id, thought_tree_id, agent_type, agent_class, status, created_at, max_recursion_depth,
                        current_recursion_depth, context, state)
    SELECT agent, id, 'task', 'planner', 'active', now(), 5, depth, '{}', '{"class_version": "0123456789abcdef"}'
    FROM floor_nodes]] },
  { "llm_interactions insert", [[
    INSERT INTO llm_interactions (id, agent_id, thought_tree_id, provider, model, prompt_text, system_prompt,
      response_text, request_timestamp, response_timestamp, token_count_input, token_count_output,
      cached_token_count, cache_creation_input_tokens, cache_read_input_tokens, latency_ms, cost_usd,
      cost_without_cache_usd, uses_prompt_caching, cache_ttl_seconds, cache_hit, success, retry_count)
    SELECT call, agent, id, 'claude', 'claude-opus-5-5', repeat('p', 212), repeat('s', 445), repeat('r', 125),
           now(), now(), 120, 40, 0, 0, 0, 3, 0.0012, 0.0012, true, 300, false, true, 0
    FROM floor_nodes]] },
  { "llm_call_details insert", [[
    INSERT INTO llm_call_details (interaction_id, request_id, response_id, http_status, stop_reason, streamed,
                                  usage, rate_limit, attempts)
    SELECT call, 'req_' || md5(call::text), 'msg_' || md5(call::text), 200, 'end_turn', false,
           '{"input_tokens": 120, "output_tokens": 40}', '{"anthropic-ratelimit-requests-remaining": "49"}',
           '[{"status": 200, "ms": 3.1}]'
    FROM floor_nodes]] },
  { "agents update", [[
    UPDATE agents a SET status = 'completed', completed_at = now(), state = '{"result": "done"}'
    FROM floor_nodes f WHERE a.id = f.agent]] },
  { "thought_trees update", [[
    UPDATE thought_trees t SET status = 'completed', completed_at = now(),
      metadata = '{"strategy": {"name": "decompose"}, "result": "the answer"}', success_score = 1,
      quality_score = 0.6, speed_score = 0.9, usefulness_score = 1, overall_weight = 0.9, importance_level = 'high'
    FROM floor_nodes f WHERE t.id = f.id]] },
}

local best, per = math.huge, nil
for _ = 1, runs do
  local times = {}
  local ok, err = pcall(db.transaction, function()
    for i, step in ipairs(STEPS) do
      local s = core.now()
      if i == 1 then
        db.exec(step[2], B, D)
      elseif step[2]:match("^%s*UPDATE") then
        local plan = db.query("EXPLAIN (ANALYZE, FORMAT JSON) " .. step[2])[1]["QUERY PLAN"][1]
        local rechecks = 0
        for _, t in ipairs(plan.Triggers or {}) do
          if t["Constraint Name"] then rechecks = rechecks + t.Time / 1e3 end
        end
        s = s + rechecks
      else
        db.exec(step[2])
      end
      times[i] = core.now() - s
    end
    times.total = 0
    for i = 2, #STEPS do times.total = times.total + times[i] end
    error("rolled back", 0)
  end)
  assert(not ok and err == "rolled back", tostring(err))
  if times.total < best then best, per = times.total, times end
end
local n = db.query("SELECT (power($1::float8, $2::float8 + 1) - 1) / ($1::float8 - 1) AS n", B, D)[1].n
print(("PostgreSQL floor for the rows of a B=%d D=%d tree (%d nodes), best of %d, rolled back:"):format(B, D, n, runs))
for i, step in ipairs(STEPS) do
  print(("  %-26s %8.1f ms%s"):format(step[1], per[i] * 1e3, i == 1 and "   (the tree's ids: not counted)" or ""))
end
print(("  %-26s %8.1f ms   (%.0f us per node)"):format("total", per.total * 1e3, per.total * 1e6 / n))
