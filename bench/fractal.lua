-- bench/fractal.lua MODE [ARGS]: one figure of the runtime (issue 4),
-- printed as one line "key=value ...". bench/run runs them all against a
-- fake Claude in a process of its own (so nyx's CPU is nyx's only).
--
--   tree B D DELAY_MS MAX_AGENTS   the fractal workload: decompose on a
--                                  root; the fake answers B subtasks per
--                                  node down to depth D (its --fractal)
--   suspended N                    N agents suspended (waiting on an event):
--                                  bytes each in Lua's count, of the peak
--                                  RSS, and of resident memory after a full
--                                  collection (what the allocator keeps)
--   flat B D MAX_AGENTS            the same tree without decompose: one
--                                  orchestrator, an agent per node making
--                                  one plain call (no templates, no plan
--                                  ahead), children spawned by their
--                                  parent agent; what the runtime costs a
--                                  call under any strategy
--   waiting N                      N agents each waiting for its LLM call's
--                                  rows to commit (commits held back by a
--                                  lock psql takes on llm_interactions for
--                                  a few seconds): bytes each in Lua's count.
--                                  At zero delay PostgreSQL is the
--                                  bottleneck and hundreds wait so.
local core = nyx.core
local mode = arg[1] or "tree"

if mode == "tree" then
  local b, d, delay, max = tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4]), math.tointeger(tonumber(arg[5]))
  nyx.config.set("max_concurrent_agents", max)
  nyx.config.set("max_recursion_depth", math.max(10, d))
  local root = nyx.tree.create{ goal = ("fractal B=%d D=%d delay=%d"):format(b, d, delay) }
  collectgarbage()
  nyx.db.flush()
  local l0 = nyx.db.log_stats()
  local t0, c0 = core.now(), core.cpu()
  local ok, res = nyx.orchestrate(root, { strategy = "decompose", max_concurrent_agents = max })
  local wall, cpu = core.now() - t0, core.cpu() - c0
  local l1 = nyx.db.log_stats()
  assert(ok, tostring(type(res) == "table" and res.message or res))
  local s = nyx.db.query([[SELECT count(*) AS calls,
    (SELECT count(*) FROM thought_trees WHERE root_id = $1) AS nodes,
    (SELECT count(*) FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id WHERE t.root_id = $1) AS agents
    FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id WHERE t.root_id = $1]], root.id)[1]
  print(("mode=tree B=%d D=%d delay_ms=%d max_agents=%d nodes=%d calls=%d agents=%d wall_s=%.3f cpu_s=%.3f cpu_us_per_call=%.0f rss_mb=%.1f rows_inserted=%d rows_updated=%d batches=%d"):format(
    b, d, delay, max, s.nodes, s.calls, s.agents, wall, cpu, cpu * 1e6 / s.calls, core.maxrss() / 2^20,
    l1.inserted - l0.inserted, l1.updated - l0.updated, l1.batches - l0.batches))
elseif mode == "suspended" then
  local n = math.tointeger(tonumber(arg[2])) or 10000
  nyx.config.set("max_concurrent_agents", n)
  local root = nyx.tree.create{ goal = "suspended agents" }
  local ready, release = 0, nyx.limits.event()
  local kb0, rss0, now0
  local function resident() -- bytes resident now (/proc/self/statm), not the peak
    local f = io.open("/proc/self/statm")
    local pages = f and tonumber(f:read("a"):match("^%d+%s+(%d+)"))
    if f then f:close() end
    return (pages or 0) * 4096
  end
  local o = nyx.runtime -- the strategy is inline: one orchestrator, n agents
  package.preload["strategies.bench_suspended"] = function()
    return { run = function(node, ctx)
      nyx.db.flush()
      collectgarbage(); collectgarbage()
      kb0, rss0, now0 = collectgarbage("count"), core.maxrss(), resident()
      local hs = {}
      for i = 1, n do
        hs[i] = ctx:spawn{ type = "task", node = node, run = function()
          ready = ready + 1
          release:wait()
        end }
      end
      while ready < n do nyx.task.sleep(0.01) end
      nyx.db.flush() -- their rows are written: what stays is the agents
      collectgarbage(); collectgarbage()
      local kb1, rss1, now1 = collectgarbage("count"), core.maxrss(), resident()
      print(("mode=suspended agents=%d lua_bytes_each=%.0f rss_bytes_each=%.0f resident_bytes_each=%.0f"):format(
        n, (kb1 - kb0) * 1024 / n, (rss1 - rss0) / n, (now1 - now0) / n))
      release:set()
      ctx:wait_all(hs)
    end }
  end
  local ok, err = nyx.orchestrate(root, { strategy = "bench_suspended", max_concurrent_agents = n })
  assert(ok, tostring(err))
  local _ = o
