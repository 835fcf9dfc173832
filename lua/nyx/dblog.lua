--- nyx.dblog: how the log writer (nyx.db.log, src/lua_db.c) writes a
-- batch: every row logged during one scheduler round, one multi-row INSERT
-- per table (and column list), all in one transaction; if that fails, each
-- caller's rows in a transaction of their own, so one bad row costs only
-- its own caller. Table and column names come from nyx's own code; values
-- are always parameters.
local M = {}

local IDENT = "^[%l_][%l%d_]*$"
local MAX_PARAMS = 65535

-- Rows of batches[first..last], grouped by table and columns, in order.
local function group(batches, first, last)
  local groups, by_key = {}, {}
  for b = first, last do
    for _, row in ipairs(batches[b]) do
      local key = row.table .. "(" .. table.concat(row.columns, ",") .. ")"
      local g = by_key[key]
      if not g then
        assert(row.table:match(IDENT), "bad table name in a log row")
        for _, c in ipairs(row.columns) do assert(c:match(IDENT), "bad column name in a log row") end
        g = { table = row.table, columns = row.columns, values = {}, n = 0 }
        by_key[key] = g
        groups[#groups + 1] = g
      end
      local ncol, base = #row.columns, g.n * #row.columns
      for j = 1, ncol do g.values[base + j] = row.values[j] end
      g.n = g.n + 1
    end
  end
  return groups
end

local placeholders = {} -- "($1,$2),($3,$4)" by ncol and rows, built once

local function tuples(ncol, rows)
  local key = ncol * 100000 + rows
  local s = placeholders[key]
  if not s then
    local t, k = {}, 0
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

local function insert(conn, groups)
  for _, g in ipairs(groups) do
    local ncol = #g.columns
    local per = MAX_PARAMS // ncol
    for start = 0, g.n - 1, per do
      local count = math.min(per, g.n - start)
      conn:exec("INSERT INTO " .. g.table .. " (" .. table.concat(g.columns, ",") .. ") VALUES " ..
                tuples(ncol, count), table.unpack(g.values, start * ncol + 1, (start + count) * ncol))
    end
  end
end

--- write(conn, batches): batches[i] is one caller's list of rows
-- ({table =, columns = {...}, values = {...}}). Returns errors[i] (a
-- message) for each caller whose rows could not be written.
function M.write(conn, batches)
  if pcall(conn.transaction, conn, insert, conn, group(batches, 1, #batches)) then
    return {}
  end
  local errors = {}
  for i = 1, #batches do
    local ok, e = pcall(conn.transaction, conn, insert, conn, group(batches, i, i))
    if not ok then errors[i] = tostring(e) end
  end
  return errors
end

return M
