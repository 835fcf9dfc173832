-- The nyx command line: commands, options, scripts as lua runs them,
-- errors and exit statuses. Each case runs the real binary.
local H = require "tests.lua.helper"

-- no database anywhere for these children unless a case gives one
local NODB = { NYX_DATABASE_URL = "host=/nonexistent/nyx-cli-spec dbname=none connect_timeout=2",
               PGHOST = false, PGPORT = false, PGDATABASE = false, PGUSER = false,
               PGSERVICE = false, LUA_INIT = false, LUA_INIT_5_4 = false,
               NYX_LUA_PATH = false }

local function nyx(args, env, stdin)
  local e = {}
  for k, v in pairs(NODB) do e[k] = v end
  for k, v in pairs(env or {}) do e[k] = v end
  return H.nyx(args, { env = e, stdin = stdin })
end

local tmp
setup(function() tmp = H.tmpdir() end)
teardown(function() H.rmdir(tmp) end)

describe("nyx commands", function()
  it("prints its version", function()
    for _, a in ipairs{ "--version", "-v", "version" } do
      local r = nyx{ a }
      assert.are.equal(0, r.code)
      assert.matches("^nyx %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, libpq %d+%.%d+%)\n$", r.out)
      assert.are.equal("", r.err)
    end
  end)

  it("prints help, and help for a command", function()
    local r = nyx{ "--help" }
    assert.are.equal(0, r.code)
    assert.matches("usage: nyx %[options%] SCRIPT", r.out)
    assert.matches("db migrate", r.out)
    r = nyx{ "help", "db" }
    assert.are.equal(0, r.code)
    assert.matches("usage: nyx db migrate | status | start | stop", r.out, 1, true)
    r = nyx{}
    assert.are.equal(0, r.code)
    assert.matches("usage: nyx", r.out)
  end)

  it("has help for the commands written in Lua", function()
    for _, c in ipairs { "repl", "tree", "report", "stats" } do
      local r = H.nyx({ "help", c })
      assert.are.equal(0, r.code, c)
      assert.matches("^usage: nyx " .. c, r.out)
    end
  end)

  it("refuses unknown commands, options and topics with exit 2 and a hint", function()
    local cases = {
      { { "frobnicate" }, "nyx: unknown command 'frobnicate' (and no script file by that name)" },
      { { "-x" }, "nyx: unknown option '-x'" },
      { { "--frob" }, "nyx: unknown option '--frob'" },
      { { "-e" }, "nyx: '-e' needs an argument" },
      { { "help", "frob" }, "nyx: no help for 'frob' (commands: db, fake-claude, help, repl, report, stats, tree, version)" },
      { { "db", "frob" }, "nyx: unknown db command 'frob' (db commands: migrate, status, start, stop)" },
      { { "db", "status", "extra" }, "nyx: 'nyx db status' takes no arguments (got 'extra')" },
    }
    for _, c in ipairs(cases) do
      local r = nyx(c[1])
      assert.are.equal(2, r.code, table.concat(c[1], " "))
      assert.are.equal(c[2] .. "\ntry 'nyx --help'\n", r.err)
      assert.are.equal("", r.out)
    end
    local r = nyx{ "db" }
    assert.are.equal(2, r.code)
    assert.matches("usage: nyx db", r.err)
  end)
end)

