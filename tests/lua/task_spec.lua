-- nyx.task: coroutines on the event loop. The spec itself runs inside a
-- task (nyx runs every script as one), so it can spawn and wait.
local H = require "tests.lua.helper"
local task = nyx.task

local now = require("nyx.core").now

describe("nyx.task", function()
  it("runs a function as a task and returns what it returns", function()
    local h = task.spawn(function(a, b) return a + b, "two", nil end, 1, 2)
    assert.are.equal("ready", h.status)
    local ok, sum, two, none = h:wait()
    assert.is_true(ok)
    assert.are.equal(3, sum)
    assert.are.equal("two", two)
    assert.is_nil(none)
    assert.are.equal("done", h.status)
    assert.is_true(select("#", h:wait()) == 4) -- again: same answer, nil kept
  end)

  it("returns a failure as false and the error, with the task's traceback kept", function()
    local err = { code = 7 }
    local h = task.spawn(function() error(err) end)
    local ok, e = h:wait()
    assert.is_false(ok)
    assert.are.equal(err, e)
    assert.are.equal("failed", h.status)
    local ok2, msg = task.spawn(function() local x = nil; return x.field end):wait()
    assert.is_false(ok2)
    assert.matches("task_spec.lua:%d+: attempt to index a nil value", msg)
  end)

  it("really runs tasks concurrently", function()
    local t0 = now()
    local hs = {}
    for i = 1, 300 do hs[i] = task.spawn(function() task.sleep(0.2); return i end) end
    local rs = task.wait_all(hs)
    local elapsed = now() - t0
    assert.are.equal(300, #rs)
    for i, r in ipairs(rs) do
      assert.is_true(r.ok)
      assert.are.equal(i, r[1])
      assert.are.equal(1, r.n)
    end
    assert.is_true(elapsed < 2, ("300 sleeps of 0.2 s took %.2f s"):format(elapsed)) -- not 60 s
  end)

  it("reports each outcome in wait_all, in order", function()
    local rs = task.wait_all{
      task.spawn(function() task.sleep(0.02); return "slow" end),
      task.spawn(function() error("bad", 0) end),
      task.spawn(function() return end),
    }
    assert.are.same({ ok = true, n = 1, "slow" }, rs[1])
    assert.is_false(rs[2].ok)
    assert.are.equal("bad", rs[2].error)
    assert.are.same({ ok = true, n = 0 }, rs[3])
  end)

  it("shows status and identity", function()
    local inner
    local h = task.spawn(function()
      inner = task.current()
      assert.are.equal("running", inner.status)
      task.sleep(0.01)
    end)
    task.sleep(0.001)
    assert.are.equal(h, inner)
    assert.are.equal("waiting", h.status)
    assert.matches("^nyx.task %d+ %(waiting%)$", tostring(h))
    h:wait()
    assert.are.equal("done", h.status)
    assert.is_true(h.id > 0)
  end)

  it("refuses to let a task wait for itself", function()
    local ok, err = task.spawn(function() return task.current():wait() end):wait()
    assert.is_false(ok)
    assert.matches("a task cannot wait for itself", err)
  end)

  it("keeps a user's coroutines working inside tasks", function()
    -- a coroutine that both yields its own values and waits for nyx
    local gen = coroutine.wrap(function(a)
      local b = coroutine.yield(a + 1)
      task.sleep(0.01)
      local c = coroutine.yield(b * 2)
      return c .. "!"
    end)
    assert.are.equal(2, gen(1))
    assert.are.equal(10, gen(5))
    assert.are.equal("end!", gen("end"))
    local co = coroutine.create(function(x) task.sleep(0.01); coroutine.yield(x); error("inner", 0) end)
    assert.are.same({ true, "v" }, { coroutine.resume(co, "v") })
    assert.are.same({ false, "inner" }, { coroutine.resume(co) })
    assert.are.same({ false, "cannot resume dead coroutine" }, { coroutine.resume(co) })
    local bad = coroutine.wrap(function() error("wrapped") end)
    local ok, err = pcall(bad)
    assert.is_false(ok)
    assert.matches("task_spec.lua:%d+: wrapped", err)
    -- nested: a coroutine inside a coroutine, waiting at the bottom
    local outer = coroutine.wrap(function()
      local inner = coroutine.wrap(function() task.sleep(0.01); return "deep" end)
      return inner()
    end)
    assert.are.equal("deep", outer())
  end)

  it("lets others run while one waits inside a user's coroutine", function()
    local log = {}
    local a = task.spawn(function()
      local co = coroutine.wrap(function() task.sleep(0.05); log[#log + 1] = "a" end)
      co()
    end)
    local b = task.spawn(function() task.sleep(0.01); log[#log + 1] = "b" end)
    task.wait_all{ a, b }
    assert.are.same({ "b", "a" }, log)
  end)

  it("waits in place where it cannot yield", function()
    local t = { 5, 3, 9, 1 }
    table.sort(t, function(x, y) task.sleep(0.001); return x < y end)
    assert.are.same({ 1, 3, 5, 9 }, t)
    local s = ("abc"):gsub("%w", function(c) task.sleep(0.001); return c:upper() end)
    assert.are.equal("ABC", s)
  end)

  it("releases what finished tasks held", function()
    local before = require("nyx.core").refs()
    local hs = {}
    for i = 1, 50 do hs[i] = task.spawn(function() task.sleep(0.001); return i end) end
    assert.are.equal(before + 50, require("nyx.core").refs())
    task.wait_all(hs)
    assert.are.equal(before, require("nyx.core").refs())
    assert.are.equal(1, task.count()) -- only the spec's own task
  end)

  it("runs <close> variables of a failed task", function()
    local closed = false
    task.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() closed = true end })
      error("x")
    end):wait()
    assert.is_true(closed)
  end)
end)

describe("a script's tasks", function()
  local function run(code)
    return H.nyx({ "-e", code }, { env = { NYX_DATABASE_URL = "host=/nonexistent dbname=x" } })
  end

  it("all finish before nyx exits", function()
    local r = run("nyx.task.spawn(function() nyx.task.sleep(0.05); print('late') end); print('main done')")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("main done\nlate\n", r.out)
  end)

  it("report failures nobody waited for", function()
    local r = run("nyx.task.spawn(function() error('lost in the background') end)")
    assert.are.equal(0, r.code)
    assert.matches("^nyx: task %d+ failed and nobody waited for it: %(command line%):1: lost in the background\nstack traceback:", r.err)
  end)

  it("end with an error when everything waits for nothing", function()
    local r = run([[
      local a, b
      a = nyx.task.spawn(function() nyx.task.sleep(0); return b:wait() end)
      b = nyx.task.spawn(function() nyx.task.sleep(0); return a:wait() end)
      a:wait()
    ]])
    assert.are.equal(1, r.code)
    assert.matches("deadlock: waiting for something that can never happen", r.err)
  end)
end)
