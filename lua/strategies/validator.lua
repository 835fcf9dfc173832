--- strategies.validator: runs another strategy (options.inner, default
-- "decompose") on the node, then a validator agent (role "validate")
-- checks the result against the goal: a quality score and pass/fail with
-- reasons (metadata.validation; the node's quality_score follows it). A
-- failing result is retried with the reasons as feedback
-- (options.retries, default 1), then re-planned once (options.replan,
-- default true: the node split afresh, told why); if nothing passes, the
-- node fails (type "validation_failed") with the last verdict and
-- result. Subtasks run the inner strategy (only this node is validated).
local S = require "nyx.strategy"
local core = require "nyx.core"

local M = {}

function M.run(node, ctx)
  local inner = S.inner(ctx, "validator")
  local retries = math.tointeger(ctx.options.retries) or 1
  local result = inner.run(node, ctx)
  local verdict = S.validate(ctx, node, result)
  local tries = 0
  while not verdict.pass and tries < retries do
    tries = tries + 1
    node.feedback = verdict.reasons
    result = inner.run(node, ctx)
    verdict = S.validate(ctx, node, result)
  end
  if not verdict.pass and ctx.options.replan ~= false and node.depth < S.depth_limit() then
    node.feedback = verdict.reasons
    local plan = S.plan(ctx, node, { split = true, feedback = verdict.reasons })
    if plan.subtasks then
      result = S.synthesize(ctx, node, (S.subtasks(ctx, node, plan)))
    elseif plan.answer then
      result = plan.answer
    end
    node.metadata.replanned = true
    verdict = S.validate(ctx, node, result)
  end
  node.feedback = nil
  node.retries = (node.retries or 0) + tries
  if verdict.pass then return result end
  node.metadata.rejected = type(result) == "string" and result:sub(1, 4000) or result
  error(core.error_object("validation_failed", "the result failed validation: " .. verdict.reasons,
                          { verdict = verdict }), 0)
end

return M
