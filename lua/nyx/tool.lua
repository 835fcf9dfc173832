--- nyx.tool: tools agents use, in-process (Lua functions) or processes
-- (argv run by nyx.proc, no shell unless argv asks for one). Every run,
-- successful or not, is one tool_executions row. Agents hand tools to
-- Claude with agent:chat{tools = {...}}: each tool_use block the model
-- sends runs through here and its result goes back, until the model ends
-- its turn. docs/lua-api.md, "Tools", is the reference.
local core = require "nyx.core"
local db = require "nyx.db"
local config = require "nyx.config"
local runtime = require "nyx.runtime"

local M = {}

local registry = {} -- name -> tool

local function argerror(fn, why, level)
  error(("bad argument #1 to '%s' (%s)"):format(fn, why), (level or 2) + 1)
end

-- ---- input schemas (the subset of JSON Schema tools use) -------------------

local function json_type(v)
  local t = type(v)
  if t == "string" or t == "boolean" then return t end
  if t == "number" then return math.type(v) == "integer" and "integer" or "number" end
  if t == "table" then
    if next(v) == nil then return "object" end -- {} reads as either
    return #v > 0 and "array" or "object"
  end
  if v == nil then return "null" end
  return t
end

local function type_ok(want, v)
  local got = json_type(v)
  if want == got then return true end
  if want == "number" and got == "integer" then return true end
  if want == "array" and type(v) == "table" and next(v) == nil then return true end
  return false
end

--- validate(schema, value): nil if value matches schema, else why not
-- (type, properties, required, enum, items, additionalProperties = false).
function M.validate(schema, v, path)
  path = path or "input"
  if type(schema) ~= "table" then return nil end
  local want = schema.type
  if want then
    local ok = false
    for _, w in ipairs(type(want) == "table" and want or { want }) do
      if type_ok(w, v) then ok = true break end
    end
    if not ok then
      return ("%s must be %s, got %s"):format(path, type(want) == "table" and table.concat(want, " or ") or want, json_type(v))
    end
  end
  if schema.enum then
    local found = false
    for _, e in ipairs(schema.enum) do if e == v then found = true break end end
    if not found then return ("%s must be one of the allowed values"):format(path) end
  end
  if type(v) == "table" and (want == "object" or schema.properties) then
    for _, name in ipairs(schema.required or {}) do
      if v[name] == nil then return ("%s.%s is required"):format(path, name) end
    end
    local props = schema.properties or {}
    for k, val in pairs(v) do
      local sub = props[k]
      if sub then
        local why = M.validate(sub, val, path .. "." .. tostring(k))
        if why then return why end
      elseif schema.additionalProperties == false then
        return ("%s.%s is not a known property"):format(path, tostring(k))
      end
    end
  end
  if type(v) == "table" and want == "array" and schema.items then
    for i, val in ipairs(v) do
      local why = M.validate(schema.items, val, ("%s[%d]"):format(path, i))
      if why then return why end
    end
  end
  return nil
end

-- ---- registering --------------------------------------------------------------

local NAME = "^[%w_%-]+$"

