-- bench/tree.lua: what the thought-tree API costs against a real PostgreSQL.
--   nyx bench/tree.lua [fanout] [depth]
-- Builds a tree of fanout^1 + ... + fanout^depth nodes under one root (one
-- INSERT round trip each, autocommit), then reads it back with subtree()
-- (one recursive query) and children() per node, and prints the rates.
local fanout, depth = tonumber(arg[1]) or 10, tonumber(arg[2]) or 3

local now = require("nyx.core").now

nyx.db.query("SELECT 1") -- connect (and migrate) before timing
local t0 = now()
local root = nyx.tree.create{ goal = ("bench %dx%d"):format(fanout, depth) }
local level, n = { root }, 1
for _ = 1, depth do
  local next_level = {}
  for _, p in ipairs(level) do
    for i = 1, fanout do
      next_level[#next_level + 1] = nyx.tree.create{ goal = "node " .. i, parent = p, metadata = { i = i } }
    end
  end
  n = n + #next_level
  level = next_level
end
local t1 = now()
local sub = root:subtree()
local t2 = now()
local all = { root }
for _, p in ipairs(sub) do
  local kids = p:children()
  for _, k in ipairs(kids) do all[#all + 1] = k end
end
local t3 = now()
for i = 1, #sub do sub[i]:set_status("completed") end
local t4 = now()

assert(#sub == n and #all == n, "read back a different tree")
print(("nodes            %d (fanout %d, depth %d) in %s"):format(n, fanout, depth, nyx.db.info().database))
print(("create           %.0f nodes/s (%.3f ms each)"):format(n / (t1 - t0), (t1 - t0) * 1e3 / n))
print(("subtree          %.1f ms for all %d nodes (one query)"):format((t2 - t1) * 1e3, #sub))
print(("children         %.3f ms per call"):format((t3 - t2) * 1e3 / #sub))
print(("set_status       %.3f ms per call"):format((t4 - t3) * 1e3 / #sub))
collectgarbage()
print(("Lua heap         %.1f MiB"):format(collectgarbage("count") / 1024))
