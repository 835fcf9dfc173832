--- nyx.dblog: how the log writer (nyx.db.log, src/lua_db.c) turns a batch
-- into one statement: the rows grouped by table (and column list), in the
-- order the tables first appear, one INSERT (or UPDATE) each taking its
-- rows as one array parameter per column (or one JSON parameter), chained
-- in a WITH so the whole batch is one round trip and one atomic statement.
-- Table and column names come from nyx's own code; values are always
-- parameters.
local M = {}

local IDENT = "^[%l_][%l%d_]*$"
local unpack = table.unpack

-- Folds update rows into the rows before them that have the same table and
-- key (the first column): an update of a row inserted in the same batch
-- becomes part of the insert, two updates of one row become one. Rows of a
-- statement all see the same snapshot, so an UPDATE could not see an
-- INSERT of its own batch, nor should one row be updated twice. Rows
-- nothing folds into are passed on as they are.
local indexes = setmetatable({}, { __mode = "k" }) -- columns table -> {name = position}

local function index_of(columns)
  local idx = indexes[columns]
  if not idx then
    idx = {}
    for i, c in ipairs(columns) do idx[c] = i end
    indexes[columns] = idx
  end
  return idx
end

-- Where an update's columns go in a row with the given columns: their
-- positions, the columns the row lacks appended to a copy of its list.
-- Made once per pair of column lists (nyx's are constants) and never
-- changed after, so rows widened alike share one list and one statement.
-- Column lists, like the index above, are not to be changed once logged.
local merges = setmetatable({}, { __mode = "k" }) -- columns -> {update columns -> merge}

local function merge(columns, ucols)
  local of = merges[columns]
  if not of then
    of = setmetatable({}, { __mode = "k" })
    merges[columns] = of
  end
  local m = of[ucols]
  if m and m.n == #ucols then return m end
  local idx, cols, at, added = index_of(columns), columns, {}, {}
  for i = 2, #ucols do
    local c = ucols[i]
    local j = idx[c] or added[c]
    if not j then
      if cols == columns then cols = table.move(columns, 1, #columns, 1, {}) end
      j = #cols + 1
      cols[j], added[c] = c, j
    end
    at[i] = j
  end
  m = { columns = cols, at = at, n = #ucols }
  of[ucols] = m
  return m
end

local function fold(batches)
  local out, by_table = {}, {}
  for b = 1, #batches do
    local rows = batches[b]
    for r = 1, #rows do
      local row = rows[r]
      local keyed = by_table[row.table]
      if not keyed then keyed = {}; by_table[row.table] = keyed end
      local id = row.values[1]
      local at = row.update and keyed[id]
      if at then
        local target = out[at]
        if not target.own then -- a copy to change, not the caller's row
          target = { table = target.table, columns = target.columns, update = target.update, own = true,
                     values = { unpack(target.values, 1, #target.columns) } } -- made at its size
          out[at] = target
        end
        local m = merge(target.columns, row.columns)
        local into, values, from = target.values, row.values, m.at
        target.columns = m.columns
        for i = 2, m.n do into[from[i]] = values[i] end
      else
        out[#out + 1] = row
        if id ~= nil then keyed[id] = #out end
      end
    end
  end
  return { out }
end

--- build(batches): batches[i] is one caller's list of rows ({table =,
-- columns = {...}, values = {...}}; update = true: set the columns of the
-- row whose first column has that value). Returns the statement (nil when
-- there is nothing to write), the groups in parameter order ({ncol = 1,
-- rows = {{json}}} or, unnest()ed, {ncol = #columns, rows = {{array,
-- ...}}}; count = its rows, update = true for an UPDATE) and how many
-- parameters there are.
local keys = setmetatable({}, { __mode = "k" }) -- columns table -> "a,b"
local core = require "nyx.core"
local json_rows, json_columns = core.json_rows, core.json_columns
local ready = setmetatable({}, { __mode = "k" }) -- columns table -> json_columns(it)

-- "U" .. table: the group key of a table's update rows
local ukeys = setmetatable({}, { __index = function(t, name)
  local k = "U" .. tostring(name)
  t[name] = k
  return k
end })

--- types: {table = {column = "type", ...}} for the tables the log
-- writer's connection sees (format_type's names), read from the catalog
-- when it connects (src/lua_db.c). A group whose table and columns are all
-- in it reaches the server as one array per column, unnest()ed: the
-- server parses each value with its type's input function and nothing
-- else, a third less of its time than json_populate_recordset. Others (a
-- table made since, an array column) go as JSON.
M.types = nil

local pg_arrays = core.pg_arrays
local typed = setmetatable({}, { __mode = "k" }) -- columns -> {of =, casts =, json =} or {of =}

-- The element types of cols in table name, and which are json, or nil.
local function column_types(name, cols)
  local tt = M.types and M.types[name]
  if not tt then return nil end
  local t = typed[cols]
  if t and t.of == tt and t.name == name then return t.casts and t end
  t = { of = tt, name = name }
  typed[cols] = t
  local casts, json = {}, {}
  for c = 1, #cols do
    local ty = tt[cols[c]]
    if not ty or ty:sub(-2) == "[]" then return nil end
    casts[c] = ty .. "[]"
    json[c] = (ty == "json" or ty == "jsonb") and "j" or "."
  end
  t.casts, t.json, t.sql = casts, table.concat(json), {}
  return t
end

-- The INSERT (or UPDATE) of group g's rows from src, a set of rows v.
local function statement(g, src)
  local cols = g.columns
  if g.update then
    local set = {}
    for c = 2, #cols do set[c - 1] = ("%s = v.%s"):format(cols[c], cols[c]) end
    return ("UPDATE %s t SET %s FROM %s WHERE t.%s = v.%s"):format(
      g.table, table.concat(set, ", "), src, cols[1], cols[1])
  end
  return ("INSERT INTO %s (%s) SELECT %s FROM %s"):format(g.table, g.list, g.list, src)
end

function M.build(batches)
  for b = 1, #batches do
    local rows = batches[b]
    for r = 1, #rows do
      if rows[r].update then batches = fold(batches); goto folded end
    end
  end
  ::folded::
  local groups, by_key = {}, {}
  for b = 1, #batches do
    local rows = batches[b]
    for r = 1, #rows do
      local row = rows[r]
      local cols = keys[row.columns]
      if not cols then
        cols = table.concat(row.columns, ",")
        keys[row.columns] = cols
      end
      -- grouped by column list, then table (a new key string per row cost
      -- more than the rest of the grouping)
      local of_cols = by_key[cols]
      if not of_cols then of_cols = {}; by_key[cols] = of_cols end
      local tkey = row.update and ukeys[row.table] or row.table
      local g = of_cols[tkey]
      if not g then
        assert(type(row.table) == "string" and row.table:match(IDENT), "bad table name in a log row")
        for _, c in ipairs(row.columns) do assert(c:match(IDENT), "bad column name in a log row") end
        g = { table = row.table, columns = row.columns, list = cols, rows = {}, update = row.update }
        of_cols[tkey] = g
        groups[#groups + 1] = g
      end
      g.rows[#g.rows + 1] = row.values
    end
  end
  local parts, np = {}, 0
  for i, g in ipairs(groups) do
    -- the rows as one array per column (or, failing their types, as one
    -- JSON array typed by the table's own row type); either way the
    -- server parses a few values instead of planning thousands
    local cols = g.columns
    local ty = column_types(g.table, cols)
    g.count = #g.rows
    local stmt
    if ty then
      -- the same columns at the same parameter number: the same text
      local key = g.update and -np - 1 or np
      stmt = ty.sql[key]
      if not stmt then
        local args = {}
        for c = 1, #cols do args[c] = ("$%d::%s"):format(np + c, ty.casts[c]) end
        stmt = statement(g, ("unnest(%s) v(%s)"):format(table.concat(args, ", "), g.list))
        ty.sql[key] = stmt
      end
      g.ncol, g.rows = #cols, { { pg_arrays(g.rows, #cols, ty.json) } }
      np = np + #cols
    else
      local names = ready[cols]
      if not names then names = json_columns(cols); ready[cols] = names end
      np = np + 1
      stmt = statement(g, ("json_populate_recordset(NULL::%s, $%d) v"):format(g.table, np))
      g.ncol, g.rows = 1, { { json_rows(names, g.rows) } }
    end
    parts[i] = i < #groups and ("g%d AS (%s RETURNING 1)"):format(i, stmt) or stmt
  end
  if #parts == 0 then return nil, groups, 0 end
  local sql = #parts == 1 and parts[1] or "WITH " .. table.concat(parts, ", ", 1, #parts - 1) .. " " .. parts[#parts]
  return sql, groups, np
end

return M
