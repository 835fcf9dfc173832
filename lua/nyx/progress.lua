--- nyx.progress: what a running tree is doing, while it runs. On a
-- terminal, one status line on stderr (nodes done/total, active agents,
-- LLM calls in flight, cost so far, cache hit rate, elapsed), redrawn at
-- most 10 times a second by a timer task and erased when the tree ends,
-- before the script prints its result. With `--json` (nyx.run.json), one
-- JSON event per line on stderr instead, for other programs. Nothing
-- with `--quiet` (nyx.run.quiet) or when stderr is not a terminal.
--
-- It listens on the runtime's hooks (nyx.runtime.on) and decides what to
-- do at the first event, so a script that never orchestrates pays
-- nothing, and one whose progress is off pays one call.
local core = require "nyx.core"
local task = require "nyx.task"
local limits = require "nyx.limits"
local llm = require "nyx.llm"
local runtime = require "nyx.runtime"
local views = require "nyx.views"
local json = require "cjson"

local M = {}

M.interval = 0.1     -- seconds between redraws on a terminal
M.tick_interval = 1  -- seconds between tick events in JSON

local TERMINAL = { completed = true, failed = true, cancelled = true }
local FINISHED_AGENT = { completed = true, failed = true, terminated = true }

local mode = nil     -- nil: not decided yet; false, "tty" or "json"
local s              -- the counters of the trees running now
local prev = {}      -- hooks that were there before ours

local function reset()
  s = { known = {}, agents = {}, total = 0, done = 0, failed = 0, active = 0, calls = 0,
        cost = 0, input_side = 0, cache_read = 0, tops = 0, t0 = nil, shown = false, frame = 0 }
end
reset()

local out = io.stderr

-- ---- JSON events ------------------------------------------------------------

local function elapsed() return s.t0 and core.now() - s.t0 or 0 end

local function emit(ev)
  ev.t = math.floor(elapsed() * 1000 + 0.5) / 1000
  out:write(json.encode(ev), "\n")
  out:flush()
end

local function counters()
  return { nodes_total = s.total, nodes_done = s.done, nodes_failed = s.failed, agents_active = s.active,
           calls = s.calls, calls_in_flight = llm.in_flight(), cost_usd = s.cost,
           cache_hit_rate = s.input_side > 0 and s.cache_read / s.input_side or 0 }
end

-- ---- the status line ----------------------------------------------------------

local SPIN_UTF8 = { "⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏" }
local SPIN_ASCII = { "|", "/", "-", "\\" }

