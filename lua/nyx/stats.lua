--- nyx.stats{tree = node or id, since = "2026-12-01"}: what the LLM calls
-- cost, from llm_interactions and llm_call_details: calls, tokens, cost,
-- the cache's share and savings, by model and by template version, and
-- failures by error type. `nyx stats` prints it.
local db = require "nyx.db"
local views = require "nyx.views"

local M = {}

local FIELDS = [[
  count(*)::bigint AS calls,
  count(*) FILTER (WHERE NOT i.success)::bigint AS failed,
  coalesce(sum(i.token_count_input), 0)::bigint AS input,
  coalesce(sum(i.token_count_output), 0)::bigint AS output,
  coalesce(sum(i.cache_creation_input_tokens), 0)::bigint AS cache_write,
  coalesce(sum(i.cache_read_input_tokens), 0)::bigint AS cache_read,
  coalesce(sum(i.cost_usd), 0)::float8 AS cost_usd,
  coalesce(sum(i.cost_without_cache_usd), 0)::float8 AS cost_without_cache_usd,
  coalesce(sum(i.cost_without_cache_usd - i.cost_usd), 0)::float8 AS savings_usd]]

-- The calls in scope: a CTE `calls` (llm_interactions joined to their
-- details) limited to the subtree of $1 (when given) and to calls made
-- since $2 (when given).
local SCOPE = views.SUBTREE .. [[,
calls AS (SELECT i.*, d.error_type, d.prompt_template_id
          FROM llm_interactions i LEFT JOIN llm_call_details d ON d.interaction_id = i.id
          WHERE ($1::uuid IS NULL OR i.thought_tree_id IN (SELECT id FROM t))
            AND ($2::timestamptz IS NULL OR i.request_timestamp >= $2::timestamptz))
]]

-- Token totals and the cache's share of the input side.
local function finish(r)
  r.tokens = r.input + r.output + r.cache_write + r.cache_read
  local input_side = r.input + r.cache_write + r.cache_read
  r.cache_read_share = input_side > 0 and r.cache_read / input_side or 0
  return r
end

local SOURCE = debug.getinfo(1, "S").source

