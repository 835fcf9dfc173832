--- strategies.as_needed: decompose only as needed (after ADaPT, Prasad et
-- al. 2023). The goal is tried directly first (an answer agent, role
-- "leaf"); a validator agent checks the attempt; if it passes, that is the
-- node's result. If it fails, the node is split (a planner told why the
-- attempt failed) and each subtask gets a sub-orchestrator running
-- as_needed in turn; their results are combined by one synthesis call.
-- At the depth limit, or when the planner will not split, the attempt
-- stands if options.accept_at_limit (default true), else the node fails
-- with the verdict (type "validation_failed").
local S = require "nyx.strategy"
local core = require "nyx.core"

local M = {}

function M.run(node, ctx)
  local attempt = S.answer(ctx, node)
  local verdict = S.validate(ctx, node, attempt)
  if verdict.pass then return attempt end
  node.metadata.as_needed = { attempt_failed = verdict.reasons }
  local function at_limit(why)
    if ctx.options.accept_at_limit == false then
      error(core.error_object("validation_failed", why .. ": " .. verdict.reasons,
                              { verdict = verdict, attempt = attempt }), 0)
    end
    node.metadata.as_needed.accepted = why
    return attempt
  end
  if node.depth >= S.depth_limit() then return at_limit("the attempt failed validation at the depth limit") end
  local plan = S.plan(ctx, node, { split = true, feedback = verdict.reasons })
  if plan.answer then return plan.answer end
  if not plan.subtasks then return at_limit("the planner would not split the goal") end
  -- the result will be the subtasks', not the attempt the verdict judged
  -- (kept in metadata.validation); the node's quality is no longer its
  node.validation = nil
  local gathered = S.subtasks(ctx, node, plan)
  return S.synthesize(ctx, node, gathered)
end

return M
