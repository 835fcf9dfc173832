--- scoring: how a finished node is scored. The runtime loads this file with
-- nyx.hot.require("scoring"), so an edit takes effect on the next node
-- without a restart (a file that fails to load keeps the previous version).
--
-- M.score(n) turns what is known about a finished node into the six score
-- columns of thought_trees; M.usefulness(child, parent, ctx) is a parent's
-- judgment of how much a child's result went into its own; M.importance
-- (scores, n) picks low/medium/high; M.expected_ms(depth, kind) is the time
-- a node is expected to take, learned from the nodes that completed.
-- docs/lua-api.md ("Scoring") states the formulas; keep it in step.
local M = {}

M.weights = { success = 0.35, quality = 0.30, speed = 0.15, usefulness = 0.20 }

M.params = {
  retry_penalty = 0.1,     -- success lost per repair or retry ...
  retry_floor = 0.5,       -- ... down to this for a completed node
  quality_prior = 0.6,     -- unvalidated quality = this x success
  failed_quality_cap = 0.5, -- a validator's "fail" caps its quality here
  usefulness_prior = 0.5,  -- a completed node nobody judged
  usefulness_floor = 0.1,  -- a completed child none of whose words were used
  leaf_ms = 5000,          -- expected time of one agent's work
  growth = 1.5,            -- x this per level of subtree under a strategy node
  horizon = 3,             -- a strategy node at depth d has max(1, horizon - d) levels under it
  alpha = 0.2,             -- weight of the newest observation in the learned mean
  high = 0.75,             -- overall >= high: "high"
  low = 0.35,              -- overall < low: "low"
}

-- The learned expectations outlive a reload of this file (they are
-- observations, not formula): they live in package.loaded, not in M.
local state = package.loaded["scoring.state"] or { means = {}, counts = {} }
package.loaded["scoring.state"] = state

local STATUSES = { completed = true, failed = true, cancelled = true }

local function clamp(x)
  if type(x) ~= "number" or x ~= x then return 0 end
  return x < 0 and 0 or x > 1 and 1 or x
end

local mfloor = math.floor

-- clamp(x), rounded to 4 decimals (the columns' scale)
local function round4(x)
  if type(x) ~= "number" or x ~= x or x <= 0 then return 0 end
  if x >= 1 then return 1 end
  return mfloor(x * 10000 + 0.5) / 10000
end

-- "depth|kind", each made once: a node's score asks for it twice or more
local keys = {} -- kind -> depth -> key
local function key(depth, kind)
  local of = keys[kind]
  if not of then of = {}; keys[kind] = of end
  local k = of[depth]
  if not k then k = ("%d|%s"):format(depth, kind); of[depth] = k end
  return k
end

--- The seed of the expectation before anything was learned: leaf_ms for
-- an agent's node ("agent:<class>"), leaf_ms x growth^max(1, horizon -
-- depth) for a node a strategy orchestrated (it waits for its subtree).
function M.default_ms(depth, kind)
  local p = M.params
  if kind:sub(1, 6) == "agent:" then return p.leaf_ms end
  return p.leaf_ms * p.growth ^ math.max(1, p.horizon - depth)
end

--- expected_ms(depth, kind): the exponentially weighted mean of the
-- elapsed_ms of completed nodes of that depth and kind, seeded by
-- default_ms. Never below 1 ms.
function M.expected_ms(depth, kind)
  depth, kind = math.tointeger(depth) or 0, tostring(kind or "unknown")
  local m = state.means[key(depth, kind)] or M.default_ms(depth, kind)
  return math.max(1, m)
end

--- learn(depth, kind, elapsed_ms): moves the expectation alpha of the way
-- to this observation. Returns the new expectation.
function M.learn(depth, kind, elapsed_ms)
  depth, kind = math.tointeger(depth) or 0, tostring(kind or "unknown")
  local k, old = key(depth, kind), M.expected_ms(depth, kind)
  state.means[k] = old + M.params.alpha * (math.max(0, elapsed_ms) - old)
  state.counts[k] = (state.counts[k] or 0) + 1
  return state.means[k]
end

--- reset(): forgets what was learned.
function M.reset()
  state.means, state.counts = {}, {}
end

--- learned(): {["depth|kind"] = {mean =, n =}} (a copy).
function M.learned()
  local t = {}
  for k, m in pairs(state.means) do t[k] = { mean = m, n = state.counts[k] } end
  return t
end

local function success(n)
  if n.status ~= "completed" then return 0 end
  local p = M.params
  local s = math.max(p.retry_floor, 1 - p.retry_penalty * (tonumber(n.retries) or 0))
  local c = n.children
  if c and (c.total or 0) > 0 then s = s * (0.5 + 0.5 * clamp((c.ok or 0) / c.total)) end
  return s
end

local function quality(n, s)
  local v = n.validation
  if type(v) ~= "table" then return M.params.quality_prior * s end
  local q = v.quality
  if type(q) ~= "number" then q = v.pass == false and 0.25 or 0.75 end
  if v.pass == false then q = math.min(q, M.params.failed_quality_cap) end
  return q
