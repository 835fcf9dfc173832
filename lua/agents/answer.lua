--- agents.answer: answers a goal in one LLM call. input = {goal =
-- (default: the agent's node's goal), context = (text the answer should
-- use), feedback =, model =, max_tokens =}; with synthesize = true and
-- results = text, it combines subtasks' results into an answer instead.
-- Prompts: prompts/answer + answer_task (role "leaf"), or synthesize +
-- synthesize_task (role "synthesize"). The node's `feedback` (a
-- validator's reasons) and what was shared with the agent (ctx:share) go
-- into the context. Returns the text.
local S = require "nyx.strategy"

return function(agent, input)
  input = input or {}
  local node = agent.node
  local goal = input.goal or node.goal
  local req
  if input.synthesize then
    req = S.request("synthesize", "synthesize_task", { goal = goal, results = input.results or "" })
    req.model = S.model(agent.orchestrator, "synthesize", input.model)
  else
    local context = {}
    if input.context then context[#context + 1] = input.context end
    local feedback = input.feedback or (input.goal == nil and node.feedback) or nil
    if feedback then context[#context + 1] = "A reviewer said of an earlier attempt: " .. feedback end
    local shared = S.notes(agent)
    if shared ~= "" then context[#context + 1] = shared end
    req = S.request("answer", "answer_task", { goal = goal, context = table.concat(context, "\n\n") })
    req.model = S.model(agent.orchestrator, "leaf", input.model)
  end
  req.max_tokens = input.max_tokens or 1024
  return agent:complete(req).text
end
