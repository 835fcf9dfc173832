--- nyx.llm: Claude calls, each one logged completely. The I/O (HTTP over
-- libcurl, retries, streaming, yielding the task while a call is in
-- flight) is C (nyx.claude); what to send, what it cost and what to record
-- is here, in Lua. docs/lua-api.md describes the interface.
local claude = require "nyx.claude"
local config = require "nyx.config"
local core = require "nyx.core"
local db = require "nyx.db"
local hot = require "nyx.hot"

-- nyx's own JSON (src/lua_json.c): integers stay integers, null is nil
local encode, decode = core.json_encode, core.json_decode

local M = {}

--- Defaults for the two fields the API requires, when a request leaves
-- them out: NYX_MODEL or the latest Sonnet, and 4096 tokens.
M.default_model = os.getenv("NYX_MODEL") or "claude-sonnet-5-5"
M.default_max_tokens = 4096

-- Fields of a request that are nyx's own and never sent to the API.
local NYX_FIELDS = { tree = true, agent = true, on_text = true, cache = true, beta = true, template = true }

local is_uuid = core.is_uuid -- the pattern ^%x{8}%-%x{4}%-%x{4}%-%x{4}%-%x{12}$, in C

local function argerror(why)
  error("bad argument #1 to 'complete' (" .. why .. ")", 3)
end

local function id_of(v, what, required)
  if v == nil then
    if required then argerror(what .. " is required: the node (or its id) the call belongs to") end
    return nil
  end
  local id = type(v) == "table" and v.id or v
  if type(id) ~= "string" or not is_uuid(id) then
    argerror(what .. " must be a node (table with an id) or a UUID string")
  end
  return id
end

local function cache_control(ttl)
  if ttl == true then ttl = "5m" end
  if ttl ~= "5m" and ttl ~= "1h" then argerror("cache must be true, \"5m\" or \"1h\"") end
  return ttl == "1h" and { type = "ephemeral", ttl = "1h" } or { type = "ephemeral" }
end