end

local function speed(n)
  if n.status ~= "completed" then return 0 end
  local t = n.elapsed_ms
  if type(t) ~= "number" then return 0.5 end
  local e = M.expected_ms(n.depth, n.kind)
  return e / (e + math.max(0, t))
end

local function usefulness(n)
  if n.status ~= "completed" then return 0 end
  if type(n.usefulness) == "number" then return n.usefulness end
  return M.params.usefulness_prior
end

--- importance(scores, n): "low" for a failed or cancelled node and when
-- overall_weight < params.low; "high" when it is >= params.high; else
-- "medium". A completed root (depth 0) is never "low": it holds the answer
-- to the whole run.
function M.importance(scores, n)
  if n.status ~= "completed" then return "low" end
  local w = scores.overall_weight
  if w >= M.params.high then return "high" end
  if w < M.params.low and (n.depth or 0) > 0 then return "low" end
  return "medium"
end

--- score(n): {success_score, quality_score, speed_score, usefulness_score,
-- overall_weight, importance_level} for a finished node (fields in
-- docs/lua-api.md). The speed is measured against the expectation before
-- this node; then, for a completed node scored the first time (no
-- usefulness yet, and n.learn ~= false), elapsed_ms is learned.
function M.score(n)
  if type(n) ~= "table" then error("bad argument #1 to 'score' (a table expected)", 2) end
  if not STATUSES[n.status] then
    error(("bad argument #1 to 'score' (status must be completed, failed or cancelled, not %s)"):format(tostring(n.status)), 2)
  end
  local s = clamp(success(n))
  local ss, qs, sp, us = round4(s), round4(quality(n, s)), round4(speed(n)), round4(usefulness(n))
  local w = M.weights
  local total = w.success + w.quality + w.speed + w.usefulness
  local scores = { -- made at its size: every field in the constructor
    success_score = ss, quality_score = qs, speed_score = sp, usefulness_score = us,
    overall_weight = round4((w.success * ss + w.quality * qs + w.speed * sp + w.usefulness * us) / total),
    importance_level = false,
  }
  scores.importance_level = M.importance(scores, n)
  if n.status == "completed" and type(n.elapsed_ms) == "number" and n.usefulness == nil and n.learn ~= false then
    M.learn(n.depth, n.kind, n.elapsed_ms)
  end
  return scores
end

-- Words of four letters or more that carry no content.
M.stop_words = {}
for w in ([[that this with from have were will would there their they them then than what
  when which while where been into also each some such only other more most very over your
  about these those could should does just like make made here being able must upon
  answer result results step part goal]]):gmatch("%a+") do
  M.stop_words[w] = true
end

--- The distinct content words of a text: lowercased runs of letters, four
-- or more long, not in stop_words. Returns the set and its size.
function M.words(text)
  local set, n = {}, 0
  for w in tostring(text or ""):lower():gmatch("%a+") do
    if #w >= 4 and not M.stop_words[w] and not set[w] then
      set[w], n = true, n + 1
    end
  end
  return set, n
end

local function as_text(v)
  if v == nil then return nil end
  if type(v) == "table" then
    local ok, s = pcall(require("cjson").encode, v)
    return ok and s or tostring(v)
  end
  return tostring(v)
end

-- What %s matches: space, \t, \n, \v, \f, \r.
local WHITE = { [32] = true, [9] = true, [10] = true, [11] = true, [12] = true, [13] = true }

--- usefulness(child_result, parent_result, ctx): how much of a child's
-- result went into its parent's, in [0, 1], without an LLM call.
-- ctx.status is the child's status ("completed" by default): anything
-- else scores 0. An empty child result scores the floor. A parent result
-- of nil (the parent only gathered its children's results), or one that
-- holds the child's result verbatim, scores 1. Otherwise the share of the
-- child's content words (M.words) found in the parent's result, mapped
-- linearly onto [floor, 1] (ctx.floor or params.usefulness_floor); a child
-- with no content words scores the floor.
function M.usefulness(child_result, parent_result, ctx)
  ctx = ctx or {}
  if (ctx.status or "completed") ~= "completed" then return 0 end
  local child = as_text(child_result)
  local floor = clamp(ctx.floor or M.params.usefulness_floor)
  local first = child and child:find("%S")
  if not first then return floor end
  if parent_result == nil then return 1 end
  local parent = as_text(parent_result)
  -- trimmed by hand: ("^%s*(.-)%s*$") costs a pattern step per byte, and
  -- a gathered child's result can be the text of its whole subtree
  local last, byte = #child, string.byte
  while last > first and WHITE[byte(child, last)] do last = last - 1 end
  if parent:find(child:sub(first, last), 1, true) then return 1 end
  local cw, cn = M.words(child)
  if cn == 0 then return floor end
  local pw, used = M.words(parent), 0
  for w in pairs(cw) do
    if pw[w] then used = used + 1 end
  end
  return round4(floor + (1 - floor) * used / cn)
end

return M
