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

--- build(batches): batches[i] is one caller's list of rows ({table =,
-- columns = {...}, values = {...}}). Returns the statement, the groups in
-- parameter order ({ncol =, rows = {values, ...}}, values with holes for
-- NULL) and how many parameters there are.
local keys = setmetatable({}, { __mode = "k" }) -- columns table -> "(a,b)"

function M.build(batches)
  local groups, by_key = {}, {}
  for _, rows in ipairs(batches) do
    for _, row in ipairs(rows) do
      local cols = keys[row.columns]
      if not cols then
        cols = "(" .. table.concat(row.columns, ",") .. ")"
        keys[row.columns] = cols
      end
      local key = row.table .. cols
      local g = by_key[key]
      if not g then
        assert(type(row.table) == "string" and row.table:match(IDENT), "bad table name in a log row")
        for _, c in ipairs(row.columns) do assert(c:match(IDENT), "bad column name in a log row") end
        g = { table = row.table, columns = row.columns, rows = {} }
        by_key[key] = g
        groups[#groups + 1] = g
      end
      g.rows[#g.rows + 1] = row.values
    end
  end
  local n, parts = 0, {}
  for i, g in ipairs(groups) do
    local ncol = #g.columns
    local insert = "INSERT INTO " .. g.table .. " (" .. table.concat(g.columns, ",") .. ") VALUES " ..
                   tuples(n + 1, ncol, #g.rows)
    g.ncol = ncol
    n = n + ncol * #g.rows
    parts[i] = i < #groups and ("g%d AS (%s RETURNING 1)"):format(i, insert) or insert
  end
  local sql = #parts == 1 and parts[1] or "WITH " .. table.concat(parts, ", ", 1, #parts - 1) .. " " .. parts[#parts]
  return sql, groups, n
end

return M
