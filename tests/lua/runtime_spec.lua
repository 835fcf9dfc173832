-- The orchestration runtime: nyx.orchestrate, strategies, agents, the
-- limits nyx.limits enforces, budgets, messages, hot reload, Ctrl-C. Runs
-- against the offline model (a real HTTP server on loopback) and a fresh
-- database.
local H = require "tests.lua.helper"
local runtime = nyx.runtime
local db = nyx.db
local now = nyx.core.now

local dir, dbname

local function strategy(name, code)
  H.write(dir .. "/strategies/" .. name .. ".lua", code)
end

local function q(sql, ...) return db.query(sql, ...) end
local function one(sql, ...) return db.query(sql, ...)[1] end

describe("the runtime", function()
  setup(function()
    dbname = H.fresh_db()
    dir = H.tmpdir()
    os.execute("mkdir -p " .. dir .. "/strategies " .. dir .. "/agents")
    package.path = dir .. "/?.lua;" .. package.path
  end)
  teardown(function()
    H.rmdir(dir)
    H.drop_db(dbname)
  end)
  before_each(function()
    nyx.config.set("max_concurrent_agents", 50)
    nyx.config.set("max_recursion_depth", 10)
  end)

  it("decomposes a goal into a tree: statuses, rows and the strategy's version recorded", function()
    local ok, result, o = nyx.orchestrate("Write a guide to brewing tea", { strategy = "decompose" })
    assert.is_true(ok, tostring(result))
    assert.matches("leaf at depth 2", result)
    local root = nyx.tree.get(o.node.id)
    assert.are.equal("completed", root.status)
    local nodes = root:subtree()
    assert.are.equal(13, #nodes) -- the offline model: 3 subtasks per node down to depth 2
    for _, n in ipairs(nodes) do
      assert.are.equal("completed", n.status)
      assert.is_not_nil(n.completed_at)
      assert.is_not_nil(n.metadata.result)
      -- split: a sub-orchestrator ran decompose on it; else the planner its
      -- parent's decompose started answered it (no orchestrator): either way
      -- the version of the strategy that worked it is recorded
      assert.are.equal("decompose", n.metadata.strategy.name)
      assert.matches("^%x+$", n.metadata.strategy.version)
      if n.depth == 2 then
        assert.are.equal("string", type(n.metadata.result))
        assert.matches("leaf at depth 2", n.metadata.result)
      end
    end
    local orch = q([[SELECT o.* FROM orchestrators o JOIN thought_trees t ON t.id = o.thought_tree_id
                     WHERE t.root_id = $1 ORDER BY t.depth]], root.id)
    assert.are.equal(4, #orch) -- the root and the 3 nodes that were split
    assert.are.equal("top_level", orch[1].orchestrator_type)
    assert.is_nil(orch[1].parent_orchestrator_id)
    for i = 2, #orch do
      assert.are.equal("sub", orch[i].orchestrator_type)
      assert.is_not_nil(orch[i].parent_orchestrator_id)
    end
    for _, r in ipairs(orch) do
      assert.are.equal("completed", r.status)
      assert.are.equal(0, r.current_active_agents)
      assert.is_not_nil(r.completed_at)
    end
    -- every sub-orchestrator's parent is the orchestrator of its node's parent
    local bad = one([[SELECT count(*) AS n FROM orchestrators o JOIN thought_trees t ON t.id = o.thought_tree_id
                      JOIN orchestrators p ON p.id = o.parent_orchestrator_id
                      WHERE t.root_id = $1 AND p.thought_tree_id <> t.parent_id]], root.id).n
    assert.are.equal(0, bad)
    local agents = q([[SELECT a.* FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
                       WHERE t.root_id = $1]], root.id)
    assert.are.equal(13, #agents) -- one planner on each node
    assert.are.equal(13, one([[SELECT count(DISTINCT a.thought_tree_id) AS n FROM agents a
                               JOIN thought_trees t ON t.id = a.thought_tree_id WHERE t.root_id = $1]], root.id).n)
    for _, a in ipairs(agents) do
      assert.are.equal("completed", a.status)
      assert.are.equal("planner", a.agent_class)
      assert.are.equal("task", a.agent_type)
      assert.is_not_nil(a.completed_at)
      assert.is_not_nil(a.state.result)
    end
    -- every call belongs to its node and its agent
    local calls = one([[SELECT count(*) AS n, count(agent_id) AS with_agent FROM llm_interactions i
                        JOIN thought_trees t ON t.id = i.thought_tree_id WHERE t.root_id = $1]], root.id)
    assert.are.equal(13, calls.n)
    assert.are.equal(13, calls.with_agent)
  end)

  it("keeps active agents within the process's and the orchestrator's limits, FIFO", function()
    strategy("fanout", [[
      local M = {}
      M.log = {}
      function M.run(node, ctx)
        local hs = {}
        for i = 1, 30 do
          hs[i] = ctx:spawn{ type = "task", class = "sleeper", goal = "leaf " .. i, run = function(agent)
            M.log[#M.log + 1] = { ctx.id, i }
            local s = nyx.runtime.stats()
            M.peak_global = math.max(M.peak_global or 0, s.active)
            M.peak_orch = math.max(M.peak_orch or 0, ctx.active)
            nyx.task.sleep(0.01)
            return i
          end }
        end
        local sum = 0
        for _, r in ipairs(ctx:wait_all(hs)) do assert(r.ok, r.error); sum = sum + r.result end
        return sum
      end
      return M
    ]])
    nyx.config.set("max_concurrent_agents", 4)
    runtime.reset_peak()
    local M = runtime.load_strategy("fanout")
    -- two orchestrators at once: 3 each by their own limit, 4 in all
    local hs = {}
    for i = 1, 2 do
      hs[i] = nyx.task.spawn(nyx.orchestrate, "fan out " .. i, { strategy = "fanout", max_concurrent_agents = 3 })
    end
    local t = {}
    for i, h in ipairs(hs) do
      local ok, okr, sum, o = h:wait()
      assert.is_true(ok and okr, tostring(sum))
      assert.are.equal(465, sum)
      t[i] = o
    end
    assert.is_true(M.peak_global <= 4, "process peak " .. M.peak_global)
    assert.are.equal(4, M.peak_global) -- the limit was reached, not just respected
    assert.is_true(M.peak_orch <= 3, "orchestrator peak " .. M.peak_orch)
    assert.is_true(runtime.stats().peak <= 4)
    -- each orchestrator's agents start in about the order they were
    -- spawned: each pool is FIFO (see the nyx.limits test below); an agent
    -- granted its two slots in one turn may start just after a later one
    local pos, started = {}, 0
    for k, e in ipairs(M.log) do
      pos[e[1]] = pos[e[1]] or {}
      pos[e[1]][e[2]] = k
      started = started + 1
    end
    for _, p in pairs(pos) do
      for i = 1, 30 do
        for j = i + 3, 30 do assert.is_true(p[i] < p[j], ("agent %d started after agent %d"):format(i, j)) end
      end
    end
    assert.are.equal(60, started)
    for _, o in ipairs(t) do
      local r = one("SELECT current_active_agents, max_concurrent_agents, status FROM orchestrators WHERE id = $1", o.id)
      assert.are.same({ current_active_agents = 0, max_concurrent_agents = 3, status = "completed" }, r)
    end
  end)

  it("starts sub-orchestrators as slots free up, in order, and cancels those still waiting to start", function()
    strategy("gated", [[
      local M = { log = {}, live = 0, peak_live = 0, peak_waiting = 0 }
      function M.run(node, ctx)
        if node.depth == 0 then
          local goals = {}
          for i = 1, 60 do goals[i] = "leaf " .. i end
          local kids = ctx:children(goals)
          local hs = {}
          for i, kid in ipairs(kids) do hs[i] = ctx:orchestrate(kid) end
          M.cancelled = nyx.runtime.cancel_local(kids[60].id, { by = "the test" })
          M.kids = kids
          return ctx:wait_all(hs)
        end
        -- a started sub-orchestrator: one agent, a little work
        M.live = M.live + 1
        M.peak_live = math.max(M.peak_live, M.live)
        local i = tonumber(node.goal:match("%d+"))
        local ok, r = ctx:spawn{ type = "task", node = node, run = function()
          M.log[#M.log + 1] = i
          M.peak_waiting = math.max(M.peak_waiting, nyx.runtime.stats().waiting)
          nyx.task.sleep(0.01)
          return i
        end }:wait()
        M.live = M.live - 1
        assert(ok, r)
        return r
      end
      return M
    ]])
    nyx.config.set("max_concurrent_agents", 4)
    local M = runtime.load_strategy("gated")
    local ok, rs, o = nyx.orchestrate("sixty leaves, four slots", { strategy = "gated" })
    assert.is_true(ok, tostring(rs))
    -- without the gate all 60 would have started at once, 56 agents queued
    assert.is_true(M.peak_live <= 12, "sub-orchestrators running at once: " .. M.peak_live)
    assert.is_true(M.peak_waiting <= 8, "agents waiting for a slot at once: " .. M.peak_waiting)
    -- they start in the order they were asked for (a burst may swap neighbours)
    local pos = {}
    for k, i in ipairs(M.log) do pos[i] = k end
    for i = 1, 59 do
      for j = i + 3, 59 do assert.is_true(pos[i] < pos[j], ("leaf %d started after leaf %d"):format(i, j)) end
    end
    -- the one cancelled while it waited never started: no orchestrator, no agent
    assert.are.same({ agents = 0, orchestrators = 1 }, M.cancelled)
    assert.is_nil(pos[60])
    for i = 1, 59 do assert.is_true(rs[i].ok and rs[i].result == i, tostring(rs[i].error)) end
    assert.is_false(rs[60].ok)
    assert.are.equal("cancelled", rs[60].error.type)
    nyx.db.flush()
    local last = M.kids[60].id
    assert.are.equal("cancelled", one("SELECT status FROM thought_trees WHERE id = $1", last).status)
    assert.are.equal(0, one("SELECT count(*) AS n FROM orchestrators WHERE thought_tree_id = $1", last).n)
    assert.are.equal(0, one("SELECT count(*) AS n FROM agents WHERE thought_tree_id = $1", last).n)
    local done = one([[SELECT count(*) FILTER (WHERE t.status = 'completed') AS nodes, count(DISTINCT o.id) AS orchs
                       FROM thought_trees t LEFT JOIN orchestrators o ON o.thought_tree_id = t.id
                       WHERE t.parent_id = $1]], o.node.id)
    assert.are.same({ nodes = 59, orchs = 59 }, done)
    -- nothing is left counted at the gate: a later tree starts as freely
    local st = runtime.stats()
    assert.are.same({ starting = 0, gated = 0, waiting = 0 }, { starting = st.starting, gated = st.gated, waiting = st.waiting })
  end)

  it("keeps the start gate's count true when what it counts is cancelled before it ever ran", function()
    strategy("cancel_early", [[
      local M = {}
      function M.run(node, ctx)
        if node.depth == 0 then
          local kids = ctx:children({ "a", "b", "c", "d", "e", "f", "g", "h" })
          local hs = {}
          for i, kid in ipairs(kids) do hs[i] = ctx:orchestrate(kid) end
          -- cancelled in the same turn: some of these tasks never run
          for i = 1, 6 do nyx.runtime.cancel_local(kids[i].id, { by = "the test" }) end
          local out = {}
          for i, r in ipairs(ctx:wait_all(hs)) do out[i] = r.ok end
          return out
        end
        local hs = {}
        for i = 1, 3 do hs[i] = ctx:spawn{ type = "task", goal = node.goal .. i, run = function() nyx.task.sleep(0.01); return i end } end
        -- the agents spawned here are cancelled before they run
        nyx.runtime.cancel_local(node.id, { by = "the test" })
        local ok = 0
        for _, r in ipairs(ctx:wait_all(hs)) do if r.ok then ok = ok + 1 end end
        return ok
      end
      return M
    ]])
    nyx.config.set("max_concurrent_agents", 2)
    for _ = 1, 3 do
      local ok, rs, o = nyx.orchestrate("cancelled early", { strategy = "cancel_early" })
      assert.is_true(ok, tostring(rs))
      assert.are.equal(8, #rs)
      local st = runtime.stats()
      assert.are.same({ starting = 0, gated = 0, waiting = 0, active = 0 },
        { starting = st.starting, gated = st.gated, waiting = st.waiting, active = st.active })
      -- and every one of them is recorded as ended, whether it ran or not
      nyx.db.flush()
      local left = one([[SELECT
          (SELECT count(*) FROM thought_trees WHERE root_id = $1 AND status IN ('pending', 'in_progress')) AS nodes,
          (SELECT count(*) FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
            WHERE t.root_id = $1 AND a.status IN ('spawned', 'active')) AS agents,
          (SELECT count(*) FROM orchestrators r JOIN thought_trees t ON t.id = r.thought_tree_id
            WHERE t.root_id = $1 AND r.status = 'active') AS orchestrators]], o.node.id)
      assert.are.same({ nodes = 0, agents = 0, orchestrators = 0 }, left)
    end
  end)

  it("holds new LLM calls back while the log writer's backlog is over log_backlog_max, and still writes everything", function()
    local saved = runtime.log_backlog_max
    runtime.log_backlog_max = 8 -- an agent's row alone is more
    local before = runtime.stats().backpressure
    local pok, ok, r, o = pcall(nyx.orchestrate, "Write a guide to brewing tea", { strategy = "decompose" })
    runtime.log_backlog_max = saved
    assert.is_true(pok, tostring(ok))
    assert.is_true(ok, tostring(r))
    assert.is_true(runtime.stats().backpressure > before)
    local root = o.node.id
    nyx.db.flush()
    assert.are.same({ nodes = 13, done = 13, calls = 13 }, one([[SELECT count(*) AS nodes,
        count(*) FILTER (WHERE status = 'completed') AS done,
        (SELECT count(*) FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id WHERE t.root_id = $1) AS calls
      FROM thought_trees WHERE root_id = $1]], root))
  end)

  it("scores a child judged by its parent as it was when it finished: its time and its children's outcome stay", function()
    strategy("judged", [[
      return { run = function(node, ctx)
        if node.depth == 0 then
          local ok, r = ctx:orchestrate(ctx:child("judged child")):wait()
          assert(ok, r)
          nyx.task.sleep(0.5) -- the parent goes on well after the child ended
          return "parent of: " .. r
        end
        local hs = {}
        for i = 1, 2 do
          hs[i] = ctx:spawn{ type = "task", goal = "leaf " .. i, run = function()
            if i == 2 then error("leaf 2 failed") end
            return "leaf 1 done"
          end }
        end
        ctx:wait_all(hs)
        return "half done"
      end }
    ]])
    local ok, r, o = nyx.orchestrate("judge a child", { strategy = "judged" })
    assert.is_true(ok, tostring(r))
    local child = one([[SELECT success_score::float8 AS s, speed_score::float8 AS sp, usefulness_score::float8 AS u
                        FROM thought_trees WHERE parent_id = $1]], o.node.id)
    assert.are.equal(1, child.u) -- judged: its result is in the parent's
    assert.are.equal(0.75, child.s) -- one of its two children failed, as when it finished
    -- it took milliseconds against an expected 11,250 ms: not the 500 ms more its parent took
    assert.is_true(child.sp > 0.99, "speed " .. child.sp)
  end)

  it("hands a node an agent left open to the next agent or orchestrator on it; one never taken up fails with its orchestrator", function()
    strategy("opener", [[
      local M = {}
      function M.run(node, ctx)
        local kids = ctx:children{ "taken up by an agent", "taken up by an orchestrator", "left alone", "answered" }
        local hs = {}
        for i = 1, 3 do
          hs[i] = ctx:spawn{ type = "task", node = kids[i], run = function(agent)
            agent:leave_open()
            return { plan = i }
          end }
        end
        hs[4] = ctx:spawn{ type = "task", node = kids[4], run = function(agent)
          agent:set_node_result("the node's result")
          return { the_agents = "result" }
        end }
        ctx:wait_all(hs)
        M.between = { kids[1].status, kids[2].status, kids[3].status, kids[4].status }
        local ok1, r1 = ctx:spawn{ type = "task", node = kids[1], run = function() return "by the second agent" end }:wait()
        local ok2, r2 = ctx:orchestrate(kids[2], { strategy = "opened" }):wait()
        assert(ok1 and ok2, tostring(r1) .. tostring(r2))
        return "done"
      end
      return M
    ]])
    strategy("opened", [[ return { run = function(node) return "by the orchestrator, on " .. node.status end } ]])
    local ok, r, o = nyx.orchestrate("leave open", { strategy = "opener" })
    assert.is_true(ok, tostring(r))
    assert.are.same({ "in_progress", "in_progress", "in_progress", "completed" }, runtime.load_strategy("opener").between)
    local rows = q([[SELECT id, goal, status, metadata, (SELECT count(*) FROM agents a WHERE a.thought_tree_id = t.id) AS agents,
                            (SELECT count(*) FROM orchestrators r WHERE r.thought_tree_id = t.id) AS orchs
                     FROM thought_trees t WHERE parent_id = $1 ORDER BY created_at, goal]], o.node.id)
    local by = {}
    for _, row in ipairs(rows) do by[row.goal] = row end
    local a, b, c, d = by["taken up by an agent"], by["taken up by an orchestrator"], by["left alone"], by["answered"]
    assert.are.same({ "completed", "by the second agent", 2, 0 }, { a.status, a.metadata.result, a.agents, a.orchs })
    assert.are.same({ "completed", "by the orchestrator, on in_progress", 1, 1 },
                    { b.status, b.metadata.result, b.agents, b.orchs })
    assert.are.equal("opened", b.metadata.strategy.name)
    assert.are.same({ "failed", 1 }, { c.status, c.agents })
    assert.matches("left open by its agent", c.metadata.error)
    assert.are.same({ "completed", "the node's result" }, { d.status, d.metadata.result })
    -- the agent's own result stays its own
    assert.are.same({ the_agents = "result" }, one("SELECT state FROM agents WHERE thought_tree_id = $1", d.id).state.result)
    assert.are.equal("completed", one("SELECT status FROM thought_trees WHERE id = $1", o.node.id).status)
  end)

  it("plans subtasks ahead (S.subtasks): an atomic one gets an answer agent, only a split one a sub-orchestrator, given its plan", function()
    strategy("ahead", [==[
      local S = require "nyx.strategy"
      return { run = function(node, ctx)
        local plan = { subtasks = { { goal = "an atomic one [[fake:plan=atomic]]" }, { goal = "a split one" } } }
        return (S.subtasks(ctx, node, plan, { strategy = "decompose" }, { ahead = true }))
      end }
    ]==])
    local ok, r, o = nyx.orchestrate("plan ahead", { strategy = "ahead" })
    assert.is_true(ok, tostring(r))
    local function node(goal) return one("SELECT * FROM thought_trees WHERE parent_id = $1 AND goal = $2", o.node.id, goal) end
    local function classes(id)
      local out = {}
      for _, a in ipairs(q("SELECT agent_class, status FROM agents WHERE thought_tree_id = $1 ORDER BY created_at", id)) do
        out[#out + 1] = a.agent_class .. ":" .. a.status
      end
      return table.concat(out, ",")
    end
    local function orchs(id) return one("SELECT count(*) AS n FROM orchestrators WHERE thought_tree_id = $1", id).n end
    local function calls(id) return one("SELECT count(*) AS n FROM llm_interactions WHERE thought_tree_id = $1", id).n end
    local atomic, split = node("an atomic one [[fake:plan=atomic]]"), node("a split one")
    assert.are.same({ "completed", "planner:completed,answer:completed", 0, 2 },
                    { atomic.status, classes(atomic.id), orchs(atomic.id), calls(atomic.id) })
    assert.matches("^Offline answer", atomic.metadata.result)
    -- planned once, by the parent's planner: the sub-orchestrator took that plan
    assert.are.same({ "completed", "planner:completed", 1, 1 }, { split.status, classes(split.id), orchs(split.id), calls(split.id) })
    assert.are.equal("decompose", split.metadata.strategy.name)
    local kids = q("SELECT id, status, metadata FROM thought_trees WHERE parent_id = $1", split.id)
    assert.are.equal(3, #kids)
    for _, k in ipairs(kids) do
      assert.are.same({ "completed", "planner:completed", 0 }, { k.status, classes(k.id), orchs(k.id) })
      assert.matches("leaf at depth 2", k.metadata.result)
    end
    assert.matches("1%. an atomic one.*Offline answer.*2%. a split one.*leaf at depth 2", r)
  end)

  it("cancels a node left open: what is started on it after ends at once, cancelled", function()
    strategy("open_cancel", [[
      return { run = function(node, ctx)
        local kid = ctx:child("left open, then cancelled")
        assert(ctx:spawn{ type = "task", node = kid, run = function(agent) agent:leave_open(); return 1 end }:wait())
        nyx.runtime.cancel_local(kid.id, { by = "the test" })
        local ok1, e1 = ctx:orchestrate(kid):wait()
        local ok2, e2 = ctx:spawn{ type = "task", node = kid, run = function() return "ran" end }:wait()
        return { ok1, e1.type, ok2, e2.type, kid.status }
      end }
    ]])
    local ok, r, o = nyx.orchestrate("cancel what is left open", { strategy = "open_cancel" })
    assert.is_true(ok, tostring(r))
    assert.are.same({ false, "cancelled", false, "cancelled", "cancelled" }, r)
    local kid = one("SELECT status, metadata FROM thought_trees WHERE parent_id = $1", o.node.id)
    assert.are.equal("cancelled", kid.status)
    assert.are.equal("the test", kid.metadata.cancelled.by)
    assert.are.equal(0, one([[SELECT count(*) AS n FROM orchestrators r JOIN thought_trees t ON t.id = r.thought_tree_id
                              WHERE t.parent_id = $1]], o.node.id).n)
  end)

  it("writes a sub-orchestrator's row once it has run for orchestrator_row_delay, or when it ends", function()
    strategy("subs", [[
      local M = {}
      function M.run(node, ctx)
        if node.depth == 0 then
          local kids = ctx:children{ "quick", "slow" }
          M.quick = ctx:orchestrate(kids[1])
          M.slow = ctx:orchestrate(kids[2])
          return #ctx:wait_all{ M.quick, M.slow }
        end
        if node.goal == "slow" then M.release:wait() end
        return node.goal
      end
      return M
    ]])
    local M = runtime.load_strategy("subs")
    M.release = nyx.limits.event()
    local delay = runtime.orchestrator_row_delay
    runtime.orchestrator_row_delay = 2
    local function row(h)
      db.flush()
      return one("SELECT status, completed_at, current_active_agents, parent_orchestrator_id FROM orchestrators WHERE id = $1", h.id)
    end
    local h = nyx.task.spawn(nyx.orchestrate, "two sub-orchestrators", { strategy = "subs" })
    while not M.slow do nyx.task.sleep(0.005) end
    nyx.task.sleep(0.05)
    local quick, slow = row(M.quick), row(M.slow)
    assert.are.equal("completed", quick.status) -- it ended: one row, final
    assert.is_not_nil(quick.completed_at)
    assert.is_nil(slow) -- running for less than the delay: not yet written
    runtime.orchestrator_row_delay = 0.05 -- the next look (within 0.5 s) finds it due
    nyx.task.sleep(0.8)
    slow = row(M.slow)
    assert.are.equal("active", slow.status) -- running past it: written, as it is
    assert.is_nil(slow.completed_at)
    M.release:set()
    local ok, okr, n, o = h:wait()
    runtime.orchestrator_row_delay = delay
    assert.is_true(ok and okr, tostring(n))
    assert.are.equal(2, n)
    slow = row(M.slow)
    assert.are.same({ "completed", 0, o.id }, { slow.status, slow.current_active_agents, slow.parent_orchestrator_id })
  end)

  it("nyx.limits: a pool grants its slots in FIFO order, without spinning, and a new limit applies at once", function()
    local pool = nyx.limits.pool(2, "test")
    local order, hs = {}, {}
    for i = 1, 10 do
      hs[i] = nyx.task.spawn(function()
        pool:acquire()
        order[#order + 1] = i
        nyx.task.sleep(0.01 * (11 - i)) -- later ones finish sooner: order must not follow
        pool:release()
      end)
    end
    nyx.task.sleep(0.005)
    local st = pool:stats()
    assert.are.same({ limit = 2, active = 2, peak = 2, waiting = 8 }, { limit = st.limit, active = st.active, peak = st.peak, waiting = st.waiting })
    assert.are.equal(8, pool:waiting())
    local cpu0 = nyx.core.cpu()
    nyx.task.wait_all(hs)
    assert.is_true(nyx.core.cpu() - cpu0 < 0.5, "waiting for a slot should not burn CPU")
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, order)
    -- raising the limit wakes waiters at once
    local woke = 0
    pool:acquire(); pool:acquire()
    for i = 1, 3 do hs[i] = nyx.task.spawn(function() pool:acquire(); woke = woke + 1 end) end
    nyx.task.sleep(0.01)
    assert.are.equal(0, woke)
    pool:set_limit(5)
    nyx.task.wait_all({ hs[1], hs[2], hs[3] })
    assert.are.equal(3, woke)
    assert.are.equal(5, pool:stats().peak)
    -- a task taking back its slot waits ahead of the queue
    local single = nyx.limits.pool(1)
    single:acquire()
    local seen = {}
    local waiters = {}
    for i, front in ipairs({ false, false, true }) do
      waiters[i] = nyx.task.spawn(function() single:acquire(front); seen[#seen + 1] = i; single:release() end)
    end
    nyx.task.sleep(0.01)
    single:release()
    nyx.task.wait_all(waiters)
    assert.are.same({ 3, 1, 2 }, seen)
    assert.has_error(function() nyx.limits.pool(0) end)
    assert.matches("recursion limit: depth 4 is deeper than max_recursion_depth %(3%)", nyx.limits.depth(4, 3))
    assert.is_nil(nyx.limits.depth(3, 3))
  end)

  it("applies a max_concurrent_agents set by another process while agents run", function()
    strategy("many", [[
      local M = {}
      function M.run(node, ctx)
        local hs = {}
        for i = 1, 60 do
          hs[i] = ctx:spawn{ type = "task", node = node, run = function()
            M.samples[#M.samples + 1] = { nyx.core.now(), nyx.runtime.stats().active }
            nyx.task.sleep(0.3)
          end }
        end
        ctx:wait_all(hs)
      end
      return M
    ]])
    nyx.config.set("max_concurrent_agents", 20)
    local ttl = nyx.config.ttl
    nyx.config.ttl = 0.3 -- how stale a setting may be (1 s by default)
    local M = runtime.load_strategy("many")
    M.samples = {}
    local changed
    local changer = nyx.task.spawn(function()
      nyx.task.sleep(0.1)
      local r = H.nyx({ "-e", 'nyx.config.set("max_concurrent_agents", 3)' }, { env = H.env_for(dbname) })
      assert(r.code == 0, r.err)
      changed = nyx.core.now()
    end)
    local ok, err = nyx.orchestrate("many agents", { strategy = "many", max_concurrent_agents = 100 })
    changer:wait()
    nyx.config.ttl = ttl
    assert.is_true(ok, tostring(err))
    local before, after = 0, 0
    for _, smp in ipairs(M.samples) do
      if smp[1] < changed then before = math.max(before, smp[2]) end
      if smp[1] > changed + nyx.config.ttl + 0.2 then after = math.max(after, smp[2]); assert.is_true(smp[2] <= 3) end
    end
    assert.is_true(before > 3, "the first limit was not used: " .. before)
    assert.is_true(after >= 1, "no agent started after the change")
  end)

  it("completes a depth-6 tree of agents waiting for their children under max_concurrent_agents 2", function()
    strategy("chain", [[
      local M = {}
      local function work(agent, depth)
        if depth == 6 then return 1 end
        local hs = {}
        for i = 1, 2 do
          hs[i] = agent:spawn{ type = "task", goal = ("d%d.%d"):format(depth + 1, i),
                               run = function(a) return work(a, depth + 1) end }
        end
        local n = 1
        for _, r in ipairs(nyx.runtime.wait_all(hs)) do assert(r.ok, r.error); n = n + r.result end
        return n
      end
      function M.run(node, ctx)
        local ok, n = ctx:spawn{ type = "task", node = node, run = function(a) return work(a, 0) end,
                                 max_recursion_depth = 10 }:wait()
        assert(ok, n)
        return n
      end
      return M
    ]])
    nyx.config.set("max_concurrent_agents", 2)
    runtime.reset_peak()
    local ok, n, o = nyx.orchestrate("a deep tree", { strategy = "chain" })
    assert.is_true(ok, tostring(n))
    assert.are.equal(127, n) -- 2^7 - 1 agents
    assert.is_true(runtime.stats().peak <= 2)
    local r = one([[SELECT count(*) AS n, max(t.depth) AS depth, count(*) FILTER (WHERE a.status = 'completed') AS done,
                           count(a.spawned_by) AS spawned
                    FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id WHERE t.root_id = $1]], o.node.id)
    assert.are.same({ n = 127, depth = 6, done = 127, spawned = 126 }, r)
  end)

  it("refuses a node deeper than max_recursion_depth, records it, and the parent answers instead", function()
    nyx.config.set("max_recursion_depth", 1)
    local ok, result, o = nyx.orchestrate("Plan a garden", { strategy = "decompose" })
    assert.is_true(ok, tostring(result))
    local rows = q("SELECT depth, status, metadata FROM thought_trees WHERE root_id = $1 ORDER BY depth", o.node.id)
    local refused, deepest = 0, 0
    for _, r in ipairs(rows) do
      deepest = math.max(deepest, r.depth)
      if r.depth == 2 then
        assert.are.equal("failed", r.status)
        assert.matches("max_recursion_depth", r.metadata.error)
        refused = refused + 1
      else
        assert.are.equal("completed", r.status)
      end
    end
    assert.are.equal(2, deepest)
    assert.are.equal(9, refused)
    -- no orchestrator ran on a refused node, and the planner its parent
    -- spawned there was refused before it ever became active
    assert.are.equal(0, one([[SELECT count(*) AS n FROM orchestrators o JOIN thought_trees t ON t.id = o.thought_tree_id
                              WHERE t.root_id = $1 AND t.depth = 2]], o.node.id).n)
    local planners = q([[SELECT a.status, a.state FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
                         WHERE t.root_id = $1 AND t.depth = 2]], o.node.id)
    assert.are.equal(9, #planners)
    for _, a in ipairs(planners) do
      assert.are.equal("failed", a.status)
      assert.matches("max_recursion_depth", a.state.error)
    end
    assert.are.equal(0, one([[SELECT count(*) AS n FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
                              WHERE t.root_id = $1 AND t.depth = 2]], o.node.id).n)
    -- each refused subtask was answered by an answer agent on its parent
    assert.are.equal(9, one([[SELECT count(*) AS n FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
                              WHERE t.root_id = $1 AND a.agent_class = 'answer' AND t.depth = 1]], o.node.id).n)
  end)

  it("refuses an agent spawned past its parent agent's max_recursion_depth", function()
    strategy("deep", [[
      local M = {}
      local function go(agent, d)
        local ok, r = agent:spawn{ type = "task", goal = "level " .. (d + 1), run = function(a) return go(a, d + 1) end }:wait()
        if ok then return r end
        return { depth = d, error = r.type, message = r.message }
      end
      function M.run(node, ctx)
        local ok, r = ctx:spawn{ type = "task", node = node, max_recursion_depth = 3,
                                 run = function(a) return go(a, 0) end }:wait()
        assert(ok, r)
        return r
      end
      return M
    ]])
    local ok, r, o = nyx.orchestrate("too deep for its agent", { strategy = "deep" })
    assert.is_true(ok, tostring(r))
    assert.are.same({ depth = 3, error = "recursion_limit" }, { depth = r.depth, error = r.error })
    assert.matches("the spawning agent's max_recursion_depth", r.message)
    local row = one([[SELECT t.status, t.metadata->>'error' AS error FROM thought_trees t
                      WHERE t.root_id = $1 AND t.depth = 4]], o.node.id)
    assert.are.equal("failed", row.status)
    assert.matches("depth 4 is deeper than the spawning agent's max_recursion_depth %(3%)", row.error)
  end)

  it("records a failed leaf on its node and agent, and the parent decides", function()
    strategy("oneleaf", [[
      local M = {}
      function M.run(node, ctx)
        local hs = {}
        for i = 1, 3 do
          hs[i] = ctx:spawn{ type = "task", goal = "leaf " .. i, run = function()
            if i == 2 then error("leaf 2 broke") end
            return "ok " .. i
          end }
        end
        local rs = ctx:wait_all(hs)
        return { rs[1].ok, rs[2].ok, rs[3].ok, tostring(rs[2].error) }
      end
      return M
    ]])
    local ok, r, o = nyx.orchestrate("mostly fine", { strategy = "oneleaf" })
    assert.is_true(ok, tostring(r))
    assert.are.same({ true, false, true }, { r[1], r[2], r[3] })
    assert.matches("leaf 2 broke", r[4])
    local rows = q([[SELECT t.goal, t.status, t.metadata->>'error' AS error, a.status AS agent, a.state->>'error' AS aerr
                     FROM thought_trees t JOIN agents a ON a.thought_tree_id = t.id
                     WHERE t.parent_id = $1 ORDER BY t.goal]], o.node.id)
    assert.are.same({ "completed", "failed", "completed" }, { rows[1].status, rows[2].status, rows[3].status })
    assert.are.same({ "completed", "failed", "completed" }, { rows[1].agent, rows[2].agent, rows[3].agent })
    assert.matches("leaf 2 broke", rows[2].error)
    assert.matches("leaf 2 broke", rows[2].aerr)
    assert.are.equal("completed", one("SELECT status FROM thought_trees WHERE id = $1", o.node.id).status)
  end)

  it("stops LLM calls in a subtree whose budget is spent, exactly, from llm_interactions", function()
    local ok, err, o = nyx.orchestrate("Plan a party", { strategy = "decompose", budget = { calls = 3 } })
    local r = one([[SELECT count(*) AS n FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
                    WHERE t.root_id = $1]], o.node.id)
    assert.are.equal(3, r.n)
    assert.is_false(ok)
    assert.matches("all 3 subtasks failed", tostring(err))
    local budget_failures = one([[SELECT count(*) AS n FROM thought_trees WHERE root_id = $1
                                  AND metadata->>'error' LIKE '%budget exhausted%']], o.node.id).n
    assert.is_true(budget_failures >= 1)
    -- a budget in tokens: the spending so far counts when a subtree starts again
    local node = nyx.tree.get(o.node.id)
    local again = { nyx.orchestrate(node, { strategy = "decompose", budget = { calls = 3 } }) }
    assert.is_false(again[1])
    assert.are.equal("budget_exceeded", again[2].type)
    assert.are.equal(3, one([[SELECT count(*) AS n FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
                              WHERE t.root_id = $1]], o.node.id).n)
    assert.has_error(function() nyx.orchestrate("x", { budget = { dollars = 1 } }) end,
      "bad argument #2 to 'orchestrate' (unknown budget field 'dollars': usd, tokens, calls)")
  end)

  it("passes messages between agents: send, broadcast, receive with a timeout", function()
    strategy("chat", [[
      local M = {}
      function M.run(node, ctx)
        local hb
        local ha = ctx:spawn{ type = "council", goal = "A", run = function(a)
          local m = a:receive{ timeout = 5 }
          a:send(m.from, "response", { got = m.content.q })
          return m.content.q
        end }
        hb = ctx:spawn{ type = "council", goal = "B", run = function(b)
          nyx.task.sleep(0.05)
          b:send(ha, "request", { q = "ping" })
          local r = b:receive{ timeout = 5 }
          b:broadcast("notification", "bye")
          local none = b:receive{ timeout = 0.05 }
          return { r.content.got, none == nil }
        end }
        local ok1, a = ha:wait()
        local ok2, b = hb:wait()
        assert(ok1, a); assert(ok2, b)
        return { a, b[1], b[2] }
      end
      return M
    ]])
    local t0 = now()
    local ok, r, o = nyx.orchestrate("talk", { strategy = "chat" })
    assert.is_true(ok, tostring(r))
    assert.are.same({ "ping", "ping", true }, r)
    assert.is_true(now() - t0 < 4, "receive waited for its timeout instead of the message")
    local rows = q([[SELECT c.message_type, c.receiver_agent_id IS NULL AS broadcast, c.delivered,
                            c.received_at IS NOT NULL AS received, c.processed, c.content
                     FROM agent_communications c JOIN thought_trees t ON t.id = c.thought_tree_id
                     WHERE t.root_id = $1 ORDER BY c.sent_at]], o.node.id)
    assert.are.equal(3, #rows)
    assert.are.same({ "request", false, true, true, true }, { rows[1].message_type, rows[1].broadcast, rows[1].delivered, rows[1].received, rows[1].processed })
    assert.are.same({ "response", false, true, true, true }, { rows[2].message_type, rows[2].broadcast, rows[2].delivered, rows[2].received, rows[2].processed })
    assert.are.equal("notification", rows[3].message_type)
    assert.is_true(rows[3].broadcast)
    assert.are.same({ text = "bye" }, rows[3].content)
  end)

  it("reloads a strategy changed while a tree runs: later nodes use the new version, nothing restarts", function()
    local code = [=[
      local M = { mark = "%s" }
      function M.run(node, ctx)
        if node.depth < 1 then
          local kids = ctx:children({ "a", "b", "c", "d" })
          local hs = {}
          for i, kid in ipairs(kids) do
            hs[i] = ctx:orchestrate(kid)
            nyx.task.sleep(0.3) -- the file changes meanwhile
          end
          local out = {}
          for i, r in ipairs(ctx:wait_all(hs)) do assert(r.ok, r.error); out[i] = r.result end
          return out
        end
        local r = ctx:complete{ max_tokens = 20, messages = { { role = "user", content = "hi [[fake:delay_ms=50]]" } } }
        return M.mark
      end
      return M
    ]=]
    strategy("evolving", code:format("old"))
    local changer = nyx.task.spawn(function()
      nyx.task.sleep(0.45)
      strategy("evolving", code:format("new") .. "\n-- v2\n")
    end)
    local t0 = now()
    local ok, r, o = nyx.orchestrate("evolve", { strategy = "evolving" })
    changer:wait()
    assert.is_true(ok, tostring(r))
    assert.are.equal("old", r[1])
    assert.are.equal("new", r[4])
    local versions = q([[SELECT goal, metadata->'strategy'->>'version' AS v FROM thought_trees
                         WHERE parent_id = $1 ORDER BY goal]], o.node.id)
    assert.are_not.equal(versions[1].v, versions[4].v)
    local root_v = one("SELECT metadata->'strategy'->>'version' AS v FROM thought_trees WHERE id = $1", o.node.id).v
    assert.are.equal(root_v, versions[1].v)
    assert.is_true(now() - t0 < 10)
    -- a broken file: the previous version stays, one line names file and line
    local child = H.write(dir .. "/broken.lua", ([[
      package.path = %q .. "/?.lua;" .. package.path
      local function put(code) local f = io.open(%q, "w"); f:write(code); f:close() end
      put("return { mark = 'good', run = function() end }")
      local m1, v1 = nyx.runtime.load_strategy("evolving")
      put("local M = {\n  run = function( end\n")
      local m2, v2 = nyx.runtime.load_strategy("evolving")
      print(m1 == m2, v1 == v2, m2.mark)]]):format(dir, dir .. "/strategies/evolving.lua"))
    local res = H.nyx({ child }, { env = { NYX_OFFLINE = "1" } })
    assert.are.equal(0, res.code, res.err)
    assert.are.equal("true\ttrue\tgood\n", res.out)
    local lines = {}
    for l in res.err:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(1, #lines, res.err)
    assert.matches("kept the previous strategies.evolving: .*evolving.lua:2:", lines[1])
  end)

  it("stops cleanly on SIGINT: running nodes cancelled, agents terminated, orchestrators paused, exit 130", function()
    local script = H.write(dir .. "/slow.lua", [[
      -- no trap_signals(): nyx.orchestrate sets it up
      local root = nyx.tree.create{ goal = "slow goal" }
      print(root.id); io.stdout:flush()
      nyx.orchestrate(root, { strategy = "decompose" })
      print("finished")
    ]])
    local out = dir .. "/sigint.out"
    local r = H.sh("sh -c " .. H.quote(("%s %s > %s 2>&1 & pid=$!; sleep 1.5; kill -INT $pid; wait $pid; echo \"exit=$?\" >> %s")
      :format(H.quote(H.bin), H.quote(script), H.quote(out), H.quote(out))),
      { env = H.env_for(dbname, { NYX_OFFLINE = "1", NYX_FAKE_DELAY_MS = "400", NYX_FAKE_FRACTAL = "3,6" }) })
    assert.are.equal(0, r.code)
    local f = assert(io.open(out)); local text = f:read("a"); f:close()
    assert.matches("exit=130", text)
    assert.matches("SIGINT: stopped; %d+ nodes? cancelled", text)
    assert.not_matches("finished", text)
    local root_id = text:match("(%x+%-%x+%-%x+%-%x+%-%x+)")
    local s = one([[SELECT count(*) FILTER (WHERE status = 'in_progress') AS running,
                           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                           count(*) FILTER (WHERE status = 'completed') AS completed
                    FROM thought_trees WHERE root_id = $1]], root_id)
    assert.are.equal(0, s.running)
    assert.is_true(s.cancelled >= 1)
    local a = one([[SELECT count(*) FILTER (WHERE a.status IN ('active', 'spawned')) AS live,
                           count(*) FILTER (WHERE a.status = 'completed') AS completed,
                           count(*) FILTER (WHERE a.status = 'terminated') AS terminated
                    FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id WHERE t.root_id = $1]], root_id)
    assert.are.equal(0, a.live)
    assert.is_true(a.terminated >= 1)
    assert.is_true(a.completed >= 1) -- what was done before stays done
    local o = one([[SELECT count(*) FILTER (WHERE o.status = 'active') AS live,
                           count(*) FILTER (WHERE o.status = 'paused') AS paused
                    FROM orchestrators o JOIN thought_trees t ON t.id = o.thought_tree_id WHERE t.root_id = $1]], root_id)
    assert.are.equal(0, o.live)
    assert.is_true(o.paused >= 1)
  end)

  it("cancels on SIGINT a node an agent left open that nothing took up yet", function()
    local script = H.write(dir .. "/open_stop.lua", [[
      package.preload["strategies.open_stop"] = function() return { run = function(node, ctx)
        local kid = ctx:child("left open when nyx stops")
        assert(ctx:spawn{ type = "task", node = kid, run = function(agent) agent:leave_open(); return 1 end }:wait())
        print(node.id, kid.id, kid.status); io.stdout:flush()
        -- nyx itself, once system() is over (it ignores SIGINT meanwhile)
        os.execute("(sleep 0.2; kill -INT $PPID) &")
        nyx.task.sleep(10)
      end } end
      nyx.orchestrate("stop with a node left open", { strategy = "open_stop" })
      print("finished")
    ]])
    local r = H.sh(H.quote(H.bin) .. " " .. H.quote(script), { env = H.env_for(dbname, { NYX_OFFLINE = "1" }) })
    assert.are.equal(130, r.code, r.out .. r.err)
    local root_id, kid_id, before = r.out:match("(%x+%-%x+%-%x+%-%x+%-%x+)%s+(%x+%-%x+%-%x+%-%x+%-%x+)%s+(%S+)")
    assert.are.equal("in_progress", before)
    assert.not_matches("finished", r.out)
    assert.are.same({ "cancelled", "cancelled" }, {
      one("SELECT status FROM thought_trees WHERE id = $1", kid_id).status,
      one("SELECT status FROM thought_trees WHERE id = $1", root_id).status })
  end)

  it("sets up its signal handling once: a script's own trap, set after, stays", function()
    local script = H.write(dir .. "/own_trap.lua", [[
      nyx.orchestrate("a first goal", { strategy = "decompose" })   -- traps SIGINT and SIGTERM
      nyx.limits.trap(function(sig) print("own trap: " .. sig); io.stdout:flush(); os.exit(7) end)
      nyx.orchestrate("a second goal", { strategy = "decompose" })  -- must not trap them again
      nyx.proc.run{ argv = { "sh", "-c", "kill -INT $PPID" } }
      nyx.task.sleep(5)
      print("not stopped")
    ]])
    local r = H.nyx({ script }, { env = H.env_for(dbname, { NYX_OFFLINE = "1" }) })
    assert.are.equal(7, r.code, r.out .. r.err)
    assert.matches("own trap: SIGINT", r.out)
  end)

  it("says clearly what is wrong with a call", function()
    assert.has_error(function() nyx.orchestrate(42) end,
      "bad argument #1 to 'orchestrate' (expected a node or a goal string)")
    local ok, err = pcall(nyx.orchestrate, "x", { strategy = "no_such_strategy" })
    assert.is_false(ok)
    assert.matches("no strategy 'no_such_strategy'", err)
  end)
end)
