-- Steering a live tree from another process: task cancellation, LISTEN/
-- NOTIFY on the loop (nyx.db.listen/notify), node:cancel() and node:retry()
-- of a tree a child nyx process runs, nyx.config.set applied at once. Real
-- processes, a real PostgreSQL, the offline model.
local H = require "tests.lua.helper"
local db = nyx.db
local now = nyx.core.now

local dir, dbname

local function one(sql, ...) return db.query(sql, ...)[1] end

-- Waits (yielding) until pred() is true; fails after `limit` seconds.
local function wait_for(what, limit, pred)
  local t0 = now()
  while not pred() do
    if now() - t0 > limit then error("timed out waiting for " .. what, 2) end
    nyx.task.sleep(0.02)
  end
  return now() - t0
end

local function strategy(name, code) H.write(dir .. "/strategies/" .. name .. ".lua", code) end

-- Starts `code` in a child nyx (a task running nyx.proc.run); returns the
-- task's handle: h:wait() gives true, {exit_code =, stdout =, stderr =}.
local function child(name, code, extra_env)
  local script = H.write(dir .. "/" .. name .. ".lua",
    ("package.path = %q .. '/?.lua;' .. package.path\n"):format(dir) .. code)
  return nyx.task.spawn(nyx.proc.run, { argv = { H.bin, script }, timeout = 60,
    env = H.env_for(dbname, extra_env or {}) })
end

local function finished(h)
  local ok, r = h:wait()
  assert(ok, tostring(r))
  return r
end

local function root_by_goal(goal)
  return one("SELECT id FROM thought_trees WHERE goal = $1 AND parent_id IS NULL", goal)
end

local function node_by_goal(root, goal)
  return nyx.tree.get(one("SELECT id FROM thought_trees WHERE root_id = $1 AND goal = $2", root, goal).id)
end

