--- strategies.council: several council agents (role "council") answer the
-- node's goal independently (options.council_size, default 3); one is
-- picked, and the dissent recorded in the node's metadata.council.
-- options.council_mode: "judge" (default: one judge agent, role "judge",
-- picks) or "vote" (one voter per member, majority wins, ties to the
-- lower number). options.council_propose = "plan": members propose
-- decompositions instead, and the chosen plan's subtasks run with
-- options.inner (default "decompose").
local S = require "nyx.strategy"

local M = {}

local function brief(p)
  if type(p) == "table" then
    if p.answer then return p.answer:sub(1, 300) end
    local goals = {}
    for i, s in ipairs(p.subtasks or {}) do goals[i] = s.goal end
    return "split: " .. table.concat(goals, "; "):sub(1, 300)
  end
  return tostring(p):sub(1, 300)
end

function M.run(node, ctx)
  local o = ctx.options
  local n = math.tointeger(o.council_size) or 3
  if n < 1 then error("options.council_size must be at least 1", 0) end
  local mode = o.council_mode or "judge"
  if mode ~= "judge" and mode ~= "vote" then error("options.council_mode must be \"judge\" or \"vote\"", 0) end
  local propose = o.council_propose == "plan" and "plan" or "answer"
  local handles = {}
  for i = 1, n do
    handles[i] = ctx:spawn{ type = "council", class = "proposer", node = node,
                            input = { index = i, count = n, mode = propose } }
  end
  local proposals, authors = {}, {}
  for i, r in ipairs(ctx:wait_all(handles)) do
    if r.ok then proposals[#proposals + 1] = r.result; authors[#authors + 1] = i end
  end
  if #proposals == 0 then error(("all %d council members failed"):format(n), 0) end

  local record = { mode = mode, members = n, proposals = {}, authors = authors }
  for i, p in ipairs(proposals) do record.proposals[i] = brief(p) end
  local choice = 1
  if #proposals > 1 and mode == "judge" then
    local ok, v = ctx:spawn{ type = "council", class = "judge", node = node,
                             input = { proposals = proposals } }:wait()
    if not ok then error(v, 0) end
    choice, record.reasons = v.choice, v.reasons
  elseif #proposals > 1 then
    local voters = {}
    for i = 1, #proposals do
      voters[i] = ctx:spawn{ type = "council", class = "judge", node = node,
                             input = { proposals = proposals, voter = authors[i] } }
    end
    local tally, votes = {}, {}
    for i, r in ipairs(ctx:wait_all(voters)) do
      if r.ok then
        tally[r.result.choice] = (tally[r.result.choice] or 0) + 1
        votes[#votes + 1] = { voter = authors[i], choice = r.result.choice, reasons = r.result.reasons }
      end
    end
    if #votes == 0 then error("every council vote failed", 0) end
    local best = 0
    for c = 1, #proposals do
      if (tally[c] or 0) > best then best, choice = tally[c], c end
    end
    record.votes = votes
    record.tally = tally
  end
  record.choice = choice
  local dissent = {}
  for i, p in ipairs(record.proposals) do
    if i ~= choice then dissent[#dissent + 1] = { proposal = i, author = authors[i], text = p } end
  end
  if record.votes then
    for _, v in ipairs(record.votes) do
      if v.choice ~= choice then dissent[#dissent + 1] = { voter = v.voter, voted = v.choice, reasons = v.reasons } end
    end
  end
  record.dissent = dissent
  node.metadata.council = record

  local chosen = proposals[choice]
  if propose ~= "plan" then return chosen end
  if chosen.answer then return chosen.answer end
  local gathered = S.subtasks(ctx, node, chosen, { strategy = o.inner or "decompose" })
  if not o.synthesize then return gathered end
  return S.synthesize(ctx, node, gathered)
end

return M