-- Raises msg at the first caller outside this file (the script's line).
local function fail(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or (info.source ~= SOURCE and info.what ~= "C") then break end
    level = level + 1
  end
  error(msg, level)
end

-- The arguments, checked: (tree id or nil, since or nil).
local function scope(opts)
  if opts ~= nil and type(opts) ~= "table" then fail("bad argument #1 to 'stats' (expected a table {tree =, since =})") end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "tree" and k ~= "since" then
      fail(("bad argument #1 to 'stats' (unknown field '%s': tree, since)"):format(tostring(k)))
    end
  end
  local id
  if opts.tree ~= nil then
    local why
    id, why = views.resolve(opts.tree)
    if not id then fail("nyx.stats: " .. why) end
  end
  local since = opts.since
  if since ~= nil then
    if type(since) ~= "string" then fail("bad argument #1 to 'stats' (since must be a date string such as 2026-12-01)") end
    local ok, r = pcall(db.query, "SELECT $1::timestamptz::text AS t", since)
    if not ok then
      fail(("nyx.stats: bad date '%s' for since (use YYYY-MM-DD or an ISO 8601 timestamp)"):format(since))
    end
    since = r[1].t
  end
  return id, since
end

--- stats{tree =, since =}: {calls, failed, input, output, cache_write,
-- cache_read, tokens, cost_usd, cost_without_cache_usd, savings_usd,
-- cache_read_share, by_model = {...}, by_template = {...}, failures =
-- {{error_type =, calls =}}, tree =, since =}. by_model and by_template
-- are lists of the same figures with `model` / `template` (NAME@N, or
-- "(none)" for calls made without a template), most expensive first.
function M.stats(opts)
  local id, since = scope(opts)
  db.flush()
  local total = finish(db.query(SCOPE .. "SELECT " .. FIELDS .. " FROM calls i", id, since)[1])
  total.by_model = db.query(SCOPE .. "SELECT i.model, " .. FIELDS ..
    " FROM calls i GROUP BY i.model ORDER BY cost_usd DESC, i.model", id, since)
  total.by_template = db.query(SCOPE .. "SELECT coalesce(p.name, '(none)') AS template, " .. FIELDS ..
    " FROM calls i LEFT JOIN prompt_templates p ON p.id = i.prompt_template_id" ..
    " GROUP BY p.name ORDER BY cost_usd DESC, template", id, since)
  total.failures = db.query(SCOPE .. "SELECT coalesce(i.error_type, 'unknown') AS error_type," ..
    " count(*)::bigint AS calls FROM calls i WHERE NOT i.success" ..
    " GROUP BY 1 ORDER BY calls DESC, error_type", id, since)
  for _, r in ipairs(total.by_model) do finish(r) end
  for _, r in ipairs(total.by_template) do finish(r) end
  total.tree, total.since = id, since
  return total
end

-- ---- as text -------------------------------------------------------------------

local COLUMNS = {
  { "calls", "calls", "%d" }, { "failed", "failed", "%d" }, { "input", "input", "%d" },
  { "output", "output", "%d" }, { "cache_write", "cache write", "%d" }, { "cache_read", "cache read", "%d" },
  { "cost_usd", "cost $", "%.6f" }, { "savings_usd", "saved $", "%.6f" },
  { "cache_read_share", "cache read", "%.1f%%", 100 },
}

-- rows as an aligned table under a heading, first column `key`.
local function table_text(out, heading, key, rows)
  out[#out + 1] = ""
  out[#out + 1] = heading
  local cells = { { key } }
  for _, c in ipairs(COLUMNS) do table.insert(cells[1], c[2]) end
  for _, r in ipairs(rows) do
    local line = { tostring(r[key]) }
    for _, c in ipairs(COLUMNS) do line[#line + 1] = c[3]:format((r[c[1]] or 0) * (c[4] or 1)) end
    cells[#cells + 1] = line
  end
  local width = {}
  for _, line in ipairs(cells) do
    for j, s in ipairs(line) do width[j] = math.max(width[j] or 0, utf8.len(s) or #s) end
  end
  for _, line in ipairs(cells) do
    local parts = {}
    for j, s in ipairs(line) do
      local pad = (" "):rep(width[j] - (utf8.len(s) or #s))
      parts[j] = j == 1 and s .. pad or pad .. s
    end
    out[#out + 1] = "  " .. table.concat(parts, "  ")
  end
end

--- text(s): stats(...) as plain aligned text.
function M.text(s)
  local out = {
    ("LLM calls     %d (%d failed)%s%s"):format(s.calls, s.failed,
      s.tree and (", tree " .. s.tree) or "", s.since and (", since " .. s.since) or ""),
    ("Tokens        %d: input %d, output %d, cache write %d, cache read %d"):format(
      s.tokens, s.input, s.output, s.cache_write, s.cache_read),
    ("Cost          $%.6f (without caching $%.6f; saved $%.6f)"):format(
      s.cost_usd, s.cost_without_cache_usd, s.savings_usd),
    ("Cache reads   %.1f%% of input tokens"):format(100 * s.cache_read_share),
  }
  table_text(out, "By model", "model", s.by_model)
  table_text(out, "By template version", "template", s.by_template)
  out[#out + 1] = ""
  out[#out + 1] = "Failures by error type"
  if #s.failures == 0 then out[#out + 1] = "  none" end
  local w = 0
  for _, f in ipairs(s.failures) do w = math.max(w, #f.error_type) end
  for _, f in ipairs(s.failures) do
    out[#out + 1] = ("  %-" .. w .. "s  %d"):format(f.error_type, f.calls)
  end
  return table.concat(out, "\n") .. "\n"
end

return setmetatable(M, { __call = function(_, opts) return M.stats(opts) end })
