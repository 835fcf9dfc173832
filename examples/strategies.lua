-- examples/strategies.lua: the same goal through each strategy nyx ships
-- (lua/strategies/: decompose, as_needed, council, validator, memory), one
-- line each: nodes, LLM calls, cost, the node's scores, and what the
-- strategy recorded.
--
--   nyx examples/strategies.lua ["a goal"] [--only NAME]
--
-- With no ANTHROPIC_API_KEY the offline model answers, so this runs
-- anywhere; a goal longer than 60 characters makes the offline validator
-- reject a direct attempt, so as_needed shows its decomposition.
local goal, only = nil, nil
local i = 1
while arg[i] do
  if arg[i] == "--only" then i = i + 1; only = arg[i]
  elseif arg[i]:sub(1, 2) == "--" then
    io.stderr:write(("strategies.lua: unknown option %s (--only NAME)\n"):format(arg[i]))
    os.exit(2)
  else goal = goal and (goal .. " " .. arg[i]) or arg[i] end
  i = i + 1
end
goal = goal or "Plan a three day walking holiday in the Lake District for a family of four"

local runs = {
  { "decompose", { synthesize = true } },
  { "as_needed", {} },
  { "council", { council_size = 3 } },
  { "validator", { inner = "decompose" } },
  { "memory", { inner = "decompose" } }, -- finds the trees the others just made
}

local function summary(root_id)
  return nyx.db.query([[
    SELECT (SELECT count(*) FROM thought_trees WHERE root_id = $1 OR id = $1) AS nodes,
           count(i.id) AS calls, coalesce(sum(i.cost_usd), 0)::float8 AS cost
    FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
    WHERE t.root_id = $1 OR t.id = $1]], root_id)[1]
end

local function noted(name, node)
  local m = node.metadata
  if name == "as_needed" then
    return m.as_needed and ("attempt rejected (" .. tostring(m.as_needed.attempt_failed):sub(1, 40) .. "), split")
      or "attempt accepted"
  elseif name == "council" then
    return ("chose proposal %d of %d, %d dissent"):format(m.council.choice, #m.council.proposals, #m.council.dissent)
  elseif name == "validator" then
    return ("%d verdict(s), last: %s q=%.2f"):format(#m.validations, m.validation.pass and "pass" or "fail",
      m.validation.quality)
  elseif name == "memory" then
    return ("%d similar result(s) shared"):format(m.memories and #m.memories or 0)
  end
  return ""
end

local failed = 0
for _, r in ipairs(runs) do
  local name, opts = r[1], r[2]
  if not only or only == name then
    opts.strategy = name
    local t0 = nyx.core.now()
    local root = nyx.tree.create{ goal = goal, metadata = { example = "strategies" } }
    local ok, result = nyx.orchestrate(root, opts)
    root:refresh()
    local s = summary(root.id)
    print(("%-10s %-9s %3d nodes %3d calls $%.4f %5.2fs  success %.2f quality %.2f weight %.2f %-6s  %s"):format(
      name, ok and "completed" or "failed", s.nodes, s.calls, s.cost, nyx.core.now() - t0,
      root.success_score, root.quality_score, root.overall_weight, root.importance_level,
      ok and noted(name, root) or tostring(type(result) == "table" and result.message or result):sub(1, 60)))
    if not ok then failed = failed + 1 end
  end
end
os.exit(failed == 0 and 0 or 1)