elseif mode == "flat" then
  local b, d, max = tonumber(arg[2]), tonumber(arg[3]), math.tointeger(tonumber(arg[4]))
  nyx.config.set("max_concurrent_agents", max)
  nyx.config.set("max_recursion_depth", math.max(10, d))
  local root = nyx.tree.create{ goal = ("fractal B=%d D=%d delay=0"):format(b, d) }
  -- the fake answers the fractal workload to a system prompt that asks
  -- for JSON subtasks
  local SYSTEM = 'Reply with JSON only: {"subtasks": [{"goal": "..."}]} to split, or {"answer": "..."}.'
  local function work(agent)
    local node = agent.node
    local r = agent:complete{ max_tokens = 256, system = SYSTEM,
      messages = { { role = "user", content = "Goal: " .. node.goal .. "\nDEPTH: " .. node.depth } } }
    local reply = assert(core.json_decode(r.text))
    if reply.answer then return reply.answer end
    local hs = {}
    for i, sub in ipairs(reply.subtasks) do
      hs[i] = agent:spawn{ type = "task", goal = sub.goal, run = work, max_recursion_depth = d + 1 }
    end
    local parts = {}
    for i, h in ipairs(hs) do
      local ok, res = h:wait()
      parts[i] = ok and tostring(res) or "(failed)"
    end
    return table.concat(parts, "\n")
  end
  package.preload["strategies.bench_flat"] = function()
    return { run = function(node, ctx)
      local ok, res = ctx:spawn{ type = "task", node = node, run = work, max_recursion_depth = d + 1 }:wait()
      if not ok then error(res, 0) end
      return res
    end }
  end
  collectgarbage()
  nyx.db.flush()
  local t0, c0 = core.now(), core.cpu()
  local ok, res = nyx.orchestrate(root, { strategy = "bench_flat", max_concurrent_agents = max })
  local wall, cpu = core.now() - t0, core.cpu() - c0
  assert(ok, tostring(type(res) == "table" and res.message or res))
  local calls = nyx.db.query([[SELECT count(*) AS n FROM llm_interactions i JOIN thought_trees t
    ON t.id = i.thought_tree_id WHERE t.root_id = $1]], root.id)[1].n
  print(("mode=flat B=%d D=%d max_agents=%d calls=%d wall_s=%.3f cpu_s=%.3f cpu_us_per_call=%.0f rss_mb=%.1f"):format(
    b, d, max, calls, wall, cpu, cpu * 1e6 / calls, core.maxrss() / 2^20))
elseif mode == "waiting" then
  local n = math.tointeger(tonumber(arg[2])) or 1000
  nyx.config.set("max_concurrent_agents", n)
  local root = nyx.tree.create{ goal = "agents waiting for their commits" }
  local info = nyx.db.info()
  local lock = ("psql -X -q -h %q -p %s -U %q -d %q -c %q >/dev/null 2>&1 &"):format(info.host, info.port, info.user,
    info.dbname, "BEGIN; LOCK TABLE llm_interactions IN EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;")
  package.preload["strategies.bench_waiting"] = function()
    return { run = function(_, ctx)
      nyx.db.flush()
      collectgarbage(); collectgarbage()
      local kb0 = collectgarbage("count")
      assert(os.execute(lock))
      local held = false
      for _ = 1, 100 do -- until psql holds the lock
        held = nyx.db.query("SELECT count(*) AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation " ..
          "WHERE c.relname = 'llm_interactions' AND l.mode = 'ExclusiveLock' AND l.granted")[1].n > 0
        if held then break end
        nyx.task.sleep(0.02)
      end
      assert(held, "psql did not take the lock on llm_interactions")
      local hs = {}
      for i = 1, n do
        hs[i] = ctx:spawn{ type = "task", goal = "item " .. i, run = function(agent)
          return agent:complete{ max_tokens = 64, system = "You answer in one line.",
                                 messages = { { role = "user", content = "Say something about item " .. i } } }.text
        end }
      end
      local t0 = core.now()
      while nyx.llm.in_flight() > 0 or core.now() - t0 < 0.5 do nyx.task.sleep(0.05) end
      collectgarbage(); collectgarbage()
      local kb1 = collectgarbage("count")
      print(("mode=waiting agents=%d lua_bytes_each=%.0f"):format(n, (kb1 - kb0) * 1024 / n))
      ctx:wait_all(hs)
    end }
  end
  local ok, err = nyx.orchestrate(root, { strategy = "bench_waiting", max_concurrent_agents = n })
  assert(ok, tostring(err))
end
