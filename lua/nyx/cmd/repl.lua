--- nyx repl: a Lua REPL on nyx's event loop, in the manner of lua.c's
-- doREPL. Each chunk runs as a task, so yielding calls (nyx.llm.complete,
-- nyx.orchestrate) work at the prompt and other tasks go on meanwhile;
-- results are printed with nyx.pretty. `nyx SCRIPT --repl` runs a script
-- and a REPL together (M.with_script). The terminal side (readline, stdin
-- on the loop, Ctrl-C) is src/lua_repl.c.
local R = require "nyx.repl"
local pretty = require "nyx.pretty"
local task = require "nyx.task"

local M = {}

--- history_path(): ${XDG_STATE_HOME:-~/.local/state}/nyx/history, or nil.
function M.history_path()
  local state = os.getenv("XDG_STATE_HOME")
  if not state or state == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then return nil end
    state = home .. "/.local/state"
  end
  return state .. "/nyx/history"
end

-- ---- completion -------------------------------------------------------------

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
                   "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
                   "true", "until", "while" }

-- v's field name, looked up without running code: raw fields, then
-- __index tables (strings: the string library).
local function field(v, name)
  for _ = 1, 16 do
    if type(v) == "table" then
      local x = rawget(v, name)
      if x ~= nil then return x end
    end
    local mt = getmetatable(v)
    local index = type(mt) == "table" and rawget(mt, "__index")
    if type(index) ~= "table" then return nil end
    v = index
  end
end

-- The names v offers: its keys and those of its __index tables.
local function names(v, into, methods)
  for _ = 1, 16 do
    if type(v) == "table" then
      for k, x in next, v do
        if type(k) == "string" and k:match("^[%a_][%w_]*$") and (not methods or type(x) == "function") then
          into[k] = true
        end
      end
    end
    local mt = getmetatable(v)
    local index = type(mt) == "table" and rawget(mt, "__index")
    if type(index) ~= "table" then return end
    v = index
  end
end

