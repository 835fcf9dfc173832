--- agents.planner: asks the model (role "plan") to split the agent's
-- node's goal into subtasks, or to answer it. Prompts: prompts/decompose
-- (system) and decompose_task (user). input = {goal =, split = true (a
-- direct answer was not good enough: split), feedback = text, model =,
-- max_tokens =}; the node's `feedback` (a validator's reasons) and what was
-- shared with the agent (ctx:share) go into the prompt too. Returns
-- {subtasks = {{goal =}, ...}}, {answer = text} or {atomic = true}. A
-- reply that is none of these gets one repair request; a second bad reply
-- is an error (type "malformed_plan") carrying the model's text. When the
-- planner owns its node (nothing else works on it: S.subtasks planned it
-- ahead), an answer is the node's result; a split or "atomic" leaves the
-- node open for what works the plan (agent:leave_open).
local S = require "nyx.strategy"

return function(agent, input)
  input = input or {}
  local node = agent.node
  local notes = {}
  if node.depth >= S.depth_limit() then
    notes[#notes + 1] = "This goal is at the depth limit: answer it directly."
  elseif input.split then
    notes[#notes + 1] = "A direct answer to this goal was not good enough: split it into subtasks."
  end
  local feedback = input.feedback or node.feedback
  if feedback then notes[#notes + 1] = "A reviewer said of an earlier attempt: " .. feedback end
  local shared = S.notes(agent)
  if shared ~= "" then notes[#notes + 1] = shared end
  local req = S.request("decompose", "decompose_task", {
    goal = input.goal or node.goal, depth = node.depth, limit_note = table.concat(notes, "\n"),
  })
  req.model = S.model(agent.orchestrator, "plan", input.model)
  req.max_tokens = input.max_tokens or 1024
  local plan, repairs = S.json_reply(agent, req, S.check_plan, "malformed_plan")
  if repairs > 0 then agent:set_state{ repairs = repairs } end
  -- a planner that owns its node (planned ahead by the parent's strategy,
  -- S.subtasks) finishes it with the answer, or leaves it open for the
  -- agent or sub-orchestrator that works the plan
  if plan.answer then agent:set_node_result(plan.answer) else agent:leave_open() end
  return plan
end
