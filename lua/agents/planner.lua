--- agents.planner: asks the model to split the agent's node's goal into
-- subtasks or to answer it. input = {system =, prompt =, max_tokens =,
-- cache =}. Returns {subtasks = {{goal =}, ...}} or {answer = text}; a
-- reply that is neither is an error (type "malformed_plan") carrying the
-- model's text.
local json = require "cjson.safe"

local function malformed(why, text)
  error(require("nyx.core").error_object("malformed_plan", why, { text = text }), 0)
end

return function(agent, input)
  local r = agent:complete{
    system = input.system, cache = input.cache,
    max_tokens = input.max_tokens or 1024,
    messages = { { role = "user", content = input.prompt } },
  }
  local text = r.text or ""
  local v = json.decode(text:match("%b{}") or "")
  if type(v) ~= "table" then malformed("the plan is not a JSON object: " .. text:sub(1, 200), text) end
  if type(v.answer) == "string" then return { answer = v.answer } end
  if type(v.subtasks) ~= "table" or #v.subtasks == 0 then
    malformed("the plan has neither an answer nor subtasks: " .. text:sub(1, 200), text)
  end
  local subtasks = {}
  for i, s in ipairs(v.subtasks) do
    local goal = type(s) == "table" and s.goal or s
    if type(goal) ~= "string" or not goal:find("%S") then
      malformed(("subtask %d has no goal"):format(i), text)
    end
    subtasks[i] = { goal = goal }
  end
  return { subtasks = subtasks }
end