--- cached(text [, ttl]): a text block marked as a cache breakpoint ("5m"
-- by default, or "1h"), for system prompts and stable message prefixes.
function M.cached(text, ttl)
  local cc = ttl and cache_control(ttl) or { type = "ephemeral" }
  return { type = "text", text = text, cache_control = cc }
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The request's `cache` field: the stable prefix (the system prompt and
-- the tool definitions) gets a breakpoint, without hand-written blocks.
local function mark_prefix(body, ttl)
  local cc = cache_control(ttl)
  if type(body.system) == "string" then
    body.system = { { type = "text", text = body.system, cache_control = cc } }
  elseif type(body.system) == "table" and #body.system > 0 then
    body.system = copy(body.system)
    body.system[#body.system] = copy(body.system[#body.system])
    body.system[#body.system].cache_control = cc
  end
  if type(body.tools) == "table" and #body.tools > 0 then
    body.tools = copy(body.tools)
    body.tools[#body.tools] = copy(body.tools[#body.tools])
    body.tools[#body.tools].cache_control = cc
  end
end

-- The body to send as a table of its own: the request without nyx's own
-- fields, model and max_tokens defaulted, stream set for on_text.
local function request_copy(req, model, max_tokens, on_text)
  local body = {}
  for k, v in pairs(req) do
    if not NYX_FIELDS[k] then body[k] = v end
  end
  body.model, body.max_tokens = model, max_tokens
  if on_text then body.stream = true end
  return body
end

-- Breakpoints (cache_control) where the API takes them — tools, system
-- blocks, message content blocks, the top level — and the longest TTL
-- among them in seconds.
local function breakpoints(body)
  local n, ttl = 0, nil
  local function mark(cc)
    if type(cc) ~= "table" then return end
    n = n + 1
    local s = cc.ttl == "1h" and 3600 or 300
    if not ttl or s > ttl then ttl = s end
  end
  local function blocks(list)
    if type(list) ~= "table" then return end
    for i = 1, #list do
      local b = list[i]
      if type(b) == "table" then mark(b.cache_control) end
    end
  end
  mark(body.cache_control)
  blocks(body.tools)
  blocks(body.system)
  local msgs = body.messages
  for i = 1, #msgs do blocks(msgs[i].content) end
  return n, ttl
end

local function validate(model, max_tokens, msgs, system)
  if type(model) ~= "string" or model == "" then argerror("model must be a model id string") end
  if math.type(max_tokens) ~= "integer" or max_tokens < 1 then
    argerror("max_tokens must be a positive integer")
  end
  if type(msgs) ~= "table" or #msgs == 0 then argerror("messages must be a non-empty array of messages") end
  for i, m in ipairs(msgs) do
    if type(m) ~= "table" or (m.role ~= "user" and m.role ~= "assistant") then
      argerror(("messages[%d].role must be \"user\" or \"assistant\""):format(i))
    end
    if type(m.content) ~= "string" and type(m.content) ~= "table" then
      argerror(("messages[%d].content must be a string or an array of content blocks"):format(i))
    end
  end
  if system ~= nil and type(system) ~= "string" and type(system) ~= "table" then
    argerror("system must be a string or an array of text blocks")
  end
end

-- Assembles a streamed message from its events, as the docs define them.
local function assembler(on_text)
  local s = { blocks = {}, parts = {} }
  function s.on_event(event, data)
    local ev = decode(data)
    if type(ev) ~= "table" then
      s.failure = s.failure or { type = "invalid_response", message = "a " .. event .. " event whose data is not JSON" }
      return
    end
    if event == "message_start" then
      s.message = ev.message
    elseif event == "content_block_start" then
      s.blocks[ev.index + 1] = ev.content_block
      s.parts[ev.index + 1] = {}
    elseif event == "content_block_delta" then
      local d, parts = ev.delta, s.parts[ev.index + 1]
      if not parts then return end
      if d.type == "text_delta" then
        parts[#parts + 1] = d.text
        if on_text then on_text(d.text) end
      elseif d.type == "input_json_delta" then
        parts[#parts + 1] = d.partial_json
      elseif d.type == "thinking_delta" then
        parts[#parts + 1] = d.thinking
      elseif d.type == "signature_delta" then
        s.blocks[ev.index + 1].signature = d.signature
      end
    elseif event == "content_block_stop" then
      local b, text = s.blocks[ev.index + 1], table.concat(s.parts[ev.index + 1] or {})
      if not b then return end
      if b.type == "text" then b.text = text
      elseif b.type == "thinking" then b.thinking = text
      elseif b.type == "tool_use" or b.type == "server_tool_use" then
        b.input = text == "" and {} or decode(text) or { _unparsed = text }
      end
    elseif event == "message_delta" and s.message then
      for k, v in pairs(ev.delta or {}) do s.message[k] = v end
      s.message.usage = s.message.usage or {}
      for k, v in pairs(ev.usage or {}) do s.message.usage[k] = v end
    elseif event == "message_stop" then
      s.stopped = true
    elseif event == "error" then
      local e = ev.error or {}
      s.failure = { type = e.type or "api_error", message = e.message or "error event in the stream" }
    end -- ping and unknown events: ignored, as the versioning policy says
  end
  function s.finish()
    if s.failure then return nil, s.failure end
    if not s.message then return nil, { type = "invalid_response", message = "the stream had no message_start" } end
    if not s.stopped then return nil, { type = "incomplete_stream", message = "the stream ended before message_stop" } end
    s.message.content = s.blocks
    return s.message
  end
  return s
end

local function joined_text(content, field)
  local t = {}
  for _, b in ipairs(content or {}) do
    if b.type == field then t[#t + 1] = b.text end
  end
  return table.concat(t)
end

local function system_text(system)
  if type(system) == "string" then return system end
  if type(system) ~= "table" then return nil end
  local t = {}
  for _, b in ipairs(system) do t[#t + 1] = b.text end
  return table.concat(t, "\n\n")
end

-- The outcome of the HTTP exchange as a response or a failure.
local function interpret(out, stream, timeout)
  if out.error then
    if out.timed_out then
      return nil, { type = "timeout", message = ("no complete answer within %g s (llm_timeout_seconds)"):format(timeout) }
    end
    if stream.on_event and out.events > 0 then return stream.finish() end -- cut mid-stream
    return nil, { type = "connection_error", message = out.error }
  end
  if out.status ~= 200 then
    local body = out.body and decode(out.body)
    local e = type(body) == "table" and type(body.error) == "table" and body.error or {}
    return nil, { type = e.type or ("http_" .. out.status), message = e.message or ("HTTP " .. out.status) }
  end
  if stream.on_event then return stream.finish() end
  local resp = out.response -- decoded in C
  if type(resp) ~= "table" or type(resp.content) ~= "table" then
    return nil, { type = "invalid_response", message = "the answer is not a Messages API response" }
  end
  return resp
end

local INTERACTION_COLUMNS = {
  "id", "agent_id", "thought_tree_id", "provider", "model", "prompt_text", "system_prompt",
  "response_text", "request_timestamp", "response_timestamp", "token_count_input",
  "token_count_output", "cached_token_count", "cache_creation_input_tokens",
  "cache_read_input_tokens", "latency_ms", "cost_usd", "cost_without_cache_usd",
  "uses_prompt_caching", "cache_ttl_seconds", "cache_hit", "success", "error_message", "retry_count",
}
local DETAIL_COLUMNS = {
  "interaction_id", "request_id", "response_id", "http_status", "stop_reason", "error_type",
  "streamed", "usage", "rate_limit", "attempts", "prompt_template_id",
}

-- The prompt template version a request was made from (its `template`:
-- a version from nyx.prompts, or a rendering of one), or nil.
local function template_id(t)
  if type(t) ~= "table" then return nil end
  local id = t.id or (type(t.template) == "table" and t.template.id) or nil
  return type(id) == "string" and is_uuid(id) and id or nil
end

-- A call's rows are inserts nothing updates later: they may take the log
-- writer's second lane (nyx.db.log's append).
local APPEND, APPEND_NOWAIT = { append = true }, { append = true, wait = false }

-- A call's rows on their way to db.log: no frame keeps them once made
-- text (a call's argument is all that holds them there).
local held
local function held_rows()
  local rows = held
  held = nil
  return rows
end

--- complete(request): one Messages API call; see docs/lua-api.md.
function M.complete(req)
  if type(req) ~= "table" then argerror("expected a request table") end
  local tree_id = id_of(req.tree, "tree", true)
  local agent_id = id_of(req.agent, "agent", false)
  local on_text = req.on_text
  if on_text ~= nil and type(on_text) ~= "function" then argerror("on_text must be a function") end
  local model = req.model or M.default_model
  local max_tokens = req.max_tokens or M.default_max_tokens
  local streamed = req.stream
  if on_text then streamed = true end
  validate(model, max_tokens, req.messages, req.system)
  local body = req -- sent without nyx's own fields (claude.body leaves them out)
  if req.cache then
    body = request_copy(req, model, max_tokens, on_text)
    mark_prefix(body, req.cache)
  end
  local nbreak, ttl = claude.breakpoints(body)
  if not nbreak then nbreak, ttl = breakpoints(body) end
  if nbreak > 4 then
    argerror(("%d cache_control breakpoints; the API allows at most 4"):format(nbreak))
  end
  local guard = M.guard
  if guard then guard.before(tree_id, agent_id) end -- a budget may refuse
  local payload, prompt_text = claude.body(body, model, max_tokens, on_text ~= nil)
  if not payload then -- a key that is not a string: encoded as a copy, as ever
    body = request_copy(body, model, max_tokens, on_text)
    payload, prompt_text = encode(body), encode(body.messages)
  end
  local settings = config.values()
  local timeout = settings.llm_timeout_seconds or 60
  local stream = streamed and assembler(on_text) or {}
  local started = core.timestamp()
  local t0 = core.now()
  local sent, out = pcall(claude.request, payload, {
    stream = streamed, beta = req.beta, on_event = stream.on_event,
    max_retries = settings.default_retry_attempts or 3, timeout = timeout,
  })
  -- sent: not kept while the call's rows wait for their commit (a dead
  -- local stays on a suspended coroutine's stack, and is marked)
  payload = nil -- luacheck: ignore 311
  local cancelled = not sent and type(out) == "table" and out.type == "cancelled" and out or nil
  if not sent and not cancelled then error(out, 0) end
  if cancelled then -- the request was aborted (its task cancelled): still a row
    out = { status = 0, retries = 0, latency_ms = (core.now() - t0) * 1000, attempts = core.json_raw("[]") }
  end
  local finished = core.timestamp()
  local resp, failure = nil, cancelled
  if not cancelled then resp, failure = interpret(out, stream, timeout) end
  local usage = resp and resp.usage or {}
  local cost, without = nil, nil
  if resp then
    local pricing = hot.require("pricing", function(m) return type(m.cost) == "function" end)
    cost, without = pricing.cost(resp.model or model, usage)
  end
  local id = core.uuid()
  local text = resp and (out.text or joined_text(resp.content, "text")) or nil
  local read = usage.cache_read_input_tokens or 0
  local err_msg = failure and ("%s: %s%s"):format(failure.type, failure.message,
    out.request_id and (" (request-id " .. out.request_id .. ")") or "") or nil
  local write, how = guard and guard.log or db.log, APPEND
  if cancelled then write, how = db.log, APPEND_NOWAIT end
  local rows = {
    { table = "llm_interactions", columns = INTERACTION_COLUMNS, values = {
      id, agent_id, tree_id, "claude", resp and resp.model or model,
      prompt_text, system_text(body.system), text, started, finished,
      usage.input_tokens, usage.output_tokens, read, usage.cache_creation_input_tokens or 0, read,
      math.floor(out.latency_ms + 0.5), cost, without, nbreak > 0, ttl, read > 0,
      resp ~= nil, err_msg, out.retries,
    } },
    { table = "llm_call_details", columns = DETAIL_COLUMNS, values = {
      id, out.request_id, resp and resp.id, out.status, resp and resp.stop_reason,
      failure and failure.type, streamed == true, resp and resp.usage,
      out.headers, out.attempts, -- JSON already (core.json_raw)
      template_id(req.template),
    } },
  }
  -- While the rows wait for their commit (the agent with them: hundreds at
  -- once when PostgreSQL is the bottleneck), this frame keeps only what
  -- the rest of the call needs: db.log has made the rows text by then.
  local status, request_id, retries, latency_ms = out.status, out.request_id, out.retries, out.latency_ms
  prompt_text, body, stream, settings, out = nil, nil, nil, nil, nil -- luacheck: ignore 311
  held, rows = rows, nil -- luacheck: ignore 311
  local ok, log_err = pcall(write, held_rows(), how)
  if guard then guard.after(tree_id, usage, cost, resp ~= nil) end
  if cancelled then error(cancelled, 0) end
  if not ok then
    -- the answer could not be recorded: say so, and still hand it over
    error(core.error_object("log", "the call could not be recorded: " .. tostring(log_err),
                            { response = resp, cause = failure }), 2)
  end
  if failure then
    error(core.error_object(failure.type, failure.message, {
      status = status ~= 0 and status or nil, request_id = request_id,
      interaction_id = id, retries = retries,
    }), 2)
  end
  resp.text = text
  resp.interaction_id = id
  resp.cost_usd = cost
  resp.cost_without_cache_usd = without
  resp.latency_ms = latency_ms
  resp.request_id = request_id
  resp.retries = retries
  return resp
end

--- guard: set by the runtime (nyx.runtime) to enforce budgets: before(tree_id,
-- agent_id) may raise to refuse a call; after(tree_id, usage, cost, ok) counts
-- what a call spent; log(rows, opts) writes the call's rows (nyx.db.log, with the
-- agent's slots free meanwhile). nil: no budgets.
M.guard = nil

--- endpoint(): {base_url =, offline = bool}: where calls go (never the key).
M.endpoint = claude.endpoint

--- in_flight(): requests on the wire right now.
M.in_flight = claude.in_flight

return M
