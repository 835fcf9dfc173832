--- nyx.views: a tree as people and programs read it. The figures come
-- from one recursive query (nodes with their own and their subtree's LLM
-- totals, summed in SQL); the renderers turn it into indented text
-- (`nyx tree show`, node:print()), Graphviz dot, a Mermaid flowchart and
-- a complete JSON export (`nyx tree export`). The HTML report is in
-- nyx.report.
local db = require "nyx.db"
local core = require "nyx.core"
local json = require "cjson"

local M = {}

-- ---- finding a node -----------------------------------------------------------

--- resolve(id): the node id for a full UUID or a unique prefix of at least
-- 4 hex digits (as `nyx tree show` prints 8); nil, why otherwise.
function M.resolve(id)
  if type(id) == "table" and id.id then id = id.id end
  if type(id) ~= "string" then return nil, "expected a node id" end
  id = id:lower()
  if core.is_uuid(id) then
    db.flush()
    if db.query("SELECT 1 AS x FROM thought_trees WHERE id = $1", id)[1] then return id end
    return nil, ("no thought-tree node with id %s"):format(id)
  end
  if not id:match("^[%x%-]+$") or #id:gsub("%-", "") < 4 then
    return nil, ("'%s' is not a node id (a UUID, or its first 8 hex digits)"):format(id)
  end
  db.flush()
  local rows = db.query("SELECT id FROM thought_trees WHERE id::text LIKE $1 || '%' LIMIT 2", id)
  if #rows == 0 then return nil, ("no thought-tree node with an id starting %s"):format(id) end
  if #rows > 1 then return nil, ("the id prefix %s is ambiguous; give more of it"):format(id) end
  return rows[1].id
end

-- ---- the figures ------------------------------------------------------------------

-- LLM figures summed per node (own) and per subtree (sub), in the order
-- of FIGURES; tokens = input + output + cache write + cache read.
M.FIGURES = { "calls", "failed", "input", "output", "cache_write", "cache_read", "tokens",
              "cost", "without", "saved" }
local SUMS = {
  calls = "count(i.id)",
  failed = "count(i.id) FILTER (WHERE NOT i.success)",
  input = "coalesce(sum(i.token_count_input), 0)",
  output = "coalesce(sum(i.token_count_output), 0)",
  cache_write = "coalesce(sum(i.cache_creation_input_tokens), 0)",
  cache_read = "coalesce(sum(i.cache_read_input_tokens), 0)",
  tokens = "coalesce(sum(coalesce(i.token_count_input, 0) + coalesce(i.token_count_output, 0) + " ..
           "coalesce(i.cache_creation_input_tokens, 0) + coalesce(i.cache_read_input_tokens, 0)), 0)",
  cost = "coalesce(sum(i.cost_usd), 0)",
  without = "coalesce(sum(i.cost_without_cache_usd), 0)",
  saved = "coalesce(sum(i.cost_without_cache_usd - i.cost_usd), 0)",
}

local function list(f, sep)
  local out = {}
  for i, name in ipairs(M.FIGURES) do out[i] = f(name) end
  return table.concat(out, sep or ", ")
end

-- The subtree of $1, depth first (siblings in creation order), each node
-- with its ancestors' ids (ids) so a subtree's sums are one GROUP BY.
local SUBTREE = [[
WITH RECURSIVE t AS (
  SELECT n.id, ARRAY[n.id] AS ids,
         ARRAY[to_char(n.created_at, 'YYYYMMDDHH24MISSUS') || n.id::text] AS path
  FROM thought_trees n WHERE n.id = $1
  UNION ALL
  SELECT n.id, t.ids || n.id, t.path || (to_char(n.created_at, 'YYYYMMDDHH24MISSUS') || n.id::text)
  FROM thought_trees n JOIN t ON n.parent_id = t.id)]]
M.SUBTREE = SUBTREE

