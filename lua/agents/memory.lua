--- agents.memory: finds finished work similar to a goal: completed nodes
-- of other trees whose goal matches (PostgreSQL full-text search on
-- thought_trees.goal), ranked by text rank weighted by the node's
-- overall_weight and importance_level. input = {goal =, limit = 3}.
-- Returns a list of {id =, goal =, result =, overall_weight =,
-- importance_level =, score =}, best first (no LLM call).
local db = require "nyx.db"

local STOP = { the = true, ["and"] = true, ["for"] = true, with = true, that = true, this = true,
               from = true, into = true, your = true, about = true, what = true, how = true }

-- The goal's words as an OR query: any shared word makes a candidate; the
-- rank orders them.
local function query_of(goal)
  local words, seen = {}, {}
  for w in goal:lower():gmatch("%w+") do
    if #w >= 3 and not STOP[w] and not seen[w] and #words < 32 then
      seen[w] = true
      words[#words + 1] = w
    end
  end
  return table.concat(words, " | ")
end

return function(agent, input)
  input = input or {}
  local node = agent.node
  local q = query_of(input.goal or node.goal)
  if q == "" then return {} end
  local rows = db.query([[
    SELECT t.id, t.goal, left(t.metadata->>'result', 2000) AS result,
           t.overall_weight::float8 AS overall_weight, t.importance_level,
           (ts_rank(to_tsvector('english', t.goal), q) * (0.5 + t.overall_weight) *
            CASE t.importance_level WHEN 'high' THEN 1.5 WHEN 'low' THEN 0.5 ELSE 1.0 END)::float8 AS score
    FROM thought_trees t, to_tsquery('english', $1) q
    WHERE t.status = 'completed' AND t.root_id IS DISTINCT FROM $2::uuid AND t.id <> $2::uuid
      AND t.metadata ? 'result' AND to_tsvector('english', t.goal) @@ q
    ORDER BY score DESC, t.completed_at DESC
    LIMIT $3]], q, node.root_id or node.id, math.tointeger(input.limit) or 3)
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { id = r.id, goal = r.goal, result = r.result, overall_weight = r.overall_weight,
               importance_level = r.importance_level, score = r.score }
  end
  agent:set_state{ found = #out }
  return out
end
