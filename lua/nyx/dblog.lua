--- nyx.dblog: how the log writer (nyx.db.log, src/lua_db.c) turns a batch
-- into one statement: the rows grouped by table (and column list), in the
-- order the tables first appear, one multi-row INSERT each, chained in a
-- WITH so the whole batch is one round trip and one atomic statement.
-- Table and column names come from nyx's own code; values are always
-- parameters.
local M = {}

local IDENT = "^[%l_][%l%d_]*$"

local placeholders, cached = {}, 0 -- "($1,$2),($3,$4)" by first, columns, rows

local function tuples(first, ncol, rows)
  local key = ("%d/%d/%d"):format(first, ncol, rows)
  local s = placeholders[key]
  if not s then
    if cached >= 256 then placeholders, cached = {}, 0 end -- batch sizes vary: stay small
    cached = cached + 1
    local t, k = {}, first - 1
    for r = 1, rows do
      local ph = {}
      for c = 1, ncol do k = k + 1; ph[c] = "$" .. k end
      t[r] = "(" .. table.concat(ph, ",") .. ")"
    end
    s = table.concat(t, ",")
    placeholders[key] = s
  end
  return s
end

-- Folds update rows into the rows before them that have the same table and
-- key (the first column): an update of a row inserted in the same batch
-- becomes part of the insert, two updates of one row become one. Rows of a
-- statement all see the same snapshot, so an UPDATE could not see an
-- INSERT of its own batch, nor should one row be updated twice.
local function fold(batches)
  local out, by_key = {}, {}
  for _, rows in ipairs(batches) do
    for _, row in ipairs(rows) do
      local key = row.table .. "\0" .. tostring(row.values[1])
      local target = row.update and by_key[key]
      if target then
        if not target.index then -- widen a copy, not the caller's row
          local cols, vals, index = {}, {}, {}
          for i, c in ipairs(target.columns) do cols[i], vals[i], index[c] = c, target.values[i], i end
          target.columns, target.values, target.index = cols, vals, index
        end
        for i = 2, #row.columns do
          local c = row.columns[i]
          local j = target.index[c]
          if not j then
            j = #target.columns + 1
            target.columns[j], target.index[c] = c, j
          end
          target.values[j] = row.values[i]
        end
      else
        target = { table = row.table, columns = row.columns, values = row.values, update = row.update }
        out[#out + 1] = target
        by_key[key] = target
      end
    end
  end
  return { out }
end

--- build(batches): batches[i] is one caller's list of rows ({table =,
-- columns = {...}, values = {...}}; update = true: set the columns of the
-- row whose first column has that value). Returns the statement (nil when
-- there is nothing to write), the groups in parameter order ({ncol =,
-- rows = {values, ...}}, values with holes for NULL) and how many
-- parameters there are.
local keys = setmetatable({}, { __mode = "k" }) -- columns table -> "(a,b)"

local encode = require("nyx.core").json_encode

function M.build(batches)
  for _, rows in ipairs(batches) do
    for _, row in ipairs(rows) do
      if row.update then batches = fold(batches); goto folded end
    end
  end
  ::folded::
  local groups, by_key = {}, {}
  for _, rows in ipairs(batches) do
    for _, row in ipairs(rows) do
      local cols = keys[row.columns]
      if not cols then
        cols = "(" .. table.concat(row.columns, ",") .. ")"
        keys[row.columns] = cols
      end
      local key = (row.update and "U" or "I") .. row.table .. cols
      local g = by_key[key]
      if not g then
        assert(type(row.table) == "string" and row.table:match(IDENT), "bad table name in a log row")
        for _, c in ipairs(row.columns) do assert(c:match(IDENT), "bad column name in a log row") end
        g = { table = row.table, columns = row.columns, rows = {}, update = row.update }
        by_key[key] = g
        groups[#groups + 1] = g
      end
      g.rows[#g.rows + 1] = row.values
    end
  end
  local n, parts = 0, {}
  for i, g in ipairs(groups) do
    local stmt
    -- one parameter per group: the rows as a JSON array, typed by the
    -- table's own row type, so every column converts as it would from a
    -- literal; the server parses one value instead of planning thousands
    local objs, cols = {}, g.columns
    for r, vals in ipairs(g.rows) do
      local o = {}
      for c = 1, #cols do o[cols[c]] = vals[c] end
      objs[r] = o
    end
    local list = table.concat(cols, ",")
    if g.update then
      local set = {}
      for c = 2, #cols do set[c - 1] = ("%s = v.%s"):format(cols[c], cols[c]) end
      stmt = ("UPDATE %s t SET %s FROM json_populate_recordset(NULL::%s, $%d) v WHERE t.%s = v.%s"):format(
        g.table, table.concat(set, ", "), g.table, n + 1, cols[1], cols[1])
    else
      stmt = ("INSERT INTO %s (%s) SELECT %s FROM json_populate_recordset(NULL::%s, $%d)"):format(
        g.table, list, list, g.table, n + 1)
    end
    g.ncol, g.rows = 1, { { encode(objs) } }
    n = n + 1
    parts[i] = i < #groups and ("g%d AS (%s RETURNING 1)"):format(i, stmt) or stmt
  end
  if #parts == 0 then return nil, groups, 0 end
  local sql = #parts == 1 and parts[1] or "WITH " .. table.concat(parts, ", ", 1, #parts - 1) .. " " .. parts[#parts]
  return sql, groups, n
end

return M
