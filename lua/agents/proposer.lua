--- agents.proposer: one council member's independent proposal for its
-- node's goal (role "council"). input = {index =, count =, mode = "answer"
-- (default: an answer, prompts/answer) or "plan" (a decomposition,
-- prompts/decompose)}. Returns the answer text, or the plan
-- {subtasks =} / {answer =}.
local S = require "nyx.strategy"

return function(agent, input)
  input = input or {}
  local node = agent.node
  local who = ("You are member %d of a council of %d; each member answers independently, so give your own best take.")
    :format(input.index or 1, input.count or 1)
  local model = S.model(agent.orchestrator, "council", input.model)
  if input.mode == "plan" then
    local req = S.request("decompose", "decompose_task", {
      goal = node.goal, depth = node.depth, limit_note = who,
    })
    req.model, req.max_tokens = model, input.max_tokens or 1024
    return (S.json_reply(agent, req, S.check_plan, "malformed_plan"))
  end
  local shared = S.notes(agent)
  local req = S.request("answer", "answer_task", {
    goal = node.goal, context = shared ~= "" and (who .. "\n\n" .. shared) or who,
  })
  req.model, req.max_tokens = model, input.max_tokens or 1024
  req.temperature = 1
  return agent:complete(req).text
end
