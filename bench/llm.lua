-- bench/llm.lua: nyx.llm.complete end to end — request, HTTP, response,
-- cost, and the logged rows committed — against a fake Claude.
--
--   bench/llm.sh                      # starts a fake Claude, runs the three figures
--   nyx bench/llm.lua CALLS IN_FLIGHT DELAY_MS
--
-- Prints calls per second, nyx's CPU time per call (this process only: run
-- the fake server as a separate process, as bench/llm.sh does), wall time
-- and peak RSS.
local core = require "nyx.core"
local N, C, delay = tonumber(arg[1]) or 5000, tonumber(arg[2]) or 50, tonumber(arg[3]) or 0

local function peak_rss_mib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s+(%d+)")
    if kb then return tonumber(kb) / 1024 end
  end
end

local root = nyx.tree.create{ goal = ("bench %d calls, %d in flight, %d ms"):format(N, C, delay) }
local prompt = delay > 0 and ("bench [[fake:delay_ms=%d]]"):format(delay) or "bench"
local function call()
  return nyx.llm.complete{ tree = root, max_tokens = 64, messages = { { role = "user", content = prompt } } }
end
call() -- warm up: connection, config, pricing, the log writer
local before = nyx.db.query("SELECT count(*) AS n FROM llm_interactions WHERE thought_tree_id = $1", root.id)[1].n

local claimed = 0
local t0, c0 = core.now(), os.clock()
local workers = {}
for w = 1, C do
  workers[w] = nyx.task.spawn(function()
    while claimed < N do
      claimed = claimed + 1
      call()
    end
  end)
end
for _, r in ipairs(nyx.task.wait_all(workers)) do assert(r.ok, r.error) end
local wall, cpu = core.now() - t0, os.clock() - c0

local logged = nyx.db.query("SELECT count(*) AS n FROM llm_interactions WHERE thought_tree_id = $1", root.id)[1].n - before
assert(logged == N, ("logged %d rows for %d calls"):format(logged, N))
print(("calls %d  in flight %d  server delay %d ms  (%s)"):format(N, C, delay, nyx.llm.endpoint().base_url))
print(("  %.0f logged calls/s   %.1f us nyx CPU per call   %.3f s wall   peak RSS %.1f MiB"):format(
  N / wall, cpu / N * 1e6, wall, peak_rss_mib()))
