--- strategies.decompose: plan-and-execute, recursively. A planner agent
-- (role "plan", prompts/decompose) answers the node's goal or splits it
-- into subtasks (strict JSON, validated; a malformed reply gets one repair
-- request, then the node fails with the model's text in
-- metadata.error_details). A goal the planner calls atomic is answered by
-- an answer agent (role "leaf"). Each subtask is planned here too, by a
-- planner agent on its node: a subtask it answers is done, and only one it
-- splits gets a sub-orchestrator, running this same strategy on that plan
-- (options.plan). A subtask refused for depth is answered here; failed
-- subtasks are reported without failing the node unless all failed.
-- Results are gathered upward: with options.synthesize by one more call
-- (role "synthesize"), else as a numbered list.
local S = require "nyx.strategy"

local M = {}

function M.run(node, ctx)
  local plan = ctx.options.plan or S.plan(ctx, node) -- planned by the parent already?
  if plan.answer then return plan.answer end
  if plan.atomic then return S.answer(ctx, node) end
  local gathered = S.subtasks(ctx, node, plan, nil, { ahead = true })
  if not ctx.options.synthesize then return gathered end
  return S.synthesize(ctx, node, gathered)
end

return M