describe("steering", function()
  setup(function()
    dbname = H.fresh_db()
    dir = H.tmpdir()
    os.execute("mkdir -p " .. dir .. "/strategies")
    package.path = dir .. "/?.lua;" .. package.path
    -- the root splits in two: a slow branch (an agent making LLM calls one
    -- after the other, one running a 30 s process) and a quick one
    strategy("steer_root", [[
      local M = {}
      function M.run(node, ctx)
        local kids = ctx:children{ "slow branch", "quick branch" }
        local rs = ctx:wait_all{ ctx:orchestrate(kids[1], { strategy = "steer_slow" }),
                                 ctx:orchestrate(kids[2], { strategy = "steer_quick" }) }
        local out = {}
        for i, r in ipairs(rs) do
          out[i] = r.ok and "ok" or (type(r.error) == "table" and r.error.type or tostring(r.error))
        end
        return out
      end
      return M
    ]])
    strategy("steer_slow", [=[
      local M = {}
      function M.run(node, ctx)
        local calls = ctx:spawn{ goal = "slow calls", run = function(agent)
          for i = 1, 100 do
            agent:complete{ max_tokens = 16, messages = { { role = "user", content = "step " .. i .. " [[fake:delay_ms=300]]" } } }
          end
          return "all calls made"
        end }
        local proc = ctx:spawn{ goal = "slow process", run = function(agent)
          return nyx.proc.run{ argv = { "sleep", "30" } }.exit_code
        end }
        ctx:wait_all{ calls, proc }
        return "slow done"
      end
      return M
    ]=])
    strategy("steer_quick", [[
      local M = {}
      function M.run(node, ctx)
        local h = ctx:spawn{ goal = "quick answer", run = function(agent)
          nyx.task.sleep(tonumber(os.getenv("QUICK_SLEEP") or "1.5"))
          return agent:complete{ max_tokens = 16, messages = { { role = "user", content = "answer" } } }.text
        end }
        local r = ctx:wait_all{ h }
        assert(r[1].ok, tostring(r[1].error))
        return "quick done"
      end
      return M
    ]])
    -- fails unless it is a retry
    strategy("steer_flaky", [[
      local M = {}
      function M.run(node, ctx)
        if (node.metadata.retries or 0) < 1 then error("first attempts fail", 0) end
        return "worked on retry " .. node.metadata.retries
      end
      return M
    ]])
    strategy("steer_pair", [[
      local M = {}
      function M.run(node, ctx)
        local kids = ctx:children{ "flaky part", "long part" }
        local rs = ctx:wait_all{ ctx:orchestrate(kids[1], { strategy = "steer_flaky" }),
                                 ctx:orchestrate(kids[2], { strategy = "steer_quick" }) }
        return { rs[1].ok, rs[2].ok }
      end
      return M
    ]])
  end)
  teardown(function()
    H.rmdir(dir)
    H.drop_db(dbname)
  end)

  describe("nyx.task cancel", function()
    it("raises in the task at its wait, and stops what it waited for", function()
      local h = nyx.task.spawn(function() nyx.task.sleep(30); return "woke" end)
      nyx.task.sleep(0.02)
      local t0 = now()
      assert.is_true(h:cancel())
      assert.is_true(h.cancelled)
      local ok, err = h:wait()
      assert.is_false(ok)
      assert.are.equal("cancelled", err.type)
      assert.is_true(now() - t0 < 1)
      assert.is_false(h:cancel()) -- already over

      -- a call in flight is aborted, and still logged (once)
      local node = nyx.tree.create{ goal = "a call to abort" }
      h = nyx.task.spawn(function()
        return nyx.llm.complete{ tree = node, max_tokens = 8, messages = { { role = "user", content = "hi [[fake:delay_ms=20000]]" } } }
      end)
      wait_for("the request", 5, function() return nyx.llm.in_flight() == 1 end)
      h:cancel()
      ok, err = h:wait()
      assert.is_false(ok)
      assert.are.equal("cancelled", err.type)
      assert.are.equal(0, nyx.llm.in_flight())
      db.flush()
      local row = one("SELECT count(*) AS n, min(error_message) AS e, bool_or(success) AS ok FROM llm_interactions WHERE thought_tree_id = $1", node.id)
      assert.are.equal(1, row.n)
      assert.is_false(row.ok)
      assert.matches("^cancelled:", row.e)

      -- a process is killed; a caught cancellation raises again at the next wait
      h = nyx.task.spawn(function()
        local caught = pcall(nyx.proc.run, { argv = { "sleep", "30" } })
        nyx.task.sleep(30)
        return caught
      end)
      wait_for("the process", 5, function() return nyx.proc.running() == 1 end)
      h:cancel("stop it")
      ok, err = h:wait()
      assert.is_false(ok)
      assert.are.equal("stop it", err)
      assert.are.equal(0, nyx.proc.running())
    end)
  end)

  describe("nyx.db.listen and notify", function()
    it("runs the function as a task for each notification, in order", function()
      local got = {}
      local fn = function(payload, channel, pid) got[#got + 1] = { payload, channel, pid, nyx.task.current() ~= nil } end
      db.listen("nyx_spec_chan", fn)
      db.listen("nyx_spec_chan", fn) -- the same function once
      db.notify("nyx_spec_chan", "one")
      db.notify("nyx_spec_chan", "two")
      db.notify("nyx_spec_other", "not listened to")
      wait_for("two notifications", 5, function() return #got == 2 end)
      nyx.task.sleep(0.1)
      assert.are.equal(2, #got)
      assert.are.same({ "one", "nyx_spec_chan" }, { got[1][1], got[1][2] })
      assert.are.equal("two", got[2][1])
      assert.are.equal(one("SELECT pg_backend_pid() AS p").p, got[1][3])
      assert.is_true(got[1][4])
      -- from another process too
      local r = H.nyx({ "-e", "nyx.db.notify('nyx_spec_chan', 'from a child')" }, { env = H.env_for(dbname) })
      assert.are.equal(0, r.code, r.err)
      wait_for("the child's notification", 5, function() return #got == 3 end)
      assert.are.equal("from a child", got[3][1])
      db.unlisten("nyx_spec_chan")
      db.notify("nyx_spec_chan", "after")
      nyx.task.sleep(0.2)
      assert.are.equal(3, #got)
    end)

    it("refuses a bad channel with a clear message", function()
      assert.has_error(function() db.listen("Bad Channel", print) end,
        "bad argument #1 to 'listen' (channel must be a lowercase identifier of letters, digits and _ (at most 63), e.g. \"nyx_control\")")
      assert.has_error(function() db.notify("x;drop", "p") end)
      assert.has_error(function() db.listen("ok_name", 42) end)
    end)
  end)

  it("cancels a subtree a child process runs: its agents end, the rest goes on", function()
    local h = child("cancel_sub", [[
      local root = nyx.tree.create{ goal = "steer a subtree" }
      local ok, res = nyx.orchestrate(root, { strategy = "steer_root" })
      print(ok, nyx.json.encode(res))
    ]])
    local root
    wait_for("the child's tree", 20, function() root = root_by_goal("steer a subtree"); return root ~= nil end)
    local active = [[SELECT count(*) AS n FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
                     WHERE t.root_id = $1 AND t.goal IN ('slow calls', 'slow process') AND a.status = 'active']]
    wait_for("the slow agents", 20, function()
      return one(active, root.id).n == 2 and
             one("SELECT count(*) AS n FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id WHERE t.root_id = $1", root.id).n >= 1
    end)
    local slow = node_by_goal(root.id, "slow branch")
    local marked = slow:cancel()
    local t_cancel = now()
    assert.are.equal(3, marked) -- the branch and its two agents' nodes
    assert.are.equal("cancelled", slow.status)
    local took = wait_for("the agents to end", 10, function() return one(active, root.id).n == 0 end)
    assert.is_true(took < 1.5, ("the agents ended %.2f s after the cancel"):format(took))
    local r = finished(h)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.is_true(now() - t_cancel < 20)
    assert.matches('true\t%["cancelled","ok"%]', r.stdout)
    assert.matches("nyx: node " .. slow.id:gsub("%-", "%%-") .. " cancelled by pid %d+ on [^:]+: 2 agents, 1 orchestrator stopped", r.stderr)
    -- what was recorded
    for _, n in ipairs(slow:subtree()) do
      assert.are.equal("cancelled", n.status, n.goal)
      assert.matches("^pid %d+ on ", n.metadata.cancelled.by)
      assert.is_not_nil(n.metadata.cancelled.at)
    end
    local agents = db.query([[SELECT t.goal, a.status FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
                              WHERE t.root_id = $1 ORDER BY t.goal]], root.id)
    assert.are.same({ { goal = "quick answer", status = "completed" }, { goal = "slow calls", status = "terminated" },
                      { goal = "slow process", status = "terminated" } }, agents)
    assert.are.equal("paused", one("SELECT status FROM orchestrators WHERE thought_tree_id = $1", slow.id).status)
    assert.are.equal("completed", node_by_goal(root.id, "quick branch").status)
    local rootn = nyx.tree.get(root.id)
    assert.are.equal("completed", rootn.status)
    assert.are.same({ "cancelled", "ok" }, rootn.metadata.result)
    -- no call on the cancelled subtree started once its agents were stopped
    local calls = one([[SELECT count(*) AS n,
        count(*) FILTER (WHERE i.request_timestamp > (SELECT min(a.completed_at) FROM agents a
          JOIN thought_trees s ON s.id = a.thought_tree_id WHERE s.parent_id = $1)) AS late,
        count(*) FILTER (WHERE i.error_message LIKE 'cancelled:%') AS aborted
      FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id WHERE t.parent_id = $1]], slow.id)
    assert.are.equal(0, calls.late)
    assert.is_true(calls.n >= 1 and calls.n < 20, "calls on the slow branch: " .. calls.n)
    assert.are.equal(1, calls.aborted) -- the one in flight, aborted
  end)

  it("cancels a whole tree with t:cancel(), and leaves the process's other tree alone", function()
    local h = child("cancel_all", [[
      local a = nyx.task.spawn(function()
        local ok, err = nyx.orchestrate("tree to cancel", { strategy = "steer_root" })
        return ok, err and err.type
      end)
      local b = nyx.task.spawn(function() return nyx.orchestrate("tree to keep", { strategy = "steer_quick" }) end)
      print("cancelled tree:", select(2, a:wait()))
      print("kept tree:", select(2, b:wait()))
    ]], { QUICK_SLEEP = "2" })
    local root
    wait_for("the child's trees", 20, function()
      root = root_by_goal("tree to cancel")
      return root ~= nil and root_by_goal("tree to keep") ~= nil and
             one("SELECT count(*) AS n FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id WHERE t.root_id = $1 AND a.status = 'active'", root.id).n >= 3
    end)
    local t = nyx.tree.get(root.id)
    assert.is_true(t:cancel() >= 6)
    local r = finished(h)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.matches("cancelled tree:\tfalse\tcancelled", r.stdout)
    assert.matches("kept tree:\ttrue", r.stdout)
    local s = one([[SELECT count(*) FILTER (WHERE status <> 'cancelled') AS other, count(*) AS n
                    FROM thought_trees WHERE root_id = $1]], root.id)
    assert.are.equal(0, s.other)
    local live = one([[SELECT count(*) FILTER (WHERE a.status NOT IN ('terminated')) AS n FROM agents a
                       JOIN thought_trees t ON t.id = a.thought_tree_id WHERE t.root_id = $1]], root.id)
    assert.are.equal(0, live.n)
    assert.are.equal(0, one([[SELECT count(*) AS n FROM orchestrators o JOIN thought_trees t ON t.id = o.thought_tree_id
                              WHERE t.root_id = $1 AND o.status <> 'paused']], root.id).n)
    local kept = root_by_goal("tree to keep")
    assert.are.equal("completed", nyx.tree.get(kept.id).status)
  end)

  it("retries a failed node in the engine that runs its tree", function()
    local h = child("retry_live", [[
      local ok, res = nyx.orchestrate("retry while it runs", { strategy = "steer_pair" })
      print(ok, nyx.json.encode(res))
    ]], { QUICK_SLEEP = "4" })
    local root
    wait_for("the child's tree", 20, function() root = root_by_goal("retry while it runs"); return root ~= nil end)
    local flaky
    wait_for("the first attempt to fail", 20, function()
      local r = one("SELECT id FROM thought_trees WHERE root_id = $1 AND goal = 'flaky part' AND status = 'failed'", root.id)
      flaky = r and nyx.tree.get(r.id)
      return flaky ~= nil
    end)
    assert.matches("^first attempts fail", flaky.metadata.error)
    local where, by = flaky:retry()
    assert.are.equal("engine", where)
    assert.matches("^pid %d+ on ", by)
    wait_for("the retry to complete", 10, function() return flaky:refresh().status == "completed" end)
    assert.are.equal(1, flaky.metadata.retries)
    assert.are.equal("worked on retry 1", flaky.metadata.result)
    assert.are.equal("failed", flaky.metadata.attempts[1].status)
    assert.matches("^first attempts fail", flaky.metadata.attempts[1].error)
    assert.matches("^pid %d+ on ", flaky.metadata.attempts[1].retried_by)
    local orch = db.query("SELECT status, orchestrator_type, parent_orchestrator_id FROM orchestrators WHERE thought_tree_id = $1 ORDER BY created_at", flaky.id)
    assert.are.equal(2, #orch)
    assert.are.same({ "failed", "completed" }, { orch[1].status, orch[2].status })
    assert.are.equal("sub", orch[2].orchestrator_type) -- under its parent's orchestrator, still running
    local r = finished(h)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.matches("node " .. flaky.id:gsub("%-", "%%-") .. " retried", r.stderr)
    -- the parent was not told again: it had the first attempt's failure
    assert.matches("true\t%[false,true%]", r.stdout)
    assert.has_error(function() flaky:retry() end,
      ("cannot retry node %s: it is completed (only a failed or cancelled node is retried)"):format(flaky.id))
  end)

  it("retries a node here when no engine runs its tree", function()
    local ok, _, o = nyx.orchestrate("retry with nobody running it", { strategy = "steer_flaky" })
    assert.is_false(ok)
    local node = nyx.tree.get(o.node.id)
    assert.are.equal("failed", node.status)
    local t0 = now()
    local where, okr, res = node:retry()
    assert.are.equal("here", where)
    assert.is_true(okr, tostring(res))
    assert.are.equal("worked on retry 1", res)
    assert.is_true(now() - t0 < 5)
    assert.are.equal("completed", node.status)
    assert.are.equal(1, node.metadata.retries)
    assert.matches("^first attempts fail", node.metadata.attempts[1].error)
    -- a cancelled node too, and the count goes on
    node:set_status("cancelled")
    where, okr = node:retry()
    assert.are.equal("here", where)
    assert.is_true(okr)
    assert.are.equal(2, node.metadata.retries)
    assert.are.equal(2, #node.metadata.attempts)
    assert.are.equal("cancelled", node.metadata.attempts[2].status)
  end)

  it("applies nyx.config.set in a running engine at once", function()
    strategy("steer_many", [[
      local M = { }
      function M.run(node, ctx)
        local hs = {}
        for i = 1, 40 do
          hs[i] = ctx:spawn{ goal = "agent " .. i, run = function()
            print(("sample %.4f %d"):format(nyx.core.now(), nyx.runtime.stats().active))
            nyx.task.sleep(0.25)
          end }
        end
        ctx:wait_all(hs)
        return "done"
      end
      return M
    ]])
    nyx.config.set("max_concurrent_agents", 10)
    local h = child("config_live", [[
      nyx.config.ttl = 3600 -- only the notification can make a change seen
      io.stdout:setvbuf("line")
      print(nyx.orchestrate("many agents", { strategy = "steer_many", max_concurrent_agents = 100 }))
    ]])
    wait_for("a first wave", 20, function()
      local r = root_by_goal("many agents")
      return r and one([[SELECT count(*) AS n FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
                         WHERE t.root_id = $1 AND a.status = 'completed']], r.id).n >= 10
    end)
    nyx.config.set("max_concurrent_agents", 3)
    local changed = now()
    local r = finished(h)
    nyx.config.set("max_concurrent_agents", 10)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.matches("nyx: max_concurrent_agents changed to 3 by pid %d+ on ", r.stderr)
    local before, after, n_after = 0, 0, 0
    for t, active in r.stdout:gmatch("sample (%S+) (%d+)") do
      t, active = tonumber(t), tonumber(active)
      if t < changed then before = math.max(before, active) end
      if t > changed + 0.3 then after = math.max(after, active); n_after = n_after + 1 end
    end
    assert.is_true(before > 3, "the first limit was not used: " .. before)
    assert.is_true(n_after >= 10, "agents started after the change: " .. n_after)
    assert.is_true(after <= 3, "peak after the change: " .. after)
    local updated = one("SELECT updated_at > created_at AS later FROM system_config WHERE config_key = 'max_concurrent_agents'")
    assert.is_true(updated.later)
  end)
end)
