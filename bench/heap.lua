-- bench/heap.lua [B D DELAY_MS MAX_AGENTS]: what the Lua heap holds at its
-- peak during a fractal tree (bench/fractal.lua), by kind: a census of
-- everything reachable from the registry (tables by metatable name, log
-- rows, threads with their stacks, strings, userdata), sizes estimated.
-- For work on the runtime's memory; run against a fake Claude as
-- bench/run does, e.g.
--   nyx fake-claude --port 0 --fractal 3,6 &    # prints its URL
--   ANTHROPIC_BASE_URL=http://127.0.0.1:PORT ANTHROPIC_API_KEY=x NYX_OFFLINE=0 nyx bench/heap.lua 3 6 0 50
-- Slow (a full collection and a walk every 50 ms): its times mean nothing.
local function census()
  local seen, count, bytes = {}, {}, {}
  local stack = { debug.getregistry() }
  local function add(kind, b) count[kind] = (count[kind] or 0) + 1; bytes[kind] = (bytes[kind] or 0) + b end
  local function push(v) if (type(v) == "table" or type(v) == "function" or type(v) == "thread" or type(v) == "userdata") and not seen[v] then seen[v] = true; stack[#stack + 1] = v end end
  local function kind_of(t)
    local mt = getmetatable(t)
    if mt and type(mt) == "table" and rawget(mt, "__name") then return "table:" .. tostring(rawget(mt, "__name")) end
    if rawget(t, "table") and rawget(t, "columns") then return "table:logrow" end
    if rawget(t, "goal") and rawget(t, "depth") then return "table:node" end
    return "table"
  end
  seen[stack[1]] = true
  while #stack > 0 do
    local v = table.remove(stack)
    local t = type(v)
    if t == "table" then
      local nh = 0
      for k, x in next, v do nh = nh + 1; push(k); push(x); if type(k) == "string" and not seen[k] then seen[k] = true; add("string", #k + 24) end; if type(x) == "string" and not seen[x] then seen[x] = true; add("string", #x + 24) end end
      add(kind_of(v), 56 + nh * 32)
      local mt = getmetatable(v); if mt then push(mt) end
    elseif t == "function" then
      add("function", 40)
      local i = 1
      while true do local name, x = debug.getupvalue(v, i); if not name then break end; push(x); if type(x) == "string" and not seen[x] then seen[x] = true; add("string", #x + 24) end; i = i + 1 end
    elseif t == "thread" then
      add("thread", 1000)
      local lv = 0
      while true do
        local info = debug.getinfo(v, lv, "f"); if not info then break end
        push(info.func)
        local i = 1
        while true do local name, x = debug.getlocal(v, lv, i); if not name then break end; push(x); if type(x) == "string" and not seen[x] then seen[x] = true; add("string", #x + 24) end; i = i + 1 end
        lv = lv + 1
      end
    elseif t == "userdata" then
      add("userdata", 64)
      local mt = getmetatable(v); if mt then push(mt) end
      local i = 1
      while true do local x = debug.getuservalue(v, i); if x == nil then break end; push(x); i = i + 1 end
    end
  end
  local rows = {}
  for k, b in pairs(bytes) do rows[#rows + 1] = { k, count[k], b } end
  table.sort(rows, function(a, b) return a[3] > b[3] end)
  local out = {}
  for i = 1, math.min(14, #rows) do out[#out + 1] = ("  %-28s %7d  %8.0f KB"):format(rows[i][1], rows[i][2], rows[i][3] / 1024) end
  return table.concat(out, "\n")
end
local done, best, report = false, 0, nil
nyx.task.spawn(function()
  while not done do
    nyx.task.sleep(0.05)
    collectgarbage()
    local kb = collectgarbage("count")
    if kb > best then best = kb; report = census() end
  end
end)
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local env = setmetatable({ arg = { [0] = here .. "fractal.lua", "tree", tonumber(arg[1]) or 3, tonumber(arg[2]) or 6,
                                   tonumber(arg[3]) or 0, tonumber(arg[4]) or 50 } }, { __index = _G })
assert(loadfile(here .. "fractal.lua", "t", env))()
done = true
print(("live peak %.1f MB; census at that moment:"):format(best / 1024))
print(report)
