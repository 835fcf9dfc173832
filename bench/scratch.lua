-- bench/scratch.lua create | drop NAME: a scratch database for the
-- benchmarks, on the server nyx would use (NYX_DATABASE_URL, PG*, or the
-- embedded one), so that their figures do not depend on how much an
-- earlier run left in the tables (a database of a million calls, with
-- autovacuum at work, made the same run 10-30% slower).
--   create   makes nyx_scratch_<time>_<pid> and prints a conninfo for it
--            (what NYX_DATABASE_URL takes; nyx migrates it on first use)
--   drop N   drops database N (only a nyx_scratch_ one)
-- bench/run and bench/llm.sh use it when BENCH_DB=scratch.
local db = nyx.db
local what, name = arg[1], arg[2]

-- A conninfo value, quoted as libpq reads it.
local function quoted(v) return "'" .. tostring(v):gsub("[\\']", "\\%0") .. "'" end

if what == "create" then
  local info = db.info()
  name = ("nyx_scratch_%d_%d"):format(os.time(), math.random(1e6))
  db.exec("CREATE DATABASE " .. name)
  local parts = {}
  for _, k in ipairs{ "host", "port", "user" } do
    if info[k] then parts[#parts + 1] = k .. "=" .. quoted(info[k]) end
  end
  parts[#parts + 1] = "dbname=" .. name
  print(table.concat(parts, " "))
elseif what == "drop" and type(name) == "string" and name:match("^nyx_scratch_%d+_%d+$") then
  db.exec("DROP DATABASE IF EXISTS " .. name .. " WITH (FORCE)")
else
  io.stderr:write("usage: nyx bench/scratch.lua create | drop nyx_scratch_<time>_<n>\n")
  os.exit(2)
end