describe("nyx SCRIPT", function()
  it("sets arg and ... as lua does", function()
    local script = H.write(tmp .. "/args.lua", [[
      print(#arg, arg[0], arg[1], arg[2], select("#", ...), ...)
      print(arg[-1], arg[-2], arg[-3], arg[-4])
    ]])
    local r = nyx{ script, "a b", "c" }
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(("2\t%s\ta b\tc\t2\ta b\tc\n%s\tnil\tnil\tnil\n"):format(script, H.bin), r.out)
    r = nyx{ "-e", "x = 1", script, "z" }
    assert.are.equal(("1\t%s\tz\tnil\t1\tz\nx = 1\t-e\t%s\tnil\n"):format(script, H.bin), r.out)
  end)

  it("preloads nyx, cjson and the standard libraries", function()
    local r = nyx{ "-e", [[
      assert(nyx == require("nyx"))
      assert(nyx.json == require("cjson"))
      assert(nyx.json.decode('{"a":[1,2]}').a[2] == 2)
      assert(type(nyx.db.query) == "function" and type(nyx.tree.create) == "function")
      assert(nyx.uuid():match("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$"))
      assert(nyx.uuid() ~= nyx.uuid())
      print(nyx.version, string.format("%d", 7), math.pi > 3, os.time() > 0, utf8.char(233), coroutine.running())
    ]] }
    assert.are.equal(0, r.code, r.err)
    -- the chunk runs as a task: a coroutine, not the main thread
    assert.matches("^%d+%.%d+%.%d+\t7\ttrue\ttrue\té\tthread: 0x%x+\tfalse\n$", r.out)
  end)

  it("reports a runtime error as file:line with a traceback, exit 1", function()
    local script = H.write(tmp .. "/boom.lua", "local function f()\n  error('boom')\nend\nf()\n")
    local r = nyx{ script }
    assert.are.equal(1, r.code)
    assert.are.equal("", r.out)
    local first = r.err:match("^[^\n]*")
    assert.are.equal("nyx: " .. script .. ":2: boom", first)
    assert.matches("stack traceback:", r.err, 1, true)
    assert.matches(script .. ":4: in main chunk", r.err, 1, true)
  end)

  it("reports a syntax error and a missing file, exit 1", function()
    local script = H.write(tmp .. "/syntax.lua", "x = = 1\n")
    local r = nyx{ script }
    assert.are.equal(1, r.code)
    assert.are.equal("nyx: " .. script .. ":1: unexpected symbol near '='\n", r.err)
    r = nyx{ tmp .. "/missing.lua" }
    assert.are.equal(1, r.code)
    assert.are.equal("nyx: cannot open " .. tmp .. "/missing.lua\n", r.err:gsub(": No such file or directory", ""))
  end)

  it("describes error objects that are not strings", function()
    local r = nyx{ "-e", "error(setmetatable({}, {__tostring = function() return 'custom' end}))" }
    assert.are.equal(1, r.code)
    assert.matches("^nyx: custom\nstack traceback:", r.err)
    r = nyx{ "-e", "error({})" }
    assert.matches("^nyx: %(error object is a table value%)", r.err)
  end)

  it("shows warnings with -W only", function()
    local r = nyx{ "-W", "-e", "warn('careful'); warn('@off'); warn('hidden'); warn('@on'); warn('two ', 'parts')" }
    assert.are.equal("Lua warning: careful\nLua warning: two parts\n", r.err)
    assert.are.equal("", nyx{ "-e", "warn('quiet')" }.err)
  end)

  it("exits with the script's os.exit status", function()
    assert.are.equal(7, nyx{ "-e", "os.exit(7)" }.code)
    assert.are.equal(1, nyx{ "-e", "os.exit(false)" }.code)
  end)

  it("runs a script from stdin with -", function()
    local r = nyx({ "-", "x", "y" }, nil, "print('stdin', ...)\n")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("stdin\tx\ty\n", r.out)
  end)

  it("runs a file named like a command when given as a path", function()
    H.write(tmp .. "/db", "print('the file named db')\n")
    local r = nyx{ tmp .. "/db" }
    assert.are.equal("the file named db\n", r.out)
  end)

  it("runs -e and -l in order, -l g=mod into global g", function()
    local r = nyx{ "-l", "cjson", "-l", "j=cjson", "-e", "print(cjson.encode{1}, j == cjson)" }
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("[1]\ttrue\n", r.out)
    r = nyx{ "-l", "no.such.module" }
    assert.are.equal(1, r.code)
    assert.matches("module 'no.such.module' not found", r.err, 1, true)
  end)

  it("honours LUA_INIT and -E", function()
    local init = H.write(tmp .. "/init.lua", "INIT_FROM_FILE = true\n")
    local r = nyx({ "-e", "print(INITED)" }, { LUA_INIT = "INITED = 'yes'" })
    assert.are.equal("yes\n", r.out)
    r = nyx({ "-e", "print(INIT_FROM_FILE)" }, { LUA_INIT = "@" .. init })
    assert.are.equal("true\n", r.out)
    r = nyx({ "-e", "print(INITED)" }, { LUA_INIT = "INITED = 1", LUA_INIT_5_4 = "INITED = 54" })
    assert.are.equal("54\n", r.out)
    r = nyx({ "-E", "-e", "print(INITED)" }, { LUA_INIT = "INITED = 'yes'" })
    assert.are.equal("nil\n", r.out)
    r = nyx({ "-e", "x=1" }, { LUA_INIT = "error('in init')" })
    assert.are.equal(1, r.code)
    assert.matches("^nyx: LUA_INIT:1: in init", r.err)
  end)

  it("searches nyx's lua/, then NYX_LUA_PATH, then the standard path", function()
    os.execute("mkdir -p " .. tmp .. "/mods/pkg " .. tmp .. "/tpl")
    H.write(tmp .. "/mods/mymod.lua", "return 'from a folder'")
    H.write(tmp .. "/mods/pkg/init.lua", "return 'package init'")
    H.write(tmp .. "/tpl/m_other.lua", "return 'from a template'")
    local r = nyx({ "-e", "print((require 'mymod'), (require 'pkg'), (require 'other'))" },
                  { NYX_LUA_PATH = tmp .. "/mods;" .. tmp .. "/tpl/m_?.lua" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("from a folder\tpackage init\tfrom a template\n", r.out)
    r = nyx({ "-e", "print(package.path)" }, { NYX_LUA_PATH = "/x" })
    local path = r.out
    local lib, user, std = path:find(H.source .. "/lua/?.lua", 1, true), path:find("/x/?.lua", 1, true),
                           path:find("/usr/share/lua/5.4/?.lua", 1, true)
    assert.is_truthy(lib and user and std)
    assert.is_true(lib < user and user < std)
    assert.are.equal("nil\n", nyx({ "-E", "-e", "print(package.path:find('/x/', 1, true))" },
                                  { NYX_LUA_PATH = "/x" }).out)
    r = nyx({ "-e", "print(package.path:find('/lp/?.lua', 1, true) ~= nil)" }, { LUA_PATH = "/lp/?.lua" })
    assert.are.equal("true\n", r.out)
    -- installed Lua C modules load (busted's own, here)
    r = nyx{ "-e", "print(type(require('term').isatty))" }
    assert.are.equal("function\n", r.out)
  end)
end)

describe("the model", function()
  it("is the offline one with --offline, whatever the key, and says so", function()
    local r = nyx({ "--offline", "-e", "print(nyx.llm.endpoint().offline)" },
                  { ANTHROPIC_API_KEY = "sk-not-used", NYX_OFFLINE = false })
    assert.are.equal("true\n", r.out)
    assert.matches("^nyx: offline: the offline model answers %(a fake Claude on http://127%.0%.0%.1:%d+%)\n$", r.err)
  end)

  it("is the offline one when no key is set, and says why", function()
    local r = nyx({ "-e", "print(nyx.llm.endpoint().offline)" },
                  { ANTHROPIC_API_KEY = false, ANTHROPIC_BASE_URL = false, NYX_OFFLINE = false })
    assert.are.equal("true\n", r.out)
    assert.matches("^nyx: no ANTHROPIC_API_KEY: the offline model answers", r.err)
  end)
end)

describe("database connection failures", function()
  it("say which database and why in one line, exit 1, no password", function()
    local env = { NYX_DATABASE_URL = "postgresql://ann:hunter2-secret@127.0.0.1:1/nyxdb?connect_timeout=3" }
    for _, args in ipairs{ { "-e", "nyx.tree.create{goal='x'}" }, { "db", "status" }, { "db", "migrate" } } do
      local r = nyx(args, env)
      assert.are.equal(1, r.code)
      assert.are.equal("", r.out)
      local lines = select(2, r.err:gsub("\n", ""))
      assert.are.equal(1, lines, r.err)
      assert.matches('^nyx: cannot connect to database "nyxdb" on 127%.0%.0%.1:1: .*%(database chosen by NYX_DATABASE_URL%)\n$', r.err)
      assert.is_nil(r.err:find("hunter2", 1, true))
    end
  end)

  it("can be caught by a script as a structured error", function()
    local r = nyx{ "-e", [[
      local ok, e = pcall(nyx.db.query, "select 1")
      print(ok, e.type, tostring(e):match("^cannot connect") ~= nil)
    ]] }
    assert.are.equal("false\tconnection\ttrue\n", r.out)
  end)
end)
