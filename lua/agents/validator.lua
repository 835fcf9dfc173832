--- agents.validator: checks a result against its goal (role "validate";
-- prompts/validate + validate_task). input = {goal =, result =, model =}.
-- Returns the verdict {pass = bool, quality = 0..1, reasons = text}; a
-- reply that is not one gets one repair request, then the agent fails
-- (type "malformed_verdict").
local S = require "nyx.strategy"

return function(agent, input)
  local req = S.request("validate", "validate_task", {
    goal = input.goal or agent.node.goal, result = tostring(input.result),
  })
  req.model = S.model(agent.orchestrator, "validate", input.model)
  req.max_tokens = input.max_tokens or 512
  local v = S.json_reply(agent, req, S.check_verdict, "malformed_verdict")
  agent:set_state{ verdict = v }
  return v
end
