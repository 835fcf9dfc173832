-- examples/plan.lua: the main job. A goal, decomposed recursively by the
-- "decompose" strategy (lua/strategies/decompose.lua: a planner agent per
-- node answers or splits it; each subtask it splits gets a sub-orchestrator), leaves
-- answered by the model, results gathered upward; the final answer and a
-- one-line summary.
--
--   nyx examples/plan.lua "a goal" [--strategy NAME] [--no-synthesize]
--                                  [--max-agents N] [--budget-usd X]
--
-- Each node's subtask results are combined into its answer by one more
-- call (--no-synthesize: gathered as a numbered list instead).
--
-- With no ANTHROPIC_API_KEY the offline model answers (a fake Claude on
-- loopback), so this runs anywhere. Ctrl-C stops it cleanly: running nodes
-- cancelled, agents terminated, orchestrators paused, exit 130. Everything
-- is in PostgreSQL: `nyx -e 'print(nyx.tree.latest())'`.
local goal, opts = nil, { strategy = "decompose", synthesize = true }
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--strategy" then i = i + 1; opts.strategy = arg[i]
  elseif a == "--synthesize" then opts.synthesize = true
  elseif a == "--no-synthesize" then opts.synthesize = false
  elseif a == "--max-agents" then i = i + 1; opts.max_concurrent_agents = math.tointeger(tonumber(arg[i]))
  elseif a == "--budget-usd" then i = i + 1; opts.budget = { usd = tonumber(arg[i]) }
  elseif a:sub(1, 2) == "--" then
    io.stderr:write(("plan.lua: unknown option %s (see the top of examples/plan.lua)\n"):format(a))
    os.exit(2)
  else goal = goal and (goal .. " " .. a) or a end
  i = i + 1
end
goal = goal or "Plan a weekend hiking trip"

local t0, cpu0 = nyx.core.now(), nyx.core.cpu()
local root = nyx.tree.create{ goal = goal, metadata = { example = "plan" } }
local called, ok, result = pcall(nyx.orchestrate, root, opts)
if not called then -- a bad option: say which, in one line
  local msg = tostring(ok):match("^[^\n]*"):gsub("^.-:%d+: ", "")
  io.stderr:write("plan.lua: ", msg, "\n")
  os.exit(2)
end
local wall = nyx.core.now() - t0

local s = nyx.db.query([[
  SELECT (SELECT count(*) FROM thought_trees WHERE root_id = $1) AS nodes,
         count(i.id) AS calls,
         coalesce(sum(coalesce(i.token_count_input, 0) + coalesce(i.token_count_output, 0)
                      + i.cache_creation_input_tokens + i.cache_read_input_tokens), 0) AS tokens,
         coalesce(sum(i.cost_usd), 0) AS cost,
         coalesce(sum(i.cache_read_input_tokens), 0) AS read,
         coalesce(sum(coalesce(i.token_count_input, 0) + i.cache_creation_input_tokens
                      + i.cache_read_input_tokens), 0) AS input
  FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
  WHERE t.root_id = $1]], root.id)[1]

if ok then
  print(result)
else
  io.stderr:write("plan.lua: the goal failed: ", tostring(type(result) == "table" and result.message or result), "\n")
end
io.stderr:write(("\n%s: %d nodes, %d LLM calls, %d tokens, $%.4f, cache hit rate %.0f%%, %.2f s wall, %.2f s CPU; tree %s\n"):format(
  ok and "done" or "failed", s.nodes, s.calls, s.tokens, s.cost,
  s.input > 0 and 100 * s.read / s.input or 0, wall, nyx.core.cpu() - cpu0, root.id))
if not ok then os.exit(1) end
