-- bench/proc.lua: what starting a process costs nyx.
--   nyx bench/proc.lua [count] [at_once] [heap_mib]
-- Runs `true` count times (default 500), at_once at a time (default 50),
-- each in its own task, and prints the rate and nyx's own CPU time per run
-- (os.clock: this process, all threads, not the children). With heap_mib,
-- nyx first fills that many MiB of Lua heap, to show that posix_spawn's
-- vfork-style clone does not pay for the parent's size as fork would.
local count, at_once, heap_mib = tonumber(arg[1]) or 500, tonumber(arg[2]) or 50, tonumber(arg[3]) or 0

local now = require("nyx.core").now

local ballast = {}
for i = 1, heap_mib do ballast[i] = ("%08d"):format(i):rep(131072) end -- 1 MiB each, touched

local function batch(n)
  local started, failed = 0, 0
  local workers = {}
  for w = 1, math.min(at_once, n) do
    workers[w] = nyx.task.spawn(function()
      while started < n do
        started = started + 1
        local r = nyx.proc.run{ argv = { "true" } }
        if r.exit_code ~= 0 then failed = failed + 1 end
      end
    end)
  end
  for _, r in ipairs(nyx.task.wait_all(workers)) do assert(r.ok, r.error) end
  assert(failed == 0, failed .. " runs failed")
end

batch(math.min(20, count)) -- warm up: the service, the page cache
collectgarbage()
local c0, t0 = os.clock(), now()
batch(count)
local cpu, wall = os.clock() - c0, now() - t0

print(("runs             %d of `true`, %d at once, Lua heap %.0f MiB"):format(count, at_once,
  collectgarbage("count") / 1024))
print(("rate             %.0f processes/s (%.1f ms wall in all)"):format(count / wall, wall * 1e3))
print(("nyx CPU          %.0f us per process (%.0f%% of one core)"):format(cpu * 1e6 / count, cpu / wall * 100))
assert(#ballast == heap_mib)
