--- nyx.tree: the thought tree, kept in PostgreSQL's thought_trees table.
-- A node is a plain table of the row's columns (node.goal, node.status, ...)
-- with the methods below; every query takes its values as parameters.
local db = require "nyx.db"
local core = require "nyx.core"
local json = require "cjson"

local M = {}

local Node = {}
Node.__index = Node
Node.__name = "nyx.tree.node"

--- The values thought_trees.status may take (the schema's CHECK).
M.STATUSES = { "pending", "in_progress", "completed", "failed", "cancelled" }
local STATUS, TERMINAL = {}, { completed = true, failed = true, cancelled = true }
for _, s in ipairs(M.STATUSES) do STATUS[s] = true end

--- Fields node:update{} takes besides metadata: scores in [0, 1] ...
M.SCORES = { "success_score", "quality_score", "speed_score",
             "usefulness_score", "overall_weight" }
local SCORE = {}
for _, s in ipairs(M.SCORES) do SCORE[s] = true end
--- ... and importance_level, one of these.
M.IMPORTANCE = { "low", "medium", "high" }
local IMPORTANCE = { low = true, medium = true, high = true }

local COLUMNS = [[id, parent_id, root_id, goal, status, depth, created_at,
  updated_at, completed_at, metadata, success_score, quality_score,
  speed_score, usefulness_score, overall_weight, importance_level]]

local is_uuid = core.is_uuid -- the pattern ^%x{8}%-%x{4}%-%x{4}%-%x{4}%-%x{12}$, in C

local SOURCE = debug.getinfo(1, "S").source

-- Raises msg at the first caller outside this file, so the message points
-- at the script's line that misused the API.
local function raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or info.source ~= SOURCE then break end
    level = level + 1
  end
  error(msg, level)
end

-- Raises "bad argument #n to 'fn' (why)".
local function argerror(n, fn, why)
  raise(("bad argument #%d to '%s' (%s)"):format(n, fn, why))
end

local function check_id(id, n, fn)
  if type(id) ~= "string" then
    argerror(n, fn, ("id must be a UUID string, got %s"):format(type(id)))
  end
  if not is_uuid(id) then
    argerror(n, fn, ("not a UUID: '%s'"):format(id))
  end
  return id:lower()
end

local function check_metadata(m, n, fn)
  if m == nil then return nil end
  if type(m) ~= "table" or getmetatable(m) then
    argerror(n, fn, "metadata must be a plain table")
  end
  for k in pairs(m) do
    if type(k) ~= "string" then
      argerror(n, fn, "metadata keys must be strings (it is stored as a JSON object)")
    end
  end
  return m
end

local function check_keys(t, allowed, n, fn)
  for k in pairs(t) do
    if not allowed[k] then
      local names = {}
      for name in pairs(allowed) do names[#names + 1] = name end
      table.sort(names)
      argerror(n, fn, ("unknown field '%s' (fields: %s)"):format(
        tostring(k), table.concat(names, ", ")))
    end
  end
end

local function wrap(row)
  return row and setmetatable(row, Node)
end

local function wrap_all(rows)
  for i = 1, #rows do setmetatable(rows[i], Node) end
  return rows
end

local function reload(node, row)
  for k in pairs(node) do node[k] = nil end
  for k, v in pairs(row) do node[k] = v end
  return node
end

--- nyx.tree.create{goal = string, parent = node or id?, metadata = table?}
-- Inserts a node (status 'pending'). A child's root_id and depth come from
-- its parent; a root is its own root. Returns the node.
function M.create(spec)
  if type(spec) ~= "table" then
    argerror(1, "create", "expected a table {goal = ..., parent = ..., metadata = ...}")
  end
  check_keys(spec, { goal = true, parent = true, metadata = true }, 1, "create")
  local goal = spec.goal
  if type(goal) ~= "string" or not goal:find("%S") then
    argerror(1, "create", "goal must be a non-empty string")
  end
  local metadata = check_metadata(spec.metadata, 1, "create")
  local parent = spec.parent
  if type(parent) == "table" then parent = parent.id end
  local id = core.uuid()
  if parent == nil then
    return wrap(db.query(
      "INSERT INTO thought_trees (id, root_id, goal, status, metadata, created_at, updated_at) " ..
      "VALUES ($1, $1, $2, 'pending', COALESCE($3::jsonb, '{}'), clock_timestamp(), clock_timestamp()) " ..
      "RETURNING " .. COLUMNS, id, goal, metadata)[1])
  end
  parent = check_id(parent, 1, "create")
  db.flush() -- a parent the runtime made may be on its way
  local row = db.query(
    "INSERT INTO thought_trees (id, parent_id, root_id, depth, goal, status, metadata, created_at, updated_at) " ..
    "SELECT $1, p.id, p.root_id, p.depth + 1, $2, 'pending', COALESCE($3::jsonb, '{}'), " ..
    "clock_timestamp(), clock_timestamp() FROM thought_trees p WHERE p.id = $4 " ..
    "RETURNING " .. COLUMNS, id, goal, metadata, parent)[1]
  if not row then
    raise(("nyx.tree.create: parent %s does not exist"):format(parent))
  end
  return wrap(row)
end

--- nyx.tree.find(id): the node, or nil if there is none with that id.
function M.find(id)
  id = check_id(id, 1, "find")
  db.flush()
  return wrap(db.query("SELECT " .. COLUMNS .. " FROM thought_trees WHERE id = $1", id)[1])
end

--- nyx.tree.get(id): the node; an error if there is none with that id.
function M.get(id)
  id = check_id(id, 1, "get")
  db.flush()
  local row = db.query("SELECT " .. COLUMNS .. " FROM thought_trees WHERE id = $1", id)[1]
  if not row then raise(("nyx.tree.get: no thought-tree node with id %s"):format(id)) end
  return wrap(row)
end

--- nyx.tree.roots{limit = 20?}: the most recent root nodes, newest first.
function M.roots(opts)
  local limit = opts and opts.limit or 20
  if math.type(limit) ~= "integer" or limit < 1 then
    argerror(1, "roots", "limit must be a positive integer")
  end
  return wrap_all(db.query("SELECT " .. COLUMNS .. " FROM thought_trees " ..
    "WHERE parent_id IS NULL ORDER BY created_at DESC, id LIMIT $1", limit))
end

--- nyx.tree.latest(): the most recently created root, or nil.
function M.latest()
  return M.roots{ limit = 1 }[1]
end

--- node:children(): the direct children, in the order they were created.
function Node:children()
  db.flush()
  return wrap_all(db.query("SELECT " .. COLUMNS .. " FROM thought_trees " ..
    "WHERE parent_id = $1 ORDER BY created_at, id", self.id))
end

--- node:subtree(): the node and all its descendants, depth first (each
-- node before its children, siblings in creation order), in one query.
function Node:subtree()
  db.flush()
  local key = "to_char(n.created_at, 'YYYYMMDDHH24MISSUS') || n.id::text"
  return wrap_all(db.query(
    "WITH RECURSIVE t AS (" ..
    " SELECT n.*, ARRAY[" .. key .. "] AS path FROM thought_trees n WHERE n.id = $1" ..
    " UNION ALL" ..
    " SELECT n.*, t.path || (" .. key .. ") FROM thought_trees n JOIN t ON n.parent_id = t.id" ..
    ") SELECT " .. COLUMNS .. " FROM t ORDER BY path", self.id))
end

--- node:parent(): the parent node, or nil for a root.
function Node:parent()
  return self.parent_id and M.get(self.parent_id)
end

--- node:root(): the root of the node's tree (the node itself for a root).
function Node:root()
  return self.root_id == self.id and self or M.get(self.root_id)
end

--- node:refresh(): re-reads the row, for changes made elsewhere. Returns node.
function Node:refresh()
  db.flush()
  local row = db.query("SELECT " .. COLUMNS .. " FROM thought_trees WHERE id = $1", self.id)[1]
  if not row then raise(("thought-tree node %s no longer exists"):format(self.id)) end
  return reload(self, row)
end

--- node:set_status(s): one of nyx.tree.STATUSES. Entering completed, failed
-- or cancelled sets completed_at; going back to pending or in_progress
-- clears it. Returns the node, updated.
function Node:set_status(status)
  db.flush() -- the runtime's rows for this node may be on their way
  if not STATUS[status] then
    argerror(1, "set_status", ("unknown status '%s' (statuses: %s)"):format(
      tostring(status), table.concat(M.STATUSES, ", ")))
  end
  local row = db.query("UPDATE thought_trees SET status = $2, completed_at = " ..
    "CASE WHEN $3 THEN clock_timestamp() END WHERE id = $1 RETURNING " .. COLUMNS,
    self.id, status, TERMINAL[status] or false)[1]
  if not row then raise(("thought-tree node %s no longer exists"):format(self.id)) end
  return reload(self, row)
end

local UPDATABLE = { metadata = true, importance_level = true }
for s in pairs(SCORE) do UPDATABLE[s] = true end

--- node:update{metadata = table?, success_score = 0..1?, quality_score,
-- speed_score, usefulness_score, overall_weight, importance_level =
-- "low"|"medium"|"high"?}. metadata is merged into what is there (top-level
-- keys replaced, others kept). Returns the node, updated.
function Node:update(fields)
  if type(fields) ~= "table" then
    argerror(1, "update", "expected a table of fields")
  end
  check_keys(fields, UPDATABLE, 1, "update")
  local sets, values = {}, { self.id }
  for _, name in ipairs(M.SCORES) do
    local v = fields[name]
    if v ~= nil then
      if type(v) ~= "number" or v ~= v or v < 0 or v > 1 then
        argerror(1, "update", ("%s must be a number from 0 to 1, got %s"):format(name, tostring(v)))
      end
      values[#values + 1] = v
      sets[#sets + 1] = ("%s = $%d"):format(name, #values)
    end
  end
  local imp = fields.importance_level
  if imp ~= nil then
    if not IMPORTANCE[imp] then
      argerror(1, "update", ("importance_level must be low, medium or high, got %s"):format(tostring(imp)))
    end
    values[#values + 1] = imp
    sets[#sets + 1] = ("importance_level = $%d"):format(#values)
  end
  if fields.metadata ~= nil then
    values[#values + 1] = check_metadata(fields.metadata, 1, "update")
    sets[#sets + 1] = ("metadata = COALESCE(metadata, '{}') || $%d::jsonb"):format(#values)
  end
  if #sets == 0 then return self end
  db.flush()
  local row = db.query("UPDATE thought_trees SET " .. table.concat(sets, ", ") ..
    " WHERE id = $1 RETURNING " .. COLUMNS, table.unpack(values))[1]
  if not row then raise(("thought-tree node %s no longer exists"):format(self.id)) end
  return reload(self, row)
end

--- node:cancel(): the subtree's unfinished nodes cancelled, and the
-- engine running them told at once (nyx.steer). Returns how many nodes.
function Node:cancel() return require("nyx.steer").cancel(self) end

--- node:retry([opts]): a failed or cancelled node worked again, by the
-- engine running its tree or else here (nyx.steer).
function Node:retry(opts) return require("nyx.steer").retry(self, opts) end

function Node:__tostring()
  local goal = self.goal or ""
  if #goal > 60 then goal = goal:sub(1, 57) .. "..." end
  return ("node %s [%s] %s"):format(self.id, self.status, goal)
end

-- ---- views: what a subtree did (nyx.views renders; see docs/lua-api.md) ----

--- node:print(opts?): prints the subtree as `nyx tree show` does (opts:
-- depth, siblings, all, colour, utf8; colour by default on a terminal).
function Node:print(opts)
  local views = require "nyx.views"
  opts = opts or {}
  if opts.colour == nil then opts.colour = views.colour("stdout") end
  io.stdout:write(views.text(self.id, opts))
end

--- node:llm_calls(): the subtree's llm_interactions rows, oldest first,
-- each with its llm_call_details row as `details`.
function Node:llm_calls() return require("nyx.views").rows(self.id, "llm_calls") end

--- node:tools(): the subtree's tool_executions rows, oldest first.
function Node:tools() return require("nyx.views").rows(self.id, "tools") end

--- node:messages(): the subtree's agent_communications rows, oldest first.
function Node:messages() return require("nyx.views").rows(self.id, "messages") end

--- node:agents(): the subtree's agents rows, oldest first.
function Node:agents() return require("nyx.views").rows(self.id, "agents") end

M.Node = Node
M.null = json.null
return M