--- register{name =, class =, description =, input_schema =, run =
-- function(params, agent) ... end} (in-process), or {..., argv = {...} or
-- function(params) return argv [, {stdin =, cwd =, env =}] end, timeout =,
-- max_output =, ok_codes = {0}} (a process). retries = n runs a failed
-- tool again up to n times. Returns the tool.
function M.register(spec)
  if type(spec) ~= "table" then argerror("register", "expected a table {name =, run = or argv =, ...}") end
  local name = spec.name
  if type(name) ~= "string" or #name > 50 or not name:match(NAME) then
    argerror("register", "name must be 1-50 letters, digits, _ or - (the API's tool name rules)")
  end
  local kind
  if spec.run ~= nil then
    if type(spec.run) ~= "function" then argerror("register", "run must be a function") end
    kind = "lua"
  elseif spec.argv ~= nil then
    if type(spec.argv) ~= "function" and (type(spec.argv) ~= "table" or #spec.argv == 0) then
      argerror("register", "argv must be a non-empty array of strings or a function(params)")
    end
    kind = "process"
  else
    argerror("register", "give run = function(params, agent) or argv = {...}")
  end
  if spec.input_schema ~= nil and type(spec.input_schema) ~= "table" then
    argerror("register", "input_schema must be a table (a JSON Schema)")
  end
  local class = spec.class or kind
  if type(class) ~= "string" or #class > 100 then argerror("register", "class must be a string of at most 100 characters") end
  local t = {
    name = name, class = class, kind = kind, description = spec.description or name,
    input_schema = spec.input_schema or { type = "object" }, run = spec.run, argv = spec.argv,
    timeout = spec.timeout, max_output = spec.max_output, retries = math.tointeger(spec.retries) or 0,
    ok_codes = spec.ok_codes or { 0 },
  }
  registry[name] = t
  return t
end

--- get(name): the registered tool, or nil.
function M.get(name) return registry[name] end

--- list(): the names of the registered tools, sorted.
function M.list()
  local names = {}
  for n in pairs(registry) do names[#names + 1] = n end
  table.sort(names)
  return names
end

--- unregister(name)
function M.unregister(name) registry[name] = nil end

-- ---- running --------------------------------------------------------------------

local COLUMNS = { "id", "agent_id", "thought_tree_id", "tool_name", "tool_class", "input_parameters",
                  "output_result", "stdout", "stderr", "started_at", "completed_at", "duration_ms",
                  "success", "exit_code", "error_message", "retry_count" }

local function message_of(e)
  if type(e) == "table" and e.message then return tostring(e.message) end
  return tostring(e)
end

local function once_process(t, params)
  local argv, extra = t.argv, nil
  if type(argv) == "function" then argv, extra = argv(params) end
  extra = extra or {}
  local proc = require "nyx.proc"
  local timeout = extra.timeout or t.timeout or tonumber(config.get("tool_timeout_seconds", 30))
  local r = proc.run{ argv = argv, stdin = extra.stdin, cwd = extra.cwd, env = extra.env,
                      timeout = timeout, max_output = t.max_output }
  local ok = not r.timed_out and r.exit_code ~= nil and not r.cancelled
  if ok then
    ok = false
    for _, c in ipairs(t.ok_codes) do if c == r.exit_code then ok = true end end
  end
  local why
  if not ok then
    if r.cancelled then why = "cancelled"
    elseif r.timed_out then why = ("timed out after %g s (tool_timeout_seconds); the process group was killed"):format(timeout)
    elseif r.signal then why = ("killed by signal %d"):format(r.signal)
    else why = ("exit code %d"):format(r.exit_code) end
    local tail = (r.stderr or ""):match("([^\n]+)\n?$")
    if tail then why = why .. ": " .. tail:sub(1, 200) end
  end
  local result = { exit_code = r.exit_code, signal = r.signal, timed_out = r.timed_out or nil,
                   stdout_truncated = r.stdout_truncated or nil, stderr_truncated = r.stderr_truncated or nil,
                   stdout = r.stdout, stderr = r.stderr }
  return ok, result, why
end

--- run(agent, name, params): runs the tool for the agent (its node is the
-- row's thought_tree_id); returns the tool's result, or raises a
-- "tool_error" (fields tool, result, exit_code, stdout, stderr) after its
-- retries. One tool_executions row either way.
function M.run(agent, name, params)
  if getmetatable(agent) ~= runtime.Agent then argerror("run", "the first argument must be an agent (tools run for an agent)") end
  local t = registry[name]
  if not t then
    error(core.error_object("tool_error", ("no tool named '%s' is registered"):format(tostring(name)), { tool = name }), 2)
  end
  params = params or {}
  local why = M.validate(t.input_schema, params)
  if why then
    error(core.error_object("tool_error", ("%s: %s"):format(name, why), { tool = name }), 2)
  end
  local started, t0 = core.timestamp(), core.now()
  local ok, result, err
  local tries = 0
  repeat
    tries = tries + 1
    if t.kind == "process" then
      local good, a, b, c = pcall(once_process, t, params)
      if good then ok, result, err = a, b, c
      else ok, result, err = false, nil, message_of(a) end
    else
      local good, res = pcall(t.run, params, agent)
      ok, result, err = good, good and res or nil, not good and message_of(res) or nil
    end
  until ok or tries > t.retries or runtime.stopping()
  local stdout, stderr, code
  local out = result
  if t.kind == "process" and type(result) == "table" then
    stdout, stderr, code = result.stdout, result.stderr, result.exit_code
    out = { exit_code = result.exit_code, signal = result.signal, timed_out = result.timed_out,
            stdout_truncated = result.stdout_truncated, stderr_truncated = result.stderr_truncated }
  end
  local stored = out
  if type(stored) == "table" and getmetatable(stored) then stored = tostring(stored) end
  if type(stored) == "function" or type(stored) == "userdata" or type(stored) == "thread" then stored = tostring(stored) end
  db.log({ { table = "tool_executions", columns = COLUMNS, values = {
    core.uuid(), agent.id, agent.node.id, name, t.class, params, stored, stdout, stderr,
    started, core.timestamp(), math.floor((core.now() - t0) * 1000 + 0.5), ok, code, err, tries - 1,
  } } })
  if not ok then
    error(core.error_object("tool_error", ("%s: %s"):format(name, err or "failed"), {
      tool = name, result = result, exit_code = code, stdout = stdout, stderr = stderr, retries = tries - 1,
    }), 2)
  end
  return result
end

--- agent:tool(name, params): nyx.tool.run(agent, name, params).
function runtime.Agent:tool(name, params)
  return M.run(self, name, params)
end

local function as_text(v)
  if type(v) == "string" then return v end
  if type(v) == "table" and v.stdout and v.exit_code then return v.stdout end
  local ok, s = pcall(core.json_encode, v)
  return ok and s or tostring(v)
end

--- agent:chat(request): nyx.llm.complete with tools handed to the model:
-- request.tools is a list of registered tool names (only these can be
-- reached). Each tool_use block runs through nyx.tool.run (input that does
-- not match the tool's schema is returned to the model as an error, not
-- run) and the results go back, until the model stops asking for tools or
-- request.max_turns (8) is reached (a "turn_limit" error). Returns the last
-- response, with turns (calls made) and tool_calls.
function runtime.Agent:chat(req)
  if type(req) ~= "table" then argerror("chat", "expected a request table") end
  local allowed, defs = {}, {}
  for i, name in ipairs(req.tools or {}) do
    local t = registry[name]
    if not t then argerror("chat", ("no tool named '%s' is registered"):format(tostring(name))) end
    allowed[name] = t
    defs[i] = { name = t.name, description = t.description, input_schema = t.input_schema }
  end
  local max_turns = math.tointeger(req.max_turns) or 8
  local body = {}
  for k, v in pairs(req) do
    if k ~= "tools" and k ~= "max_turns" then body[k] = v end
  end
  if #defs > 0 then body.tools = defs end
  local messages = {}
  for i, m in ipairs(req.messages or {}) do messages[i] = m end
  local calls = 0
  for turn = 1, max_turns do
    body.messages = messages
    local r = self:complete(body)
    if r.stop_reason ~= "tool_use" then
      r.turns, r.tool_calls = turn, calls
      return r
    end
    messages[#messages + 1] = { role = "assistant", content = r.content }
    local results = {}
    for _, b in ipairs(r.content) do
      if b.type == "tool_use" then
        calls = calls + 1
        local t, content, is_error = allowed[b.name]
        if not t then
          content, is_error = ("no tool named '%s' was given to this agent"):format(tostring(b.name)), true
        else
          local why = M.validate(t.input_schema, b.input or {})
          if why then
            content, is_error = "the input does not match the tool's schema: " .. why, true
          else
            local ok, res = pcall(M.run, self, b.name, b.input or {})
            if ok then content = as_text(res) else content, is_error = message_of(res), true end
          end
        end
        results[#results + 1] = { type = "tool_result", tool_use_id = b.id, content = content, is_error = is_error }
      end
    end
    messages[#messages + 1] = { role = "user", content = results }
  end
  error(core.error_object("turn_limit", ("the model still asked for tools after %d turns (max_turns)"):format(max_turns),
                          { turns = max_turns, tool_calls = calls }), 2)
end

return M
