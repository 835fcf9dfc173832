-- The embedded default database: with no NYX_DATABASE_URL and no PG*
-- variables, nyx creates a private cluster on first use, reuses it, stops
-- it on request, and listens only on a Unix socket in its own folder.
local H = require "tests.lua.helper"

describe("the embedded database", function()
  local tmp, data, env
  setup(function()
    -- a 0700 folder: as root, the server's account needs a way in
    tmp = H.tmpdir()
    data = tmp .. "/data"
    env = { XDG_DATA_HOME = data, NYX_DATABASE_URL = false, PGHOST = false, PGPORT = false,
            PGDATABASE = false, PGUSER = false, PGSERVICE = false, PGHOSTADDR = false }
  end)
  teardown(function()
    H.nyx({ "db", "stop" }, { env = env })
    H.rmdir(tmp)
  end)

  local function run(code) return H.nyx({ "-e", code }, { env = env }) end

  it("is created on first use, says where, and keeps data", function()
    local r = run([[
      local n = nyx.tree.create{ goal = "kept across runs" }
      print(n.id)
      print(nyx.db.info().embedded, nyx.db.info().source)
    ]])
    assert.are.equal(0, r.code, r.err)
    local id, rest = r.out:match("^(%S+)\n(.*)$")
    assert.are.equal("true\tembedded\n", rest)
    local dir = data .. "/nyx/pg"
    -- one line says where the data lives (as root, lines saying which
    -- folders the server's account was let through may come first)
    local created = "nyx: created the embedded database in " .. dir ..
                    " (Unix socket only; 'nyx db stop' stops it)\n"
    assert.are.equal(created, r.err:sub(-#created))
    for line in r.err:sub(1, -#created - 1):gmatch("[^\n]+") do
      assert.matches("^nyx: let the server's account '%w+' pass through /", line)
    end
    local f = io.open(dir .. "/.s.PGSQL.5432")
    assert.is_nil(f and f:close()) -- a socket, not a file to open
    assert.is_true(os.execute("test -S " .. H.quote(dir .. "/.s.PGSQL.5432")))

    -- reused: no message, the node is there
    r = run(("print(nyx.tree.get(%q).goal)"):format(id))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("kept across runs\n", r.out)
    assert.are.equal("", r.err)

    -- only the socket: no TCP listener
    r = run([[print(nyx.db.query("SHOW listen_addresses")[1].listen_addresses,
                    nyx.db.query("SHOW unix_socket_directories")[1].unix_socket_directories)]])
    assert.are.equal("\t" .. dir .. "\n", r.out)

    -- as root, the server runs as an unprivileged account
    local pidfile = assert(io.open(dir .. "/postmaster.pid"))
    local pid = pidfile:read("l")
    pidfile:close()
    local status = assert(io.open("/proc/" .. pid .. "/status")):read("a")
    local uid = tonumber(status:match("\nUid:%s+(%d+)"))
    local me = tonumber(H.sh("id -u").out)
    if me == 0 then assert.are_not.equal(0, uid) else assert.are.equal(me, uid) end
  end)

  it("reports status, stops, and starts again on next use", function()
    local r = H.nyx({ "db", "status" }, { env = env })
    assert.are.equal(0, r.code, r.err)
    assert.matches('database:   database "nyx" on ' .. data .. "/nyx/pg (embedded)", r.out, 1, true)
    assert.matches("server:     PostgreSQL %d+%.%d+\n", r.out)
    assert.matches("0001_tables.sql%s+applied %d%d%d%d%-%d%d%-%d%d", r.out)
    assert.matches("\n0 pending\n$", r.out)

    r = H.nyx({ "db", "stop" }, { env = env })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("stopped the embedded database in " .. data .. "/nyx/pg\n", r.out)
    assert.is_false(os.execute("test -S " .. H.quote(data .. "/nyx/pg/.s.PGSQL.5432")) or false)
    r = H.nyx({ "db", "stop" }, { env = env })
    assert.are.equal("the embedded database in " .. data .. "/nyx/pg is not running\n", r.out)

    r = run("print(#nyx.tree.roots{})")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("1\n", r.out)
    assert.are.equal("", r.err) -- a restart is not news

    r = H.nyx({ "db", "start" }, { env = env })
    assert.are.equal(0, r.code, r.err)
    assert.matches("^host='" .. data .. "/nyx/pg' port=5432 dbname=nyx user=nyx\n$", r.out)
  end)

  it("two first runs at once share one cluster", function()
    local other = { }
    for k, v in pairs(env) do other[k] = v end
    other.XDG_DATA_HOME = tmp .. "/race"
    local cmd = ("%s -e 'print(nyx.db.info().embedded)'"):format(H.quote(H.bin))
    local r = H.sh("sh -c " .. H.quote(cmd .. " & " .. cmd .. " & wait"), { env = other })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("true\ntrue\n", r.out)
    local created = select(2, r.err:gsub("created the embedded database", ""))
    assert.are.equal(1, created, r.err)
    H.nyx({ "db", "stop" }, { env = other })
  end)

  it("says what is wrong when it cannot be created", function()
    local e2 = { NYX_PG_BINDIR = tmp .. "/nowhere", XDG_DATA_HOME = tmp .. "/other" }
    for k, v in pairs(env) do if e2[k] == nil then e2[k] = v end end
    local r = H.nyx({ "-e", "nyx.db.query('select 1')" }, { env = e2 })
    assert.are.equal(1, r.code)
    assert.are.equal("nyx: NYX_PG_BINDIR=" .. tmp .. "/nowhere has no initdb, pg_ctl and postgres " ..
                     "(database chosen by embedded)\n", r.err)

    local long = tmp .. "/" .. ("x"):rep(90)
    e2.NYX_PG_BINDIR, e2.XDG_DATA_HOME = false, long
    r = H.nyx({ "db", "status" }, { env = e2 })
    assert.are.equal(1, r.code)
    assert.matches("longer than the 107 bytes Unix sockets allow; set XDG_DATA_HOME to a shorter path", r.err, 1, true)

    os.execute("mkdir -p " .. H.quote(tmp .. "/occupied/nyx/pg") .. " && touch " .. H.quote(tmp .. "/occupied/nyx/pg/mine"))
    e2.XDG_DATA_HOME = tmp .. "/occupied"
    r = H.nyx({ "db", "status" }, { env = e2 })
    assert.are.equal(1, r.code)
    assert.matches("exists but holds no PostgreSQL cluster; move it away", r.err, 1, true)
  end)
end)