--- complete(word): the completions of word ("nyx.tr", "t:me", "pri"):
-- global names and keywords, or the fields of the value a chain of names
-- from the globals leads to (methods after ':').
function M.complete(word)
  local path, sep, partial = word:match("^([%a_][%w_%.:]-)([%.:])([%w_]*)$")
  local found, base = {}, _G
  if path then
    for name in path:gmatch("[^%.:]+") do
      base = field(base, name)
      if base == nil then return {} end
    end
    names(base, found, sep == ":")
  else
    if not word:match("^[%a_]?[%w_]*$") then return {} end
    partial, path, sep = word, "", ""
    names(_G, found)
    for _, k in ipairs(KEYWORDS) do found[k] = true end
  end
  local out = {}
  for k in pairs(found) do
    if k:sub(1, #partial) == partial then out[#out + 1] = path .. sep .. k end
  end
  table.sort(out)
  return out
end

-- ---- reading chunks, as lua.c does -------------------------------------------

local function prompt(S, first)
  if not S.tty then return "" end
  local p = rawget(_G, first and "_PROMPT" or "_PROMPT2")
  if p == nil then return first and "> " or ">> " end
  return tostring(p)
end

local function incomplete(err)
  return err:sub(-5) == "<eof>"
end

-- The next chunk: a function; a string (a syntax error); false (Ctrl-C
-- cleared the input); nil at the end of input.
local function read_chunk(S)
  local line = R.read(prompt(S, true))
  if not line then return line end
  local code = line:match("^=(.*)") or line -- "=expr" means "return expr"
  local f = load("return " .. code, "=stdin")
  if f then
    R.add_history(line)
    return f
  end
  local buf = line:match("^=") and "return " .. code or line
  while true do
    local g, err = load(buf, "=stdin")
    if g or not incomplete(err) then
      R.add_history(buf)
      return g or err
    end
    local more = R.read(prompt(S, false))
    if more == nil then return err end
    if more == false then return false end
    buf = buf .. "\n" .. more
  end
end

-- ---- running them --------------------------------------------------------------

local function handler(e)
  -- the database cannot be reached: one line says it all, as nyx says it
  if type(e) == "table" and e.type == "connection" then return tostring(e) end
  if type(e) ~= "string" then
    local mt = getmetatable(e)
    if mt and mt.__tostring then
      e = tostring(e)
    else
      e = ("(error object is a %s value)"):format(type(e))
    end
  end
  local tb = debug.traceback(e, 2)
  -- the REPL's own frames are noise
  local cut = tb:find("\n\t[C]: in function 'xpcall'", 1, true)
  return cut and tb:sub(1, cut - 1) or tb
end

local function say(S, text, err)
  if S.tty then
    R.above(text, err)
  else
    local f = err and io.stderr or io.stdout
    f:write(text)
    f:flush()
  end
end

--- show(r): prints a chunk's results, each with nyx.pretty.
local function show(r)
  if r.n == 0 then return end
  local texts = {}
  for i = 1, r.n do texts[i] = pretty(r[i]) end
  io.stdout:write(table.concat(texts, "\t"), "\n")
  io.stdout:flush()
end

-- Runs f as a task; a Ctrl-C meanwhile interrupts it: a hook stops Lua
-- code that computes, and the session's watcher cancels a task that waits.
local function run(S, f)
  local h = task.spawn(function()
    R.guard(true)
    local r = table.pack(xpcall(f, handler))
    R.guard(false)
    return r
  end)
  S.running = h
  local ok, r = h:wait()
  S.running = nil
  R.guard(false)
  if not ok then
    say(S, tostring(r) .. "\n", true)
  elseif not r[1] then
    say(S, tostring(r[2]) .. "\n", true)
  else
    show(table.pack(table.unpack(r, 2, r.n)))
  end
end

-- ---- a session -------------------------------------------------------------------

local function open(S)
  S.tty = R.open{ history = R.isatty() and M.history_path() or nil, complete = M.complete }
  -- Ctrl-C belongs to the REPL: nyx.orchestrate does not take it over
  -- while the REPL is open (see close)
  local runtime = require "nyx.runtime"
  S.runtime, S.trap = runtime, runtime.trap_signals
  runtime.trap_signals = function() S.wanted_trap = true end
  S.print = print
  S.watcher = task.spawn(function()
    while true do
      R.wait_interrupt()
      if S.running then S.running:cancel("interrupted!") end
    end
  end)
  if S.tty then
    -- what tasks print comes above the line being edited
    _G.print = function(...)
      local n, parts = select("#", ...), {}
      for i = 1, n do parts[i] = tostring((select(i, ...))) end
      R.above(table.concat(parts, "\t") .. "\n")
    end
  end
  -- the credentials nyx.pretty redacts are known from the first read
  local config = require "nyx.config"
  local ok, err = pcall(config.values)
  if not ok then
    say(S, ("nyx: %s (nyx.db calls fail until it can be reached)\n"):format(tostring(err)), true)
  end
  if S.tty then
    say(S, ("nyx %s (%s): the nyx API is in `nyx` (TAB completes); Ctrl-D or os.exit() leaves\n")
      :format(require("nyx.core").version, _VERSION))
  end
end

local function close(S)
  S.watcher:cancel()
  if S.tty and _G.print ~= S.print then _G.print = S.print end
  S.runtime.trap_signals = S.trap
  R.close()
  if S.wanted_trap then S.trap() end
end

local function loop(S)
  while true do
    local chunk = read_chunk(S)
    if chunk == nil then break end
    if type(chunk) == "function" then
      run(S, chunk)
    elseif type(chunk) == "string" then
      say(S, chunk .. "\n", true)
    end
  end
  if S.tty then io.stdout:write("\n") end
end

--- session(): a REPL on stdin until its end (Ctrl-D) or os.exit().
function M.session()
  local S = {}
  open(S)
  local ok, err = pcall(loop, S)
  close(S)
  if not ok then error(err, 0) end
end

--- with_script(fn, ...): runs fn(...) (the script) as a task and a REPL
-- next to it. When the script ends, one line says so; the REPL stays
-- until the user leaves, and then nyx waits for the script if it still
-- runs. A failed script makes nyx exit 1.
function M.with_script(fn, ...)
  local args = table.pack(...)
  local S = {}
  local failed
  local h = task.spawn(function()
    local r = table.pack(xpcall(fn, handler, table.unpack(args, 1, args.n)))
    if r[1] then
      say(S, "nyx: the script finished; the REPL stays open (Ctrl-D leaves)\n", true)
    else
      failed = true
      say(S, ("nyx: the script failed: %s\nnyx: the REPL stays open (Ctrl-D leaves)\n"):format(r[2]), true)
    end
  end)
  open(S)
  local ok, err = pcall(loop, S)
  close(S)
  if not ok then error(err, 0) end
  if h.status ~= "done" then
    io.stderr:write("nyx: waiting for the script to finish (Ctrl-C stops it)\n")
    h:wait()
  end
  -- said above, with its traceback: exit 1 without saying it again
  if failed then os.exit(1, true) end
end

return setmetatable(M, {
  __call = function(_, ...)
    if select("#", ...) > 0 then
      io.stderr:write(("nyx: 'nyx repl' takes no arguments (got '%s')\ntry 'nyx --help'\n"):format((...)))
      os.exit(2)
    end
    M.session()
  end,
})
