--- agents.judge: picks the best of numbered proposals for its node's goal
-- (role "judge"; prompts/council_vote + council_vote_task). input =
-- {proposals = {text, ...}, voter = k (a council member voting, not the
-- judge), model =}. Returns {choice = i, reasons = text}; a reply that is
-- not one gets one repair request, then the agent fails (type
-- "malformed_vote").
local S = require "nyx.strategy"

local function text_of(p)
  if type(p) == "table" then
    if p.answer then return p.answer end
    if p.subtasks then
      local goals = {}
      for i, s in ipairs(p.subtasks) do goals[i] = s.goal end
      return "split into: " .. table.concat(goals, "; ")
    end
  end
  return tostring(p)
end

return function(agent, input)
  local lines = {}
  for i, p in ipairs(input.proposals) do
    lines[i] = ("Proposal %d: %s"):format(i, (text_of(p):gsub("\n", " ")))
  end
  local goal = agent.node.goal
  if input.voter then goal = goal .. ("\n(You are council member %d, voting.)"):format(input.voter) end
  local req = S.request("council_vote", "council_vote_task", {
    goal = goal, proposals = table.concat(lines, "\n"),
  })
  req.model = S.model(agent.orchestrator, "judge", input.model)
  req.max_tokens = input.max_tokens or 512
  local v = S.json_reply(agent, req, S.check_vote(#input.proposals), "malformed_vote")
  agent:set_state{ vote = v }
  return v
end