local NODES_SQL = SUBTREE .. [[,
own AS (SELECT t.id, ]] .. list(function(f) return SUMS[f] .. " AS " .. f end) .. [[
        FROM t LEFT JOIN llm_interactions i ON i.thought_tree_id = t.id GROUP BY t.id),
sub AS (SELECT a.anc AS id, ]] .. list(function(f) return "sum(o." .. f .. ") AS " .. f end) .. [[
        FROM (SELECT unnest(t.ids) AS anc, t.id FROM t) a JOIN own o ON o.id = a.id GROUP BY a.anc)
SELECT n.id, n.parent_id, n.root_id, n.goal, n.status, n.depth, n.created_at, n.completed_at,
       n.success_score, n.quality_score, n.speed_score, n.usefulness_score, n.overall_weight,
       n.importance_level, n.metadata->'strategy'->>'name' AS strategy, n.metadata->>'error' AS error,
       extract(epoch FROM n.created_at)::float8 AS t0,
       extract(epoch FROM n.completed_at)::float8 AS t1,
       extract(epoch FROM coalesce(n.completed_at, clock_timestamp()) - n.created_at)::float8 AS elapsed,
       (SELECT string_agg(DISTINCT g.agent_class, ',') FROM agents g WHERE g.thought_tree_id = n.id) AS classes,
       (SELECT count(*) FROM thought_trees c WHERE c.parent_id = n.id) AS nchildren,
       ]] .. list(function(f) return "o." .. f .. "::float8 AS own_" .. f end) .. [[,
       ]] .. list(function(f) return "s." .. f .. "::float8 AS sub_" .. f end) .. [[

FROM t JOIN thought_trees n ON n.id = t.id JOIN own o ON o.id = t.id JOIN sub s ON s.id = t.id
ORDER BY t.path]]

local INT = { calls = true, failed = true, input = true, output = true, cache_write = true,
              cache_read = true, tokens = true }

--- nodes(id): the subtree's nodes, depth first, each with `own` and `sub`
-- ({calls, failed, input, output, cache_write, cache_read, tokens, cost,
-- without, saved}: its own LLM calls' sums and its subtree's) and
-- `children` (the child rows, in order). Returns the list and an index by id.
function M.nodes(id)
  db.flush()
  local rows = db.query(NODES_SQL, id)
  local by = {}
  for _, r in ipairs(rows) do
    r.own, r.sub, r.children = {}, {}, {}
    for _, f in ipairs(M.FIGURES) do
      local o, s = r["own_" .. f], r["sub_" .. f]
      if INT[f] then o, s = math.tointeger(o) or o, math.tointeger(s) or s end
      r.own[f], r.sub[f] = o, s
      r["own_" .. f], r["sub_" .. f] = nil, nil
    end
    by[r.id] = r
    local p = r.parent_id and by[r.parent_id]
    if p then p.children[#p.children + 1] = r end
  end
  return rows, by
end

-- ---- text ---------------------------------------------------------------------

--- utf8_locale(): whether the locale's character set is UTF-8 (LC_ALL,
-- else LC_CTYPE, else LANG, the first that is set).
function M.utf8_locale()
  for _, v in ipairs { "LC_ALL", "LC_CTYPE", "LANG" } do
    local s = os.getenv(v)
    if s and s ~= "" then return s:lower():gsub("%-", ""):find("utf8") ~= nil end
  end
  return false
end

