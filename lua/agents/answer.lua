--- agents.answer: answers a goal in one LLM call. input = {goal =
-- (default: the agent's node's goal), system =, max_tokens =, context =
-- (text the answer should use)}. Returns the text.
return function(agent, input)
  input = input or {}
  local goal = input.goal or agent.node.goal
  local content = goal
  if input.context then content = input.context .. "\n\nTask: " .. goal end
  local r = agent:complete{
    system = input.system or "Complete the task you are given, well and concisely.",
    max_tokens = input.max_tokens or 1024,
    messages = { { role = "user", content = content } },
  }
  return r.text
end
