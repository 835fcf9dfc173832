-- nyx repl with stdin piped (no terminal: no readline, no prompts), and
-- `nyx SCRIPT --repl`: a script and a REPL in one process, the REPL seeing
-- the script's state while it runs. Each case runs the real binary against
-- a fresh database; the terminal side is tests/c/test_repl.c.
local H = require "tests.lua.helper"

local dbname, tmp

local function env(extra)
  local e = H.env_for(dbname, { LUA_INIT = false, LUA_INIT_5_4 = false, HOME = tmp, XDG_STATE_HOME = tmp .. "/state" })
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function repl(input, extra)
  return H.nyx({ "repl" }, { env = env(extra), stdin = input })
end

describe("nyx repl, stdin piped", function()
  setup(function()
    dbname = H.fresh_db()
    tmp = H.tmpdir()
  end)
  teardown(function()
    H.rmdir(tmp)
    H.drop_db(dbname)
  end)

  it("runs chunks as lua.c's REPL does: values printed, multi-line chunks, errors that do not end it", function()
    local r = repl(table.concat({
      "1+1",
      "=2*3",
      "x = 10",
      "for i = 1, 2 do",
      "  print(i * x)",
      "end",
      "error('boom')",
      "1 +",
      "= {b = 2, a = {1, 2}}",
      "return 1, 'two', nil",
      "=x",
      "if x then", -- the input ends in the middle of a chunk
    }, "\n") .. "\n")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('2\n6\n10\n20\n{a = {1, 2}, b = 2}\n1\t"two"\tnil\n10\n', r.out)
    assert.are.equal("stdin:1: boom\nstack traceback:\n\t[C]: in function 'error'\n\tstdin:1: in main chunk\n"
      .. "stdin:1: unexpected symbol near '1'\n"
      .. "stdin:1: 'end' expected near <eof>\n", r.err)
  end)

  it("runs each chunk as a task: yielding calls work, other tasks go on", function()
    local r = repl(table.concat({
      "h = nyx.task.spawn(function() nyx.task.sleep(0.05) return 'background' end)",
      "=nyx.task.current() ~= nil",
      "=h:wait()",
      "=nyx.proc.run{argv = {'echo', 'from a child'}}.stdout",
      "root = nyx.tree.create{goal = 'from the repl'}",
      "=nyx.db.query('SELECT goal FROM thought_trees WHERE id = $1', root.id)[1].goal",
      "=nyx.llm.complete{tree = root, messages = {{role = 'user', content = 'Goal: say hi'}}}.text:match('^Offline answer')",
    }, "\n") .. "\n")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('true\ntrue\t"background"\n"from a child\\n"\n"from the repl"\n"Offline answer"\n', r.out)
  end)

  it("honours LUA_INIT before the first prompt", function()
    local r = repl("=GREETING\n", { LUA_INIT = "GREETING = 'from LUA_INIT'" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('"from LUA_INIT"\n', r.out)
  end)

  it("prints credentials redacted, unless revealed; code still reads them", function()
    local key = "sk-ant-repl-" .. nyx.uuid()
    nyx.config.set("repl_api_key", key, "credential")
    local r = repl(table.concat({
      "=nyx.config.get('repl_api_key')",
      "=nyx.db.query(\"SELECT config_value FROM system_config WHERE config_key = 'repl_api_key'\")",
      "=#nyx.config.get('repl_api_key')",
      "=nyx.config.reveal('repl_api_key')",
    }, "\n") .. "\n")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(('<redacted: credential>\n{{config_value = {value = <redacted: credential>}}}\n%d\n"%s"\n')
      :format(#key, key), r.out)
  end)

  it("leaves with os.exit and its code", function()
    local r = repl("print('before')\nos.exit(3)\nprint('after')\n")
    assert.are.equal(3, r.code)
    assert.are.equal("before\n", r.out)
  end)

  it("refuses arguments with a clear error and exit 2", function()
    local r = H.nyx({ "repl", "extra" }, { env = env() })
    assert.are.equal(2, r.code)
    assert.are.equal("nyx: 'nyx repl' takes no arguments (got 'extra')\ntry 'nyx --help'\n", r.err)
  end)
end)

describe("nyx SCRIPT --repl", function()
  setup(function()
    dbname = H.fresh_db()
    tmp = H.tmpdir()
  end)
  teardown(function()
    H.rmdir(tmp)
    H.drop_db(dbname)
  end)

  it("runs the script and a REPL at once: the REPL sees the running script's state", function()
    -- the script cannot finish until the REPL has seen its state and said GO
    local script = H.write(tmp .. "/wait_for_go.lua", [[
      print("script: start", ...)
      STATE = "running"
      while not GO do nyx.task.sleep(0.01) end
      print("script: saw GO")
      STATE = "done"
    ]])
    local r = H.nyx({ script, "a", "--repl", "b" }, { env = env(), stdin = table.concat({
      "=STATE",
      "=nyx.run.repl",
      "GO = true",
      "while STATE ~= 'done' do nyx.task.sleep(0.01) end",
      "=STATE",
    }, "\n") .. "\n" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('script: start\ta\tb\n"running"\ntrue\nscript: saw GO\n"done"\n', r.out)
    assert.are.equal("nyx: the script finished; the REPL stays open (Ctrl-D leaves)\n", r.err)
  end)

  it("lets the REPL inspect an orchestration while its agents run", function()
    local script = H.write(tmp .. "/tea.lua", [[
      local ok, result, o = nyx.orchestrate(..., { strategy = "decompose" })
      ROOT = o.node.id
      print("script: ok", ok)
    ]])
    local r = H.nyx({ script, "Write a guide to brewing tea", "--repl" }, {
      env = env({ NYX_FAKE_DELAY_MS = "40" }),
      stdin = table.concat({
        "while nyx.runtime.stats().active == 0 do nyx.task.sleep(0.005) end",
        "s = nyx.runtime.stats()",
        "=ROOT == nil, s.active > 0, s.agents > 0",
        "while not ROOT do nyx.task.sleep(0.02) end",
        "=#nyx.tree.get(ROOT):subtree()",
      }, "\n") .. "\n" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("true\ttrue\ttrue\nscript: ok\ttrue\n13\n", r.out)
  end)

  it("says when the script failed, keeps the REPL, and exits 1", function()
    local script = H.write(tmp .. "/fails.lua", "SEEN = 'yes'\nerror('script broke')\n")
    local r = H.nyx({ script, "--repl" }, { env = env(), stdin = "nyx.task.sleep(0.05)\n=SEEN\n" })
    assert.are.equal(1, r.code)
    assert.are.equal('"yes"\n', r.out)
    assert.matches("^nyx: the script failed: [^\n]*fails%.lua:2: script broke\nstack traceback:\n", r.err)
    assert.matches("nyx: the REPL stays open %(Ctrl%-D leaves%)\n$", r.err)
  end)
end)

describe("nyx.task handles", function()
  it("cancel a waiting task: its waiters see the error, its child process is killed at once", function()
    local h = nyx.task.spawn(function() return nyx.proc.run{ argv = { "sleep", "30" } } end)
    nyx.task.sleep(0.1)
    assert.are.equal(1, nyx.proc.running())
    local t0 = nyx.core.now()
    assert.is_true(h:cancel("stop it"))
    assert.are.equal(0, nyx.proc.running())
    assert.are.same({ false, "stop it" }, { h:wait() })
    assert.is_true(nyx.core.now() - t0 < 1)
    assert.is_false(h:cancel()) -- finished already
    local ready = nyx.task.spawn(function() error("never runs") end)
    assert.is_true(ready:cancel())
    local ok, err = ready:wait() -- cancelled before it ran: it never does
    assert.is_false(ok)
    assert.are.equal("cancelled", err.type)
  end)
end)