--- colour(fd): whether to colour what goes to that stream: a terminal,
-- and NO_COLOR unset or empty (https://no-color.org).
function M.colour(fd)
  local nc = os.getenv("NO_COLOR")
  if nc and nc ~= "" then return false end
  return core.isatty(fd)
end

M.MARKS = {
  utf8 = { completed = "✓", failed = "✗", in_progress = "…", pending = "○", cancelled = "⊘" },
  ascii = { completed = "+", failed = "x", in_progress = "*", pending = "o", cancelled = "-" },
}
local BRANCH = {
  utf8 = { mid = "├─ ", last = "└─ ", bar = "│  ", gap = "   ", more = "…" },
  ascii = { mid = "|- ", last = "`- ", bar = "|  ", gap = "   ", more = "..." },
}
local SGR = { completed = "32", failed = "31", in_progress = "33", pending = "2", cancelled = "35" }

--- cut(s, n [, ellipsis]): s on one line, at most n characters.
function M.cut(s, n, more)
  s = tostring(s or ""):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  local len = utf8.len(s)
  if not len then -- not UTF-8: bytes
    return #s > n and s:sub(1, n - 3) .. "..." or s
  end
  if len <= n then return s end
  more = more or "..."
  local keep = n - (utf8.len(more) or #more)
  return s:sub(1, utf8.offset(s, keep + 1) - 1) .. more
end

--- duration(seconds): "0.8s", "12.3s", "3m05s", "2h07m".
function M.duration(s)
  if not s then return "-" end
  if s < 60 then return ("%.1fs"):format(s) end
  if s < 3600 then return ("%dm%02ds"):format(s // 60, math.floor(s % 60)) end
  return ("%dh%02dm"):format(s // 3600, math.floor(s % 3600) // 60)
end

local function usd(v) return ("$%.6f"):format(v or 0) end

local function kind(n)
  if n.strategy then return n.strategy end
  if n.classes then return "agent:" .. n.classes end
  return "-"
end

local function node_line(n, g, paint, marks)
  local mark = marks[n.status] or "?"
  local parts = {
    paint(SGR[n.status], mark) .. " " .. M.cut(n.goal, 60, g.more),
    paint("2", n.id:sub(1, 8)),
    "[" .. kind(n) .. "]",
    ("w %.2f %s"):format(n.overall_weight or 0, n.importance_level or "-"),
    ("%d tok %s"):format(n.sub.tokens, usd(n.sub.cost)),
    (n.status == "in_progress" and "running " or "") .. M.duration(n.elapsed),
  }
  if n.status == "failed" and n.error then parts[#parts + 1] = paint("31", M.cut(n.error, 50, g.more)) end
  return table.concat(parts, "  ")
end

local function count_below(n)
  local c = 0
  for _, k in ipairs(n.children) do c = c + 1 + count_below(k) end
  return c
end

local function summary(nodes)
  local by, order = {}, {}
  for _, n in ipairs(nodes) do
    if not by[n.status] then by[n.status] = 0; order[#order + 1] = n.status end
    by[n.status] = by[n.status] + 1
  end
  local out = {}
  for _, s in ipairs(order) do out[#out + 1] = ("%d %s"):format(by[s], s) end
  return table.concat(out, ", ")
end

--- text(id, opts): the tree under node id as indented text, one node a
-- line: mark, goal (cut), id prefix, strategy or agent class, overall
-- weight and importance, the subtree's tokens and cost, time taken.
-- opts: depth (levels below the node shown, default all), siblings (at
-- most this many children a node, default 20; the rest summarised), all
-- (no limits), colour (default: never), utf8 (default: the locale).
function M.text(id, opts)
  opts = opts or {}
  local nodes = M.nodes(id)
  local root = nodes[1]
  local style = (opts.utf8 == nil and M.utf8_locale() or opts.utf8) and "utf8" or "ascii"
  local g, marks = BRANCH[style], M.MARKS[style]
  local paint = opts.colour and function(code, s) return "\27[" .. code .. "m" .. s .. "\27[0m" end
                or function(_, s) return s end
  local max_depth = not opts.all and opts.depth or math.huge
  local siblings = not opts.all and opts.siblings or 20
  if opts.all then siblings = math.huge end
  local s = root.sub
  local out = {
    ("tree %s: %d node%s (%s), %d LLM call%s (%d failed), %d tokens, %s, %s saved by caching"):format(
      root.id, #nodes, #nodes == 1 and "" or "s", summary(nodes), s.calls, s.calls == 1 and "" or "s",
      s.failed, s.tokens, usd(s.cost), usd(s.saved)),
  }
  local function walk(n, prefix, child_prefix, level)
    out[#out + 1] = prefix .. node_line(n, g, paint, marks)
    local kids = n.children
    if #kids == 0 then return end
    if level >= max_depth then
      local below = count_below(n)
      out[#out + 1] = child_prefix .. g.last .. paint("2", ("%s %d node%s below (--depth %d or --all shows them)")
        :format(g.more, below, below == 1 and "" or "s", level + 1))
      return
    end
    local shown = math.min(#kids, siblings)
    for i = 1, shown do
      local last = i == #kids
      walk(kids[i], child_prefix .. (last and g.last or g.mid), child_prefix .. (last and g.gap or g.bar), level + 1)
    end
    if shown < #kids then
      local rest = table.move(kids, shown + 1, #kids, 1, {})
      out[#out + 1] = child_prefix .. g.last .. paint("2", ("%s %d more (%s; --all shows them)")
        :format(g.more, #rest, summary(rest)))
    end
  end
  walk(root, "", "", 0)
  return table.concat(out, "\n") .. "\n"
end

-- ---- pictures -------------------------------------------------------------------

M.FILL = { completed = "#c8e6c9", failed = "#ffcdd2", in_progress = "#fff59d",
           pending = "#eeeeee", cancelled = "#e1bee7" }

local function label_lines(n)
  return M.cut(n.goal, 48), ("%s · %s · w %.2f"):format(n.status, kind(n), n.overall_weight or 0),
         ("%d tok · %s"):format(n.sub.tokens, usd(n.sub.cost))
end

-- A string in a dot quoted ID: backslashes and quotes escaped, no line
-- ends (the label's own lines are joined with \n, dot's escape).
local function dot_quote(s)
  return (s:gsub("[%c]", " "):gsub("\\", "\\\\"):gsub('"', '\\"'))
end

--- dot(id): the tree as a Graphviz digraph, nodes filled by status.
function M.dot(id)
  local nodes = M.nodes(id)
  local out = { "digraph nyx {", "  rankdir=TB;",
    '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];' }
  for i, n in ipairs(nodes) do
    n.key = "n" .. i
    local a, b, c = label_lines(n)
    out[#out + 1] = ('  %s [label="%s\\n%s\\n%s", fillcolor="%s", tooltip="%s"];'):format(
      n.key, dot_quote(a), dot_quote(b), dot_quote(c), M.FILL[n.status] or "#ffffff", n.id)
  end
  for _, n in ipairs(nodes) do
    for _, k in ipairs(n.children) do out[#out + 1] = ("  %s -> %s;"):format(n.key, k.key) end
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

-- Mermaid label text: everything but plain letters, digits, spaces and
-- harmless punctuation as an entity code (#34; for a quote), which Mermaid
-- decodes; bytes of UTF-8 characters kept.
local function mermaid_text(s)
  return (s:gsub("[^%w %.,:;!%?'/%-_\128-\255]", function(c) return "#" .. c:byte() .. ";" end))
end

--- mermaid(id): the tree as a Mermaid flowchart, a class per status.
function M.mermaid(id)
  local nodes = M.nodes(id)
  local out = { "flowchart TD" }
  for i, n in ipairs(nodes) do
    n.key = "n" .. i
    local a, b, c = label_lines(n)
    out[#out + 1] = ('  %s["%s<br/>%s<br/>%s"]:::%s'):format(n.key, mermaid_text(a), mermaid_text(b),
      mermaid_text(c), n.status)
  end
  for _, n in ipairs(nodes) do
    for _, k in ipairs(n.children) do out[#out + 1] = ("  %s --> %s"):format(n.key, k.key) end
  end
  for _, s in ipairs { "completed", "failed", "in_progress", "pending", "cancelled" } do
    out[#out + 1] = ("  classDef %s fill:%s,stroke:#555"):format(s, M.FILL[s])
  end
  return table.concat(out, "\n") .. "\n"
end

-- ---- the rows under a subtree ----------------------------------------------------------

local ROWS = {
  agents = "SELECT a.* FROM agents a WHERE a.thought_tree_id IN (SELECT id FROM t) ORDER BY a.created_at, a.id",
  llm_calls = [[SELECT i.*, to_jsonb(d) - 'interaction_id' AS details
    FROM llm_interactions i LEFT JOIN llm_call_details d ON d.interaction_id = i.id
    WHERE i.thought_tree_id IN (SELECT id FROM t) ORDER BY i.request_timestamp, i.id]],
  tools = [[SELECT x.* FROM tool_executions x WHERE x.thought_tree_id IN (SELECT id FROM t)
    ORDER BY x.started_at, x.id]],
  messages = [[SELECT m.* FROM agent_communications m WHERE m.thought_tree_id IN (SELECT id FROM t)
    ORDER BY m.sent_at, m.id]],
}

--- rows(id, what): the subtree's rows of one kind, oldest first: "agents",
-- "llm_calls" (llm_interactions with the call's llm_call_details as
-- `details`), "tools" (tool_executions), "messages" (agent_communications).
function M.rows(id, what)
  db.flush()
  return db.query(SUBTREE .. " " .. assert(ROWS[what], what), id)
end

-- ---- JSON ---------------------------------------------------------------------------

-- JSON with arrays that stay arrays when empty (lua-cjson writes {} for
-- an empty table): lists made by array() are written as arrays, objects by
-- object() with their keys sorted; anything else goes to cjson as it is.
local ARRAY, OBJECT = {}, {}
local function array(t) return setmetatable(t or {}, ARRAY) end
local function object(t) return setmetatable(t or {}, OBJECT) end
M.array, M.object = array, object

local function encode(v, out)
  local mt = getmetatable(v)
  if mt == ARRAY then
    out[#out + 1] = "["
    for i, x in ipairs(v) do
      if i > 1 then out[#out + 1] = "," end
      encode(x, out)
    end
    out[#out + 1] = "]"
  elseif mt == OBJECT then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = json.encode(k) .. ":"
      encode(v[k], out)
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = json.encode(v)
  end
end

--- encode(v): JSON text, arrays of array() and objects of object() kept so.
function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

local function group(rows, key)
  local by = {}
  for _, r in ipairs(rows) do
    local k = r[key]
    if k then
      by[k] = by[k] or array()
      table.insert(by[k], object(r))
    end
  end
  return by
end

--- export(id): the whole subtree as one table for JSON: every node (all
-- its columns) with `totals` {own, subtree}, `agents`, `llm_calls` (with
-- `details`), `tool_executions`, `messages` and `children`, nested.
function M.export(id)
  db.flush()
  local rows = db.query(SUBTREE .. [[ SELECT n.* FROM t JOIN thought_trees n ON n.id = t.id ORDER BY t.path]], id)
  local figures = select(2, M.nodes(id))
  local agents = group(M.rows(id, "agents"), "thought_tree_id")
  local calls = group(M.rows(id, "llm_calls"), "thought_tree_id")
  local tools = group(M.rows(id, "tools"), "thought_tree_id")
  local msgs = group(M.rows(id, "messages"), "thought_tree_id")
  local by = {}
  for _, r in ipairs(rows) do
    local f = figures[r.id]
    local n = object(r)
    n.totals = object { own = object(f.own), subtree = object(f.sub) }
    n.agents = agents[r.id] or array()
    n.llm_calls = calls[r.id] or array()
    n.tool_executions = tools[r.id] or array()
    n.messages = msgs[r.id] or array()
    n.children = array()
    by[r.id] = n
    local p = r.parent_id and by[r.parent_id]
    if p and r.id ~= id then table.insert(p.children, n) end
  end
  return object {
    format = "nyx.tree", version = 1, exported_at = core.timestamp(), nyx = core.version,
    node_count = #rows, root = by[id],
  }
end

--- export_json(id): export(id) as JSON text.
function M.export_json(id)
  return M.encode(M.export(id)) .. "\n"
end

return M
