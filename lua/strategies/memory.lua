--- strategies.memory: before any work starts, a memory agent finds
-- similar finished work (agents/memory.lua: full-text search on goals,
-- weighted by overall_weight and importance) and shares the best results
-- (ctx:share, context_share messages in agent_communications) with every
-- agent started after it, at every level below; then another strategy
-- (options.inner, default "decompose") does the work, its planners and
-- answerers seeing those results in their prompts. The search runs once,
-- at the node this strategy starts on; subtasks run the inner strategy.
local S = require "nyx.strategy"

local M = {}

function M.run(node, ctx)
  local inner = S.inner(ctx, "memory")
  local h = ctx:spawn{ type = "memory", class = "memory", node = node,
                       input = { goal = node.goal, limit = ctx.options.memory_limit or 3 } }
  local ok, found = h:wait()
  if ok and #found > 0 then
    ctx:share(h, "context_share", { memories = found })
    local ids = {}
    for i, m in ipairs(found) do ids[i] = { id = m.id, score = m.score } end
    node.metadata.memories = ids
  end
  return inner.run(node, ctx)
end

return M