--- line(c, opts): the status line for counters c (opts.utf8, opts.colour,
-- opts.width, opts.frame).
function M.line(c, opts)
  local spin = opts.utf8 and SPIN_UTF8 or SPIN_ASCII
  local dot = opts.utf8 and " · " or " | "
  local text = table.concat({
    ("%s %d/%d nodes%s"):format(spin[(opts.frame or 0) % #spin + 1], c.nodes_done, c.nodes_total,
      c.nodes_failed > 0 and (" (%d failed)"):format(c.nodes_failed) or ""),
    ("%d agent%s"):format(c.agents_active, c.agents_active == 1 and "" or "s"),
    ("%d call%s in flight"):format(c.calls_in_flight, c.calls_in_flight == 1 and "" or "s"),
    ("$%.4f"):format(c.cost_usd),
    ("cache %d%%"):format(math.floor(100 * c.cache_hit_rate + 0.5)),
    views.duration(opts.elapsed or 0),
  }, dot)
  text = views.cut("nyx " .. text, (opts.width or 80) - 1)
  if opts.colour then text = "\27[36m" .. text .. "\27[0m" end
  return text
end

local function draw()
  s.frame = s.frame + 1
  local colour = views.colour("stderr")
  out:write("\r\27[K", M.line(counters(), { utf8 = views.utf8_locale(), colour = colour,
    width = core.columns("stderr") or 80, frame = s.frame, elapsed = elapsed() }))
  out:flush()
  s.shown = true
end

local function erase()
  if s.shown then out:write("\r\27[K"); out:flush() end
  s.shown = false
end

-- ---- the timer ------------------------------------------------------------------

local function ticker(stop)
  local every = mode == "json" and M.tick_interval or M.interval
  while s.tops > 0 do
    if mode == "json" then
      local ev = counters()
      ev.event = "tick"
      emit(ev)
    else
      draw()
    end
    if stop:wait(every) then break end
  end
end

local function start()
  s.t0 = s.t0 or core.now()
  if not task.current() then return end -- no loop to run a timer on: events only
  local stop = limits.event()
  s.stop = stop
  task.spawn(function() pcall(ticker, stop) end)
end

local function finish()
  if s.stop then s.stop:set() end
  if mode == "json" then
    local ev = counters()
    ev.event = "done"
    emit(ev)
  else
    erase()
  end
  reset()
end

-- ---- the hooks ----------------------------------------------------------------------

local function on_node(n, status)
  local k = s.known[n.id]
  if status == "pending" or not k then
    if not k then
      s.known[n.id] = { parent = n.parent_id }
      s.total = s.total + 1
      k = s.known[n.id]
    end
    if mode == "json" then
      emit { event = "node_created", id = n.id, parent_id = n.parent_id, depth = n.depth, goal = views.cut(n.goal, 100) }
    end
  end
  if status == "in_progress" then
    if not k.started and not (n.parent_id and s.known[n.parent_id]) then
      k.top = true
      s.tops = s.tops + 1
      if s.tops == 1 then start() end
    end
    k.started = true
    if mode == "json" then emit { event = "node_started", id = n.id, depth = n.depth } end
  elseif TERMINAL[status] and not k.finished then
    k.finished = true
    s.done = s.done + 1
    if status ~= "completed" then s.failed = s.failed + 1 end
    if mode == "json" then emit { event = "node_finished", id = n.id, status = status, depth = n.depth } end
    if k.top then
      s.tops = s.tops - 1
      if s.tops == 0 then finish() end
    end
  end
end

local function on_agent(a)
  local last = s.agents[a.id]
  if a.status == last then return end
  s.agents[a.id] = a.status
  if a.status == "active" then
    s.active = s.active + 1
    if mode == "json" then emit { event = "agent_started", id = a.id, node = a.node.id, class = a.class, type = a.type } end
  elseif FINISHED_AGENT[a.status] then
    if last == "active" then s.active = s.active - 1 end
    s.agents[a.id] = nil
    if mode == "json" then emit { event = "agent_finished", id = a.id, node = a.node.id, status = a.status } end
  end
end

local function on_call(tree_id, usage, cost, ok)
  local read, write = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
  local input, output = usage.input_tokens or 0, usage.output_tokens or 0
  s.calls = s.calls + 1
  s.cost = s.cost + (cost or 0)
  s.cache_read = s.cache_read + read
  s.input_side = s.input_side + input + write + read
  if mode == "json" then
    emit { event = "llm_call", node = tree_id, ok = ok ~= false, cost_usd = cost or 0,
           input_tokens = input, output_tokens = output, cache_write_tokens = write, cache_read_tokens = read,
           tokens = input + output + write + read }
  end
end

-- A hook that never raises into the runtime: a view's failure says one
-- line and turns the view off.
local function safe(fn, name)
  return function(...)
    if prev[name] then prev[name](...) end
    if not mode then return end
    local ok, err = pcall(fn, ...)
    if not ok then
      io.stderr:write("\nnyx: progress display stopped: ", tostring(err):match("^[^\n]*"), "\n")
      M.disable()
    end
  end
end

local HOOKS = { node = safe(on_node, "node"), agent = safe(on_agent, "agent"), call = safe(on_call, "call") }

local function install()
  for name, fn in pairs(HOOKS) do
    if runtime.on[name] ~= fn then prev[name] = runtime.on[name]; runtime.on[name] = fn end
  end
end

local function uninstall()
  for name, fn in pairs(HOOKS) do
    if runtime.on[name] == fn then runtime.on[name] = prev[name] end
    prev[name] = nil
  end
end

--- decide(): the mode nyx.run and the terminal ask for: "json" with
-- --json, false with --quiet or when stderr is not a terminal, else "tty".
function M.decide()
  local run = type(rawget(_G, "nyx")) == "table" and rawget(_G, "nyx").run or {}
  if run.quiet then return false end
  if run.json then return "json" end
  return core.isatty("stderr") and "tty" or false
end

--- enable(m): "tty", "json" or nil (decide at the first event); the
-- runtime's hooks are ours from now on.
function M.enable(m)
  mode = m
  install()
  if m == nil then
    -- the first event decides, then removes the hooks if the view is off
    local first = runtime.on.node
    runtime.on.node = function(...)
      runtime.on.node = first
      mode = M.decide()
      if not mode then return M.disable() end
      return first(...)
    end
  end
end

--- disable(): no view; the hooks are given back (or removed).
function M.disable()
  if s.tops > 0 then
    if s.stop then s.stop:set() end
    if mode ~= "json" then erase() end
  end
  mode = false
  reset()
  -- the deciding wrapper, if it is still there, is ours too
  if runtime.on.node and runtime.on.node ~= HOOKS.node and not prev.node then runtime.on.node = nil end
  uninstall()
end

--- mode(): "tty", "json", false (off) or nil (not decided yet).
function M.mode() return mode end

return M
