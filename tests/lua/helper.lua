--- Shared by the specs: a fresh database per spec on the test server, and
-- running the nyx binary as a child process with its output captured.
local H = {}

H.bin = assert(os.getenv("NYX_BIN"), "NYX_BIN is not set: run the specs through ctest")
H.source = os.getenv("NYX_SOURCE_DIR") or "."

--- The admin conninfo of the test server (key=value form, so a dbname can
-- be appended for a child process).
function H.admin_url()
  local url = os.getenv("NYX_TEST_DATABASE_URL")
  if url and url ~= "" then
    assert(not url:match("^postgres"), "NYX_TEST_DATABASE_URL must be a key=value conninfo, not a URI")
    return url
  end
  local home = assert(os.getenv("NYX_TEST_HOME"), "set NYX_TEST_DATABASE_URL or NYX_TEST_HOME")
  return ("host=%s/nyx/pg port=5432 dbname=postgres user=nyx"):format(home)
end

--- conninfo for database name on the test server.
function H.url_for(name)
  return H.admin_url() .. " dbname=" .. name
end

local function admin(sql_format, name)
  local conn = nyx.db.open(H.admin_url())
  -- identifiers cannot be parameters: format(%I) quotes them server-side
  conn:exec(conn:query("SELECT format($1, $2::text) AS s", sql_format, name)[1].s)
  conn:close()
end

--- Creates an empty database, makes it nyx's default connection (which
-- migrates it) and returns its name.
function H.fresh_db(opts)
  local name = "nyx_spec_" .. nyx.uuid():gsub("-", ""):sub(1, 16)
  admin("CREATE DATABASE %I", name)
  if not (opts and opts.connect == false) then
    nyx.db.connect(H.admin_url(), { dbname = name })
  end
  return name
end

function H.drop_db(name)
  nyx.db.close()
  admin("DROP DATABASE %I WITH (FORCE)", name)
end

function H.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  os.remove(path)
  return s
end

--- Runs a shell command; returns {code =, out =, err =}. opts.env maps
-- variables to values (false unsets them); opts.stdin is fed to it.
function H.sh(cmd, opts)
  opts = opts or {}
  local unset, set = {}, {}
  for k, v in pairs(opts.env or {}) do
    if v == false then
      unset[#unset + 1] = "-u " .. k
    else
      set[#set + 1] = k .. "=" .. H.quote(v)
    end
  end
  local prefix = { "env", table.concat(unset, " "), table.concat(set, " ") }
  local out, err = os.tmpname(), os.tmpname()
  local input = ""
  if opts.stdin then
    local inf = os.tmpname()
    local f = assert(io.open(inf, "wb"))
    f:write(opts.stdin)
    f:close()
    input = " <" .. inf
    opts._stdin_file = inf
  end
  local full = table.concat(prefix, " ") .. " " .. cmd .. input .. " >" .. out .. " 2>" .. err
  local _, _, code = os.execute(full)
  if opts._stdin_file then os.remove(opts._stdin_file) end
  return { code = code, out = slurp(out), err = slurp(err) }
end

--- Runs nyx with these arguments (a list of strings).
function H.nyx(args, opts)
  local words = { H.quote(H.bin) }
  for _, a in ipairs(args) do words[#words + 1] = H.quote(a) end
  return H.sh(table.concat(words, " "), opts)
end

--- Environment that keeps a child away from any database but the one given.
function H.env_for(name, extra)
  local env = { NYX_DATABASE_URL = H.url_for(name), PGHOST = false, PGPORT = false,
                PGDATABASE = false, PGUSER = false, PGSERVICE = false, PGHOSTADDR = false }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

function H.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

function H.tmpdir()
  local p = io.popen("mktemp -d /tmp/nyx_spec_XXXXXX")
  local dir = p:read("l")
  p:close()
  return dir
end

function H.rmdir(dir)
  assert(dir:match("^/tmp/nyx_spec_"), "refusing to remove " .. dir)
  os.execute("rm -rf " .. H.quote(dir))
end

return H
