--- nyx.strategy: what the strategies in lua/strategies/ share. Models by
-- role, prompts from templates (prompts/, nyx.prompts), strict JSON
-- replies with one repair request, and the steps several strategies take:
-- plan, answer, validate, synthesize. docs/lua-api.md, "Strategies", is
-- the reference.
local core = require "nyx.core"
local config = require "nyx.config"
local llm = require "nyx.llm"
local cjson = require "cjson.safe"

local M = {}

--- The roles a model is chosen for, and their defaults: a strong model
-- plans and judges, a cheap one answers leaves and validates. Each is the
-- system_config key model_ROLE (sql/0007_models_by_role.sql).
M.ROLES = {
  plan = "claude-opus-5-5",        -- decompositions (and what a planner answers itself)
  leaf = "claude-haiku-5-5",       -- leaves: atomic goals, direct attempts
  validate = "claude-haiku-5-5",   -- validators' verdicts
  council = "claude-sonnet-5-5",   -- council members' proposals
  judge = "claude-opus-5-5",       -- the council's judge and voters
  synthesize = "claude-sonnet-5-5", -- combining children's results
}

--- model(ctx, role [, override]): the model for a role. The first that is
-- set wins: override (a call's own), ctx.options.models[role],
-- ctx.options.model (every role), the NYX_MODEL environment variable,
-- system_config model_ROLE, then nyx.llm.default_model.
function M.model(ctx, role, override)
  if override then return override end
  if not M.ROLES[role] then
    error(("unknown model role '%s' (plan, leaf, validate, council, judge, synthesize)"):format(tostring(role)), 2)
  end
  local o = ctx and ctx.options
  if o then
    local m = type(o.models) == "table" and o.models[role]
    if m then return m end
    if o.model then return o.model end
  end
  local env = os.getenv("NYX_MODEL")
  if env and env ~= "" then return env end
  local v = config.get("model_" .. role)
  if type(v) == "string" and v ~= "" then return v end
  return llm.default_model
end

local function prompts() return require "nyx.prompts" end

--- request(system_name, user_name, vars): an LLM request from a system
-- template and a user template (their versions chosen by nyx.prompts,
-- lua/selection.lua), the system's stable prefix marked for caching.
-- Returns the request (messages, system, template) and the user prompt's
-- rendering.
function M.request(system_name, user_name, vars, sys_vars)
  local P = prompts()
  local sys = P.render(system_name, sys_vars or {})
  local user = P.render(user_name, vars)
  return {
    system = sys.system or sys.text,
    messages = { { role = "user", content = user.blocks or user.text } },
    template = user.template,
    templates = { sys.template, user.template },
  }, user
end

local function malformed(kind, why, text, texts)
  error(core.error_object(kind, why, { text = text, texts = texts }), 0)
end

--- json_reply(caller, req, check, kind): a call whose reply must be a JSON
-- object that check(obj) accepts (it returns the value, or nil and why).
-- A reply that is not gets one repair request (prompts/repair.prompt) in
-- the same conversation; a second bad reply raises an error of type kind
-- carrying the model's texts. Returns the value and the number of repairs.
function M.json_reply(caller, req, check, kind)
  local r = caller:complete(req)
  local text = r.text or ""
  local v, why = M.parse(text, check)
  if v ~= nil then return v, 0, r end
  local P = prompts()
  local fix = P.render("repair", { error = why, text = text:sub(1, 4000) })
  local msgs = {}
  for i, m in ipairs(req.messages) do msgs[i] = m end
  msgs[#msgs + 1] = { role = "assistant", content = text ~= "" and text or "(no text)" }
  msgs[#msgs + 1] = { role = "user", content = fix.blocks or fix.text }
  local node = caller.node
  if node then node.retries = (node.retries or 0) + 1 end
  local r2 = caller:complete({
    model = req.model, system = req.system, max_tokens = req.max_tokens, messages = msgs,
    template = fix.template, templates = { fix.template },
  })
  local text2 = r2.text or ""
  local v2, why2 = M.parse(text2, check)
  if v2 ~= nil then return v2, 1, r2 end
  malformed(kind, ("the model's reply is not valid after one repair request: %s"):format(why2), text2, { text, text2 })
end

--- parse(text, check): the first JSON object in text, checked; or nil, why.
-- The reply itself, or what a code fence holds, or the span from its
-- first "{" to its last "}", or its first balanced {...}: models wrap JSON
-- in prose and fences, and strings inside may hold braces.
function M.parse(text, check)
  local v = cjson.decode(text)
  if type(v) ~= "table" then
    local fenced = text:match("```%w*%s*(.-)%s*```")
    v = fenced and cjson.decode(fenced)
  end
  if type(v) ~= "table" then
    local a, b = text:find("{", 1, true), nil
    for i = #text, 1, -1 do if text:byte(i) == 125 then b = i; break end end
    v = a and b and b > a and cjson.decode(text:sub(a, b))
  end
  if type(v) ~= "table" then
    local obj = text:match("%b{}")
    v = obj and cjson.decode(obj)
  end
  if type(v) ~= "table" then
    return nil, text:find("{", 1, true) and "the reply's JSON object does not parse" or "the reply holds no JSON object"
  end
  if check then return check(v) end
  return v
end

--- check_plan(v): {subtasks = {{goal =}, ...}}, {answer = text} or
-- {atomic = true}; or nil, why.
function M.check_plan(v)
  if type(v.answer) == "string" and v.answer:find("%S") then return { answer = v.answer } end
  if v.atomic == true and (v.subtasks == nil or (type(v.subtasks) == "table" and #v.subtasks == 0)) then
    return { atomic = true }
  end
  if type(v.subtasks) ~= "table" or #v.subtasks == 0 then
    return nil, 'the reply has neither "answer" nor a non-empty "subtasks" list'
  end
  local subtasks = {}
  for i, s in ipairs(v.subtasks) do
    local goal = type(s) == "table" and s.goal or s
    if type(goal) ~= "string" or not goal:find("%S") then
      return nil, ("subtask %d has no goal"):format(i)
    end
    subtasks[i] = { goal = goal }
  end
  return { subtasks = subtasks }
end

--- check_verdict(v): {pass = bool, quality = 0..1, reasons = text}; or nil, why.
function M.check_verdict(v)
  if type(v.pass) ~= "boolean" then return nil, '"pass" must be true or false' end
  local q = tonumber(v.quality)
  if not q or q < 0 or q > 1 then return nil, '"quality" must be a number from 0 to 1' end
  return { pass = v.pass, quality = q, reasons = type(v.reasons) == "string" and v.reasons or "" }
end

--- check_vote(n): a check for {choice = 1..n, reasons = text}.
function M.check_vote(n)
  return function(v)
    local c = math.tointeger(tonumber(v.choice))
    if not c or c < 1 or c > n then return nil, ('"choice" must be a whole number from 1 to %d'):format(n) end
    return { choice = c, reasons = type(v.reasons) == "string" and v.reasons or "" }
  end
end

--- notes(agent): what was shared with the agent (ctx:share, the memory
-- strategy) as text for its prompt, or "".
function M.notes(agent)
  if not agent.shared then return "" end
  local parts = {}
  for _, c in ipairs(agent:shared()) do
    if type(c.memories) == "table" then
      for _, m in ipairs(c.memories) do
        parts[#parts + 1] = ("- %s: %s"):format(m.goal, tostring(m.result):sub(1, 600))
      end
    elseif c.text then
      parts[#parts + 1] = "- " .. tostring(c.text)
    end
  end
  if #parts == 0 then return "" end
  return "Results of similar past work, for reference:\n" .. table.concat(parts, "\n")
end

--- inner(ctx, self_name [, default]): the strategy named by
-- ctx.options.inner (default "decompose") for a strategy that wraps
-- another (validator, memory); subtasks the inner one starts run it, not
-- the wrapper (ctx.options is replaced by a copy saying so). Returns the
-- module.
function M.inner(ctx, self_name, default)
  local name = ctx.options.inner or default or "decompose"
  if name == self_name then
    error(("options.inner cannot be \"%s\" itself"):format(self_name), 0)
  end
  local mod = require("nyx.runtime").load_strategy(name)
  local opts = {}
  for k, v in pairs(ctx.options) do opts[k] = v end
  opts.strategy = name
  ctx.options = opts
  return mod
end

--- depth_limit(): system_config max_recursion_depth.
function M.depth_limit()
  return math.tointeger(tonumber(config.get("max_recursion_depth", 10))) or 10
end

-- ---- steps strategies share ------------------------------------------------

--- plan(ctx, node [, extra]): a planner agent answers node's goal or
-- splits it: {answer =}, {atomic = true} or {subtasks =}. extra: {feedback
-- = text (why a previous attempt failed), split = true (must split)}.
function M.plan(ctx, node, extra)
  local ok, plan = ctx:spawn{ type = "task", class = "planner", node = node, input = extra }:wait()
  if not ok then error(plan, 0) end
  return plan
end

--- answer(ctx, node [, input]): an answer agent's answer to node's goal.
function M.answer(ctx, node, input)
  local ok, a = ctx:spawn{ type = "task", class = "answer", node = node, input = input }:wait()
  if not ok then error(a, 0) end
  return a
end

--- validate(ctx, node, result): a validator agent's verdict on result as
-- an answer to node's goal, {pass =, quality =, reasons =}; recorded on
-- the node (metadata.validation, and the quality_score it feeds).
function M.validate(ctx, node, result)
  local ok, v = ctx:spawn{ type = "validator", class = "validator", node = node,
                           input = { goal = node.goal, result = result } }:wait()
  if not ok then error(v, 0) end
  node.validation = { pass = v.pass, quality = v.quality }
  local hist = node.metadata.validations or {}
  hist[#hist + 1] = v
  node.metadata.validations = hist
  node.metadata.validation = v
  return v
end

--- subtasks(ctx, node, plan [, opts [, how]]): runs plan.subtasks as child
-- nodes, each with a sub-orchestrator (opts.strategy: this one's by
-- default); a child refused for depth is answered directly by an answer
-- agent on node. how.ahead = true: each child is first planned here, by a
-- planner agent on it; a child it answers is done (no sub-orchestrator), an
-- atomic one gets an answer agent, and only a child that is split gets a
-- sub-orchestrator, given the plan (opts.plan), so its strategy must take
-- one (decompose does). Returns the gathered results text, the kids, the
-- results and the number that failed; raises when all failed.
function M.subtasks(ctx, node, plan, opts, how)
  local kids = ctx:children(plan.subtasks)
  local handles = {}
  if how and how.ahead then
    local Handle = require("nyx.runtime").Handle
    local planners = {}
    for i, kid in ipairs(kids) do planners[i] = ctx:spawn{ type = "task", class = "planner", node = kid } end
    -- in order: they were asked for in order and take slots in order
    for i, p in ipairs(planners) do
      local ok, kp = p:wait()
      if not ok or kp.answer then -- the planner's outcome is the child's
        handles[i] = p
        if ok then handles[i] = setmetatable({ kind = p.kind, id = p.id, outcome = { ok = true, result = kp.answer } }, Handle) end
      elseif kp.atomic then
        handles[i] = ctx:spawn{ type = "task", class = "answer", node = kids[i] }
      else
        local o = { plan = kp }
        for k, v in pairs(opts or {}) do o[k] = v end
        handles[i] = ctx:orchestrate(kids[i], o)
      end
    end
  else
    for i, kid in ipairs(kids) do handles[i] = ctx:orchestrate(kid, opts) end
  end
  local results, failed = {}, 0
  for i, r in ipairs(ctx:wait_all(handles)) do
    local e = r.error
    if not r.ok and type(e) == "table" and e.type == "recursion_limit" then
      r = { ok = false }
      r.ok, r.result = ctx:spawn{ type = "task", class = "answer", node = node,
                                  input = { goal = kids[i].goal } }:wait()
      if not r.ok then r.error = r.result end
    end
    if r.ok then
      results[i] = tostring(r.result)
    else
      failed = failed + 1
      results[i] = "(failed: " .. tostring(type(r.error) == "table" and r.error.message or r.error) .. ")"
    end
  end
  if failed == #kids then error(("all %d subtasks failed; the first: %s"):format(failed, results[1]), 0) end
  local parts = {}
  for i, kid in ipairs(kids) do parts[i] = ("%d. %s\n%s"):format(i, kid.goal, results[i]) end
  return table.concat(parts, "\n\n"), kids, results, failed
end

--- synthesize(ctx, node, gathered): one call combining the children's
-- results into an answer to node's goal.
function M.synthesize(ctx, node, gathered)
  local ok, a = ctx:spawn{ type = "task", class = "answer", node = node, input = {
    goal = node.goal, results = gathered, synthesize = true } }:wait()
  if not ok then error(a, 0) end
  return a
end

return M
