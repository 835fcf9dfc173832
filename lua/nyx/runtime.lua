--- nyx.runtime: orchestrators and agents on the event loop. An
-- orchestrator runs a strategy (lua/strategies/NAME.lua) on a thought-tree
-- node; the strategy spawns agents (coroutines with their agents row) and,
-- where a subtask is still too big, sub-orchestrators on child nodes: the
-- same pattern at every level. docs/lua-api.md, "Orchestration", is the
-- reference.
--
-- What scripts cannot break lives in C (nyx.limits): the slot pools that
-- bound active agents (system_config max_concurrent_agents in the process,
-- the orchestrator's max_concurrent_agents among its own), FIFO and
-- without spinning, and the recursion check. Rows are written through the
-- log writer (nyx.db.log): everything that happens in one loop turn goes
-- in one statement, in order.
local core = require "nyx.core"
local db = require "nyx.db"
local task = require "nyx.task"
local limits = require "nyx.limits"
local config = require "nyx.config"
local hot = require "nyx.hot"
local tree = require "nyx.tree"
local llm = require "nyx.llm"

local M = {}

local now = core.timestamp
local NOWAIT = { wait = false }
local TERMINAL = { completed = true, failed = true, cancelled = true }

M.AGENT_TYPES = { "task", "council", "validator", "memory" }
local AGENT_TYPE = { task = true, council = true, validator = true, memory = true }

-- Live objects of this process, for steering, messages and Ctrl-C.
local agents, orchestrators = {}, {}      -- id -> object
-- task handle -> agent, while the agent runs (a strong table, emptied as
-- agents finish: as weak keys it would be an ephemeron table whose values
-- lead to other keys, which the collector can only clear slowly)
local agent_of_task = {}
local node_budget = setmetatable({}, { __mode = "v" })   -- node id -> budget
local live_nodes = setmetatable({}, { __mode = "v" })    -- node id -> node, while worked
local stopping = nil                      -- "SIGINT"/"SIGTERM" once stopping
local trapped = false                     -- trap_signals has run
local counters = { agents = 0, orchestrators = 0, refused = 0, backpressure = 0 }

local function log(rows) db.log(rows, NOWAIT) end
local log_backlog, log_drain = db.log_backlog, db.log_drain

--- on: hooks for views (nyx.progress), each nil or a function that must
-- not raise: on.node(node, status) when a node is made (pending) or
-- changes status, on.agent(agent) when an agent's row is written,
-- on.call(tree_id, usage, cost, ok) when an LLM call has finished.
M.on = {}
local on = M.on

--- log_backlog_max: when more values than this wait for the log writer's
-- next batch (nyx.db.log_backlog), a new LLM call waits until half of that
-- is left (nyx.db.log_drain), its agent keeping its slots. When the model
-- answers faster than PostgreSQL takes the rows, this keeps what waits to
-- be written (and the agents waiting on it) bounded instead of growing with
-- the tree: a B=5 D=6 tree at zero delay peaks at 123-130 MB instead of
-- 150-200, in about the same time. 40,000 values: some 5,000 rows, about
-- 0.2 s of PostgreSQL's work on a 2-core machine. nil: no bound.
M.log_backlog_max = 40000

-- Rows an operation produces go out together, in one nyx.db.log call:
-- queue() them, and commit() before the operation ends or yields.
local pending = {}
local function queue(row) pending[#pending + 1] = row end
local function commit()
  if pending[1] == nil then return end
  local rows = pending
  pending = {}
  db.log(rows, NOWAIT)
end

local function setting(key, default)
  local v = config.values()[key]
  if v == nil then return default end
  return v
end

local function int_setting(key, default)
  local v = math.tointeger(tonumber(setting(key, default)))
  return v or default
end

local function raise(type, message, fields)
  error(core.error_object(type, message, fields), 0)
end

-- ---- the process-wide pool ------------------------------------------------

local global, global_limit
local pump_gate -- the start gate's pump (run_orchestrator): a slot handed on may let one in
-- Starts on their way to the slot queue: orchestrators started (or let
-- through the start gate) whose task has not run yet, agents spawned
-- whose task has not asked for its slot yet. The gate counts them with
-- the agents waiting for a slot.
local on_the_way = 0

-- What is counted on its way to the slot queue stops counting (it runs,
-- or was cancelled before it ever ran).
local function arrived(x)
  if x.on_the_way then
    x.on_the_way, on_the_way = nil, on_the_way - 1
    pump_gate()
  end
end

local function global_pool()
  local limit = int_setting("max_concurrent_agents", 10)
  if limit < 1 then limit = 1 end
  local changed = global and limit ~= global_limit
  if not global then
    global = limits.pool(limit, "max_concurrent_agents")
  elseif changed then
    global:set_limit(limit)
  end
  global_limit = limit
  if changed then pump_gate() end -- a higher limit: more may start
  return global
end

-- ---- nodes ------------------------------------------------------------------

local NODE_COLUMNS = { "id", "parent_id", "root_id", "depth", "goal", "status", "metadata",
                       "created_at", "updated_at" }
local NODE_STATUS = { "id", "status", "completed_at", "metadata" }

-- A child node of parent, queued (commit() sends it).
local function new_node(parent, goal, metadata)
  if type(goal) ~= "string" or not goal:find("%S") then
    error("bad argument (a subtask's goal must be a non-empty string)", 3)
  end
  local id, ts = core.uuid(), now()
  local n = setmetatable({
    id = id, parent_id = parent.id, root_id = parent.root_id, depth = parent.depth + 1,
    goal = goal, status = "pending", metadata = metadata or {}, created_at = ts, updated_at = ts,
  }, tree.Node)
  queue{ table = "thought_trees", columns = NODE_COLUMNS,
          values = { id, n.parent_id, n.root_id, n.depth, goal, "pending", n.metadata, ts, ts } }
  node_budget[id] = node_budget[parent.id]
  if on.node then on.node(n, "pending") end
  -- the parent judges, once done, how much each child's result contributed
  local kids = parent.kids
  if not kids then kids = {}; parent.kids = kids end
  kids[#kids + 1] = n
  return n
end

-- ---- scores -----------------------------------------------------------------

-- A result as text (tables as JSON), for judging how much of it a child gave.
local function text_of(v)
  if type(v) == "string" then return v end
  if type(v) == "table" and not getmetatable(v) then
    local ok, j = pcall(core.json_encode, v)
    if ok and j then return j end
  end
  return tostring(v)
end

-- lua/scoring.lua gives a finished node its scores; it follows its file.
local function scoring_check(m)
  return type(m) == "table" and type(m.score) == "function" and type(m.usefulness) == "function",
         "scoring returns a table with score(n) and usefulness(child_result, parent_result)"
end
local function scoring() return (hot.require("scoring", scoring_check)) end

local SCORE_COLUMNS = { "success_score", "quality_score", "speed_score", "usefulness_score",
                        "overall_weight", "importance_level" }
local NODE_FINAL = { "id", "status", "completed_at", "metadata", table.unpack(SCORE_COLUMNS) }
local NODE_SCORES = { "id", table.unpack(SCORE_COLUMNS) }

-- What scoring.score is given about a node (docs/lua-api.md, "Scoring").
local function score_input(n)
  local kids = n.kids
  local children
  if kids then
    children = { total = #kids, ok = 0, failed = 0 }
    for _, k in ipairs(kids) do
      if k.status == "completed" then children.ok = children.ok + 1
      elseif TERMINAL[k.status] then children.failed = children.failed + 1 end
    end
  end
  local t0 = n.started
  return {
    status = n.status, depth = n.depth, kind = n.kind or "node",
    elapsed_ms = t0 and math.floor((core.now() - t0) * 1000 + 0.5) or 0,
    children = children, validation = n.validation, usefulness = n.usefulness,
    retries = n.retries or 0, llm = n.llm,
  }
end

-- Templates' records: the outcomes of the nodes that used each version,
-- summed here and written by nyx.prompts (flush_template_stats).
local template_stats = {} -- template id -> {n =, sum =}

local stats_nodes, stats_at, stats_task = 0, 0, nil

--- flush_template_stats(): writes the template records summed so far
-- (nyx.prompts.record, one statement per version). nyx.orchestrate calls
-- it at the end; while a tree runs it happens in the background at most
-- once a second (or every 100 nodes), so selection learns as it goes.
local function flush_template_stats()
  if next(template_stats) == nil then return end
  local stats = template_stats
  template_stats, stats_nodes, stats_at = {}, 0, core.now()
  local P = require "nyx.prompts"
  for id, t in pairs(stats) do
    local ok, err = pcall(P.record, id, t.sum, t.n)
    if not ok then
      io.stderr:write(("nyx: the record of prompt template %s could not be written: %s\n")
        :format(id, tostring(err):match("^[^\n]*")))
    end
  end
end
M.flush_template_stats = flush_template_stats

local function flush_soon()
  stats_nodes = stats_nodes + 1
  if stats_task or (stats_nodes < 100 and core.now() - stats_at < 1) then return end
  if not task.current() then return flush_template_stats() end
  stats_task = task.spawn(function()
    local ok, err = pcall(flush_template_stats)
    stats_task = nil
    if not ok then error(err, 0) end
  end)
end

-- A finished node is scored as it was when it finished: what the first
-- scoring was given is kept (n.ended) for the parent's judgment, which
-- adds only the usefulness. Measured again then, its elapsed time would
-- run on to the parent's end, and its children would be forgotten.
local function score_of(n)
  local input = n.ended
  if input then input.usefulness = n.usefulness else input = score_input(n) end
  return scoring().score(input), input
end

local function score_values(n)
  local ok, s, input = pcall(score_of, n)
  if not ok or type(s) ~= "table" then
    io.stderr:write(("nyx: scoring node %s failed: %s\n"):format(n.id, tostring(s):match("^[^\n]*")))
    return nil
  end
  n.scores, n.ended = s, input
  return s
end

local function set_node_status(n, status)
  n.status = status
  if on.node then on.node(n, status) end
  n.completed_at = TERMINAL[status] and now() or nil
  n.ended = nil -- scored anew as it is now
  if status == "in_progress" then
    n.started = n.started or core.now()
    live_nodes[n.id] = n
  end
  local s = TERMINAL[status] and score_values(n)
  if not s then
    queue{ table = "thought_trees", update = true, columns = NODE_STATUS,
           values = { n.id, status, n.completed_at, n.metadata } }
    return
  end
  queue{ table = "thought_trees", update = true, columns = NODE_FINAL,
         values = { n.id, status, n.completed_at, n.metadata, s.success_score, s.quality_score,
                    s.speed_score, s.usefulness_score, s.overall_weight, s.importance_level } }
  if n.templates then
    for id in pairs(n.templates) do
      local t = template_stats[id]
      if not t then t = { n = 0, sum = 0 }; template_stats[id] = t end
      t.n, t.sum = t.n + 1, t.sum + (s.success_score or 0)
    end
    flush_soon()
  end
end

-- Once a node has its result, it judges its children: scoring.usefulness
-- of each finished child's result to its own, and the child's scores are
-- written again with it. Children let go of after.
local function judge_children(n, result)
  local kids = n.kids
  if not kids then return end
  n.kids = nil
  local sc = scoring()
  local parent_text = result ~= nil and text_of(result) or nil
  for _, k in ipairs(kids) do
    if TERMINAL[k.status] and k.usefulness == nil then
      local child = k.status == "completed" and k.metadata.result or nil
      local ok, u = pcall(sc.usefulness, child, parent_text, { parent = n, child = k })
      if ok and type(u) == "number" then
        k.usefulness = u
        local s = score_values(k)
        k.ended = nil -- judged: nothing scores it again
        if s then
          queue{ table = "thought_trees", update = true, columns = NODE_SCORES,
                 values = { k.id, s.success_score, s.quality_score, s.speed_score, s.usefulness_score,
                            s.overall_weight, s.importance_level } }
        end
      end
    end
  end
end

-- A result as it can be kept in JSONB metadata.
local function storable(v)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return v end
  if t == "table" and not getmetatable(v) then
    local ok, s = pcall(core.json_encode, v)
    if ok and s then return v end
  end
  if v == nil then return nil end
  return tostring(v)
end

local function message_of(err)
  if type(err) == "table" and err.message then return tostring(err.message) end
  return tostring(err)
end

-- A node that failed: the error's message in metadata.error, and what
-- else a structured error carries (its type, the model's text, ...) in
-- metadata.error_details.
local function fail_node(n, err, status)
  n.metadata.error = message_of(err)
  if type(err) == "table" and err.type then
    local d = {}
    for k, v in pairs(err) do
      if k ~= "message" and k ~= "traceback" then d[k] = storable(v) end
    end
    n.metadata.error_details = d
  end
  set_node_status(n, status)
  n.kids = nil
end

-- ---- budgets ----------------------------------------------------------------

-- A budget: limits {usd =, tokens =, calls =} and what was spent under it,
-- chained to the budget of the enclosing subtree; a call counts against
-- every budget up the chain.
local function new_budget(lim, parent, spent)
  if not lim and not parent then return nil end
  return { limit = lim or {}, parent = parent, spent = spent or { usd = 0, tokens = 0, calls = 0 } }
end

local function budget_check(b)
  while b do
    local l, s = b.limit, b.spent
    local over = (l.calls and s.calls >= l.calls and "calls") or
                 (l.tokens and s.tokens >= l.tokens and "tokens") or
                 (l.usd and s.usd >= l.usd and "usd")
    if over then
      raise("budget_exceeded", ("budget exhausted: %s spent %s of %s; no new LLM call starts in this subtree")
        :format(over, tostring(s[over]), tostring(l[over])), { budget = l, spent = s, limit = over })
    end
    b = b.parent
  end
end

-- What the subtree under node_id has spent so far, from llm_interactions.
local function spent_under(node_id)
  local r = db.query([[
    WITH RECURSIVE t AS (SELECT id FROM thought_trees WHERE id = $1
                         UNION ALL SELECT n.id FROM thought_trees n JOIN t ON n.parent_id = t.id)
    SELECT count(*)::bigint AS calls,
           coalesce(sum(coalesce(token_count_input, 0) + coalesce(token_count_output, 0) +
                        coalesce(cache_creation_input_tokens, 0) + coalesce(cache_read_input_tokens, 0)), 0)::bigint AS tokens,
           coalesce(sum(cost_usd), 0)::float8 AS usd
    FROM llm_interactions WHERE thought_tree_id IN (SELECT id FROM t)]], node_id)[1]
  return { calls = r.calls, tokens = r.tokens, usd = r.usd }
end

local function check_budget_spec(b, fn)
  if b == nil then return nil end
  if type(b) ~= "table" then error(("bad argument #2 to '%s' (budget must be a table {usd =, tokens =, calls =})"):format(fn), 3) end
  for k, v in pairs(b) do
    if k ~= "usd" and k ~= "tokens" and k ~= "calls" then
      error(("bad argument #2 to '%s' (unknown budget field '%s': usd, tokens, calls)"):format(fn, tostring(k)), 3)
    end
    if type(v) ~= "number" or v < 0 then
      error(("bad argument #2 to '%s' (budget.%s must be a number >= 0)"):format(fn, k), 3)
    end
  end
  return b
end

-- ---- agents -----------------------------------------------------------------

local Agent = {}
Agent.__index = Agent
Agent.__name = "nyx.agent"

local AGENT_COLUMNS = { "id", "thought_tree_id", "agent_type", "agent_class", "status", "spawned_by",
                        "created_at", "max_recursion_depth", "current_recursion_depth", "context", "state" }
local AGENT_STATUS = { "id", "status", "completed_at", "state" }
local ORCH_ACTIVE = { "id", "current_active_agents" }

local function write_agent(a)
  if on.agent then on.agent(a) end
  queue{ table = "agents", update = true, columns = AGENT_STATUS,
         values = { a.id, a.status, a.completed_at, a.state } }
end

local function write_active(o)
  if not o.row then return end -- its row, when written, carries the count
  queue{ table = "orchestrators", update = true, columns = ORCH_ACTIVE, values = { o.id, o.active } }
end

-- Takes the agent's slots: its orchestrator's, then the process's; waits
-- (FIFO) for each. back: the agent takes back slots it gave up while it
-- waited, ahead of agents that have not started. quiet: the count in the
-- orchestrators row is not written (a give-back of a few milliseconds).
local function take_slots(a, back, quiet)
  if stopping then raise("cancelled", "nyx is stopping (" .. stopping .. "): no new work starts") end
  local c = a.cancelled or (a.orchestrator and a.orchestrator.cancelled)
  if c then error(c, 0) end -- steered: its subtree was cancelled
  local o = a.orchestrator
  if o then o.pool:acquire(back) end
  global_pool():acquire(back)
  a.holding = true
  if o then
    o.active = o.active + 1
    if not quiet then write_active(o) end
  end
end

local function give_slots(a, quiet)
  if not a.holding then return end
  a.holding = false
  global:release()
  pump_gate()
  local o = a.orchestrator
  if o then
    o.pool:release()
    o.active = o.active - 1
    if not quiet then write_active(o) end
  end
end

local function current_agent()
  local t = task.current()
  return t and agent_of_task[t]
end

-- Runs fn while the current agent (if any) gives its slots back: it only
-- waits, so others may work (slots count agents doing work).
local function waiting(fn, ...)
  local a = current_agent()
  if not (a and a.holding) then return fn(...) end
  give_slots(a)
  commit()
  local r = table.pack(pcall(fn, ...))
  take_slots(a, true)
  commit()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- Rows handed to db.log through take_handed(), so that no frame keeps
-- their tables while they wait for their commit: db.log has made them
-- text (and a call's argument is all that holds them there).
local handed = {}
local function take_handed()
  local rows = handed[1]
  handed[1] = nil
  return rows
end

llm.guard = {
  -- while an LLM call's rows commit, its agent's slots serve others
  log = function(rows, opts)
    local a = current_agent()
    if not (a and a.holding) then return db.log(rows, opts) end
    give_slots(a, true)
    handed[1], rows = rows, nil -- luacheck: ignore 311
    local ok, err = pcall(db.log, take_handed(), opts)
    take_slots(a, true, true)
    if not ok then error(err, 0) end
    return true
  end,
  before = function(tree_id)
    local t = task.current()
    if t and t.cancelled then raise("cancelled", "the call's task was cancelled: no new LLM call starts") end
    local high = M.log_backlog_max
    if high and t and log_backlog() > high then
      counters.backpressure = counters.backpressure + 1
      log_drain(high // 2)
      if stopping then raise("cancelled", "nyx is stopping (" .. stopping .. "): no new LLM call starts") end
    end
    local b = node_budget[tree_id]
    if not b then return end
    budget_check(b)
    while b do b.spent.calls = b.spent.calls + 1; b = b.parent end
  end,
  after = function(tree_id, usage, cost, ok)
    if on.call then on.call(tree_id, usage, cost, ok) end
    local b = node_budget[tree_id]
    local tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0) +
                   (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    local n = live_nodes[tree_id]
    if n then
      local l = n.llm
      if not l then l = { calls = 0, tokens = 0, cost_usd = 0 }; n.llm = l end
      l.calls, l.tokens, l.cost_usd = l.calls + 1, l.tokens + tokens, l.cost_usd + (cost or 0)
    end
    while b do
      b.spent.tokens = b.spent.tokens + tokens
      b.spent.usd = b.spent.usd + (cost or 0)
      b = b.parent
    end
  end,
}

-- Handles: what spawn and orchestrate return.
local Handle = {}
Handle.__index = Handle
Handle.__name = "nyx.agent.handle"

local function finished(h)
  local o = h.outcome
  if o.ok then return true, o.result end
  return false, o.error
end

-- Waits for h's task. One cancelled before it ever ran ended without
-- running its code: its error is the outcome.
local function settle(h)
  if h.outcome then return end
  local ok, err = h.task:wait()
  if not h.outcome then h.outcome = { ok = false, error = ok and "ended without an outcome" or err } end
end

--- handle:wait(): true, result or false, error once the agent (or
-- sub-orchestrator) is done. An agent waiting here gives its slots back.
function Handle:wait()
  if not self.outcome then waiting(settle, self) end
  return finished(self)
end

--- handle:done(): whether it has finished.
function Handle:done() return self.outcome ~= nil end

function Handle:__tostring()
  return ("%s %s (%s)"):format(self.kind, self.id, self.outcome and (self.outcome.ok and "completed" or "failed") or "running")
end

--- wait_all(handles): waits for each; a list, in order, of {ok = true,
-- result = r} or {ok = false, error = e}.
function M.wait_all(handles)
  local out = {}
  waiting(function()
    for i, h in ipairs(handles) do
      settle(h)
      out[i] = h.outcome
    end
  end)
  return out
end

local function resolve_class(class)
  local mod, version = hot.require("agents." .. class, function(m)
    return type(m) == "function" or (type(m) == "table" and type(m.run) == "function"), "an agent class returns a function or a table with run"
  end, 0)
  local run = type(mod) == "table" and mod.run or mod
  return run, version
end

local function traceback(e)
  if type(e) == "table" then return e end
  return debug.traceback(tostring(e), 2)
end

-- The agent's life, in its own task.
local function agent_main(a, run, input)
  arrived(a) -- in the slot queue from here (or at work)
  local node = a.node
  local refusal = limits.depth(node.depth, int_setting("max_recursion_depth", 10), "max_recursion_depth (system_config)")
  if not refusal and a.parent then
    refusal = limits.depth(a.depth, a.parent.max_depth, "the spawning agent's max_recursion_depth")
  end
  if refusal then
    agents[a.id] = nil
    counters.refused = counters.refused + 1
    a.status, a.completed_at, a.state.error = "failed", now(), refusal
    write_agent(a)
    node.metadata.error = refusal
    if not node.owner or node.owner == a then set_node_status(node, "failed") end
    commit()
    return { ok = false, error = core.error_object("recursion_limit", refusal, { depth = node.depth }) }
  end
  local ok, res = pcall(take_slots, a)
  if not ok then
    agents[a.id] = nil
    a.status, a.completed_at, a.state.error = "terminated", now(), message_of(res)
    write_agent(a)
    commit()
    return { ok = false, error = res }
  end
  a.status = "active"
  write_agent(a)
  if node.owner == a and node.status ~= "in_progress" then set_node_status(node, "in_progress") end
  commit()
  local okr, result = xpcall(run, traceback, a, input)
  give_slots(a)
  a.completed_at = now()
  agents[a.id] = nil
  if okr then
    a.status = "completed"
    a.state.result = storable(result)
    write_agent(a)
    if node.owner == a then
      local o = a.orchestrator
      if a.open and o then -- left open (agent:leave_open): taken up next, or failed with o
        node.owner, node.opened_by = nil, o
        local open = o.left_open
        if not open then open = {}; o.left_open = open end
        open[node] = true
      else
        local r = a.node_result
        if r == nil then r = result end
        node.metadata.result = storable(r)
        set_node_status(node, "completed")
        judge_children(node, r)
      end
    end
    commit()
    return { ok = true, result = result }
  end
  local halted = stopping or a.cancelled
  a.status = halted and "terminated" or "failed"
  a.state.error = message_of(result)
  write_agent(a)
  if node.owner == a then
    fail_node(node, result, halted and "cancelled" or "failed")
  end
  commit()
  return { ok = false, error = result }
end

-- What an agent's or orchestrator's life returns, even when nyx's own
-- bookkeeping around the user's code fails (a broken scoring.lua, say):
-- the failure goes to the waiting parent, and one line to stderr.
local function guarded(fn, ...)
  local ok, out = pcall(fn, ...)
  if ok then return out end
  io.stderr:write("nyx: internal error: ", tostring(out):match("^[^\n]*"), "\n")
  return { ok = false, error = out }
end

-- A task's function: no closure per agent (and no hold on its spec).
-- What a finished agent or orchestrator no longer needs is let go: a
-- parent keeps its children's handles (and nodes) until it is done, so on
-- a wide tree these add up.
local FINISHED = setmetatable({}, { __name = "finished" }) -- a node's owner once done

local function agent_done(h, a, outcome)
  h.outcome = outcome
  if h.task then agent_of_task[h.task] = nil end
  h.task = nil
  if a.node.owner == a then a.node.owner = FINISHED end
  a.orchestrator, a.parent, a.inbox, a.arrived = nil, nil, nil, nil
end

local function agent_body(h, a, run, input)
  agent_done(h, a, guarded(agent_main, a, run, input))
end

-- An agent whose task was cancelled before it ever ran (that task never
-- runs): its end, recorded as agent_main would have.
local function agent_unrun(h, a, err)
  agents[a.id] = nil
  a.status, a.completed_at, a.state.error = "terminated", now(), message_of(err)
  write_agent(a)
  if a.node.owner == a then fail_node(a.node, err, "cancelled") end
  commit()
  agent_done(h, a, { ok = false, error = err })
end

-- What orchestrators share with the agents they start (ctx:share): each
-- new agent of the orchestrator, or of one under it, gets it as a message
-- (an agent_communications row from the sharing agent) before it starts.
local MSG_COLUMNS = { "id", "sender_agent_id", "receiver_agent_id", "thought_tree_id", "message_type",
                      "content", "sent_at", "delivered" }
local deliver

local function share_with(a, o)
  while o do
    local shared = o.shared
    if shared then
      for _, m in ipairs(shared) do
        local msg = { id = core.uuid(), from = m.from, to = a.id, type = m.type, content = m.content, sent_at = now() }
        queue{ table = "agent_communications", columns = MSG_COLUMNS, values = {
          msg.id, m.from, a.id, a.node.id, m.type, m.content, msg.sent_at, true } }
        deliver(a, msg)
      end
    end
    o = o.parent
  end
end

-- An agent or orchestrator becomes the owner of a node nobody works (the
-- first on it, or the next after an agent left it open).
local function take_node(node, x, kind)
  if node.owner then return end
  node.owner, node.kind = x, kind
  local by = node.opened_by
  if by then
    node.opened_by = nil
    if by.left_open then by.left_open[node] = nil end
  end
end

local function spawn_agent(spec, orchestrator, parent, base)
  if type(spec) ~= "table" then error("bad argument #1 to 'spawn' (expected a table {type =, class =, node =, ...})", 3) end
  local atype = spec.type or "task"
  if not AGENT_TYPE[atype] then
    error(("bad argument #1 to 'spawn' (type must be one of %s, got %s)"):format(
      table.concat(M.AGENT_TYPES, ", "), tostring(atype)), 3)
  end
  local run, version = spec.run, nil
  local class = spec.class
  if run ~= nil and type(run) ~= "function" then error("bad argument #1 to 'spawn' (run must be a function)", 3) end
  if type(class) ~= "string" or class == "" then
    if run then class = "inline" else error("bad argument #1 to 'spawn' (class must name the agent's code, lua/agents/CLASS.lua, or give run = function)", 3) end
  end
  if not run then run, version = resolve_class(class) end
  local node = spec.node
  if node == nil and spec.goal then
    node = new_node(base, spec.goal, spec.metadata)
  end
  if type(node) ~= "table" or not node.id then error("bad argument #1 to 'spawn' (node must be a thought-tree node, or give goal =)", 3) end
  local max_depth = math.tointeger(spec.max_recursion_depth) or (parent and parent.max_depth) or 5
  local a = setmetatable({
    id = core.uuid(), type = atype, class = class, node = node, orchestrator = orchestrator,
    parent = parent, depth = node.depth, max_depth = max_depth,
    context = spec.context or {}, state = {}, status = "spawned", version = version,
  }, Agent)
  if version then a.state.class_version = version end
  take_node(node, a, "agent:" .. class)
  if node.owner == a and orchestrator and node.metadata.strategy == nil then
    node.metadata.strategy = orchestrator.mark -- the strategy whose agent works it (a leaf planned ahead)
  end
  if node.cancelled then a.cancelled = node.cancelled end -- cancelled while left open
  agents[a.id] = a
  counters.agents = counters.agents + 1
  queue{ table = "agents", columns = AGENT_COLUMNS, values = {
    a.id, node.id, atype, class, "spawned", parent and parent.id, now(), max_depth, a.depth, a.context, a.state,
  } }
  share_with(a, orchestrator)
  commit()
  local h = setmetatable({ kind = "agent", id = a.id, agent = a }, Handle)
  a.on_the_way, on_the_way = true, on_the_way + 1
  h.task = task.spawn(agent_body, h, a, run, spec.input)
  agent_of_task[h.task] = a
  a.handle = h
  return h
end

--- agent:spawn(spec): a child agent, spawned by this one (spawned_by set).
function Agent:spawn(spec)
  return spawn_agent(spec, self.orchestrator, self, self.node)
end

-- A call made with prompt templates (req.template, and req.templates: a
-- list, nyx's own field, taken off the request): the outcome of the node
-- goes into each version's record.
local function used_templates(req)
  local node, list = req.tree, req.templates
  req.templates = nil
  if type(node) ~= "table" then return end
  local function add(t)
    local id = type(t) == "table" and (t.id or (t.template and t.template.id))
    if not id then return end
    local set = node.templates
    if not set then set = {}; node.templates = set end
    set[id] = true
  end
  add(req.template)
  if type(list) == "table" then for _, t in ipairs(list) do add(t) end end
end

--- agent:complete(request): nyx.llm.complete for this agent's node.
function Agent:complete(req)
  req.tree = req.tree or self.node
  req.agent = self.id
  used_templates(req)
  return llm.complete(req)
end

--- agent:leave_open(): when the agent returns, its node (if the agent
-- owns it: it was the first to work on it) is not finished with the
-- result but stays in progress, for the next agent or orchestrator started
-- on it to own and finish: a planner that split its node leaves it to the
-- sub-orchestrator that runs the split. One left open that nothing takes
-- up fails when the agent's orchestrator ends. No effect on failure.
function Agent:leave_open() self.open = true end

--- agent:set_node_result(v): what the agent's node gets as its result
-- when the agent (its owner) finishes it, instead of what run returns.
function Agent:set_node_result(v) self.node_result = v end

--- agent:set_state(fields): merges fields into the agent's state (JSONB).
function Agent:set_state(fields)
  for k, v in pairs(fields) do self.state[k] = v end
  write_agent(self)
  commit()
end

-- ---- messages ---------------------------------------------------------------

local MSG_TYPE = { context_share = true, request = true, response = true, notification = true }

function deliver(to, m)
  to.inbox = to.inbox or {}
  to.inbox[#to.inbox + 1] = m
  if to.arrived then to.arrived:set() end
end

local function check_message(fn, mtype, content)
  if not MSG_TYPE[mtype] then
    error(("bad argument to '%s' (message_type must be context_share, request, response or notification, got %s)")
      :format(fn, tostring(mtype)), 3)
  end
  if type(content) ~= "table" and type(content) ~= "string" then
    error(("bad argument to '%s' (content must be a table or a string)"):format(fn), 3)
  end
  if type(content) == "string" then content = { text = content } end
  return content
end

--- agent:send(to, message_type, content): a message to another agent (an
-- agent or its id); content is a table (or a string, sent as {text =}).
function Agent:send(to, mtype, content)
  content = check_message("send", mtype, content)
  local to_id = type(to) == "table" and (to.id or (to.agent and to.agent.id)) or to
  if type(to_id) ~= "string" then error("bad argument #1 to 'send' (to must be an agent, a handle or an agent id)", 2) end
  local target = agents[to_id]
  local m = { id = core.uuid(), from = self.id, to = to_id, type = mtype, content = content, sent_at = now() }
  log({ { table = "agent_communications", columns = MSG_COLUMNS, values = {
    m.id, self.id, to_id, self.node.id, mtype, content, m.sent_at, target ~= nil } } })
  if target then deliver(target, m) end
  return m.id
end

--- agent:broadcast(message_type, content): to every other live agent of
-- the same orchestrator (receiver NULL in the row).
function Agent:broadcast(mtype, content)
  content = check_message("broadcast", mtype, content)
  local m = { id = core.uuid(), from = self.id, type = mtype, content = content, sent_at = now() }
  local n = 0
  for _, other in pairs(agents) do
    if other ~= self and other.orchestrator == self.orchestrator then
      deliver(other, m); n = n + 1
    end
  end
  log({ { table = "agent_communications", columns = MSG_COLUMNS, values = {
    m.id, self.id, nil, self.node.id, mtype, content, m.sent_at, n > 0 } } })
  return m.id
end

local MSG_RECEIVED = { "id", "received_at", "processed" }

--- agent:receive{timeout = seconds?}: the next message ({id, from, to,
-- type, content, sent_at}), waiting for one (its slots given back while it
-- waits); nil after the timeout.
function Agent:receive(opts)
  local timeout = opts and opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("bad argument #1 to 'receive' (timeout must be a number of seconds >= 0)", 2)
  end
  if not (self.inbox and self.inbox[1]) and timeout ~= 0 then
    self.arrived = self.arrived or limits.event()
    waiting(self.arrived.wait, self.arrived, timeout)
  end
  local m = self.inbox and table.remove(self.inbox, 1)
  if not m then return nil end
  m.received_at = now()
  log({ { table = "agent_communications", update = true, columns = MSG_RECEIVED,
          values = { m.id, m.received_at, true } } })
  return m
end

--- agent:shared(): the contents of the context_share messages that have
-- arrived (what orchestrators shared, see ctx:share), without waiting;
-- marks them received.
function Agent:shared()
  local out, keep, inbox = {}, {}, self.inbox
  if not inbox then return out end
  local ts = now()
  for _, m in ipairs(inbox) do
    if m.type == "context_share" then
      out[#out + 1] = m.content
      m.received_at = ts
      queue{ table = "agent_communications", update = true, columns = MSG_RECEIVED,
             values = { m.id, ts, true } }
    else
      keep[#keep + 1] = m
    end
  end
  self.inbox = keep
  commit()
  return out
end

-- ---- orchestrators ----------------------------------------------------------

local Ctx = {}
Ctx.__index = Ctx
Ctx.__name = "nyx.orchestrator"

local ORCH_COLUMNS = { "id", "parent_orchestrator_id", "thought_tree_id", "orchestrator_type", "status",
                       "created_at", "max_concurrent_agents", "current_active_agents", "global_context",
                       "completed_at" }
local ORCH_STATUS = { "id", "status", "completed_at", "current_active_agents", "global_context" }

-- A sub-orchestrator's row is written once it has run for
-- M.orchestrator_row_delay seconds, when a row of one under it is written,
-- or when it ends, whichever comes first: one that starts and ends within
-- that time (a leaf that answers at once) is one INSERT with its final
-- status, instead of an insert and an update per change. A top-level
-- orchestrator's row is written at once.
M.orchestrator_row_delay = 1
local unwritten, n_unwritten, sweeper = {}, 0, nil -- orchestrator -> true

-- Queues the insert of o's row as o is now (its parent's first: the key);
-- stopped: the time nyx stopped it at (the row is paused, no agent active).
local function write_row(o, stopped)
  if o.row then return end
  local p = o.parent
  if p then write_row(p, stopped) end
  o.row = true
  if unwritten[o] then
    unwritten[o], n_unwritten = nil, n_unwritten - 1
    if n_unwritten == 0 and sweeper and sweeper ~= task.current() then
      sweeper:cancel()
      sweeper = nil
    end
  end
  queue{ table = "orchestrators", columns = ORCH_COLUMNS, values = {
    o.id, p and p.id, o.node.id, o.type, o.status, o.created_at, o.max_agents, stopped and 0 or o.active,
    o.global_context, stopped or o.completed_at } }
end

-- The task that writes the rows of sub-orchestrators still running after
-- the delay; it ends when none is left unwritten.
local function sweep()
  while n_unwritten > 0 do
    task.sleep(M.orchestrator_row_delay / 4)
    local due = core.now() - M.orchestrator_row_delay
    for o in pairs(unwritten) do
      if o.started <= due then write_row(o) end
    end
    commit()
  end
  sweeper = nil
end

local function strategy_check(m)
  return type(m) == "table" and type(m.run) == "function", "a strategy returns a table with run(node, ctx)"
end

--- load_strategy(name): the strategy module (current with its file) and
-- its version.
function M.load_strategy(name)
  if type(name) ~= "string" or not name:match("^[%w_%.]+$") then
    error(("bad strategy name %s (a module under lua/strategies/)"):format(tostring(name)), 3)
  end
  local mname = "strategies." .. name
  if not package.loaded[mname] and not package.preload[mname] and
     not package.searchpath(mname, package.path) and not core.embedded(mname) then
    error(("no strategy '%s': there is no strategies/%s.lua on the Lua path (nyx's lua/strategies/, NYX_LUA_PATH)")
      :format(name, name:gsub("%.", "/")), 3)
  end
  local ok, mod, version = pcall(hot.require, mname, strategy_check, 0)
  if not ok then
    error(("strategy '%s' does not load: %s"):format(name, tostring(mod):match("^[^\n]*")), 3)
  end
  return mod, version
end

--- ctx:spawn(spec): an agent of this orchestrator. spec = {type =
-- "task"|"council"|"validator"|"memory", class = name (lua/agents/NAME.lua)
-- or run = function(agent, input), node = node or goal = string (a new
-- child of the orchestrator's node), input =, context =, metadata =,
-- max_recursion_depth =}.
function Ctx:spawn(spec)
  return spawn_agent(spec, self, current_agent(), self.node)
end

--- ctx:child(goal [, metadata]): a new child node of the orchestrator's
-- node (written with the next batch; its methods wait for that).
function Ctx:child(goal, metadata)
  local n = new_node(self.node, goal, metadata)
  commit()
  return n
end

--- ctx:children(goals): new child nodes, one per goal (a string or
-- {goal =, metadata =}).
function Ctx:children(goals)
  local out = {}
  for i, g in ipairs(goals) do
    if type(g) == "table" then
      out[i] = new_node(self.node, g.goal, g.metadata)
    else
      out[i] = new_node(self.node, g)
    end
  end
  commit()
  return out
end

local run_orchestrator

--- ctx:orchestrate(node, opts): a sub-orchestrator on node (type 'sub'),
-- running opts.strategy (this one's by default); returns a handle.
function Ctx:orchestrate(node, opts)
  opts = opts or {}
  if type(node) ~= "table" or not node.id then error("bad argument #1 to 'orchestrate' (expected a node)", 2) end
  check_budget_spec(opts.budget, "orchestrate")
  return run_orchestrator(node, opts, self)
end

--- ctx:complete(request): an LLM call for the orchestrator's node (no agent).
function Ctx:complete(req)
  req.tree = req.tree or self.node
  used_templates(req)
  return llm.complete(req)
end

--- ctx:share(from, message_type, content): from now on every agent this
-- orchestrator (or one under it) starts receives content as a message
-- from agent `from` (an agent or handle) before it runs; agents read them
-- with agent:shared() (or receive).
function Ctx:share(from, mtype, content)
  content = check_message("share", mtype, content)
  local a = type(from) == "table" and (from.agent or from) or nil
  if not (a and type(a.id) == "string") then
    error("bad argument #1 to 'share' (from must be the sharing agent or its handle)", 2)
  end
  self.shared = self.shared or {}
  self.shared[#self.shared + 1] = { from = a.id, type = mtype, content = content }
end

--- ctx:wait_all(handles): see nyx.runtime.wait_all.
function Ctx:wait_all(handles) return M.wait_all(handles) end

function Ctx:__tostring()
  return ("orchestrator %s (%s, %s) on %s"):format(self.id, self.type, self.strategy, self.node.id)
end

local orch_end

local function orch_main(o, strategy)
  local ok, res = xpcall(strategy.run, traceback, o.node, o)
  return orch_end(o, ok, res)
end

-- The end of an orchestrator, with its strategy's outcome, recorded.
function orch_end(o, ok, res)
  local node = o.node
  o.completed_at = now()
  orchestrators[o.id] = nil
  local open = o.left_open
  if open then -- left open by its agents, never taken up: they end with it
    o.left_open = nil
    local halted = stopping or o.cancelled or (not ok and type(res) == "table" and res.type == "cancelled")
    local why = "left open by its agent (agent:leave_open) and not taken up before its orchestrator ended"
    if halted then
      why = o.cancelled or (not ok and res) or
            core.error_object("cancelled", "nyx is stopping (" .. tostring(stopping) .. ")")
    end
    for n in pairs(open) do
      if n.owner == nil and not TERMINAL[n.status] then
        n.opened_by = nil
        fail_node(n, why, halted and "cancelled" or "failed")
      end
    end
  end
  if ok then
    o.status = "completed"
    if node.owner == o then
      node.metadata.result = storable(res)
      set_node_status(node, "completed")
      judge_children(node, res)
    end
  else
    local halted = stopping or o.cancelled
    o.status = halted and "paused" or "failed"
    o.global_context.error = message_of(res)
    if node.owner == o then fail_node(node, res, halted and "cancelled" or "failed") end
  end
  if o.row then
    queue{ table = "orchestrators", update = true, columns = ORCH_STATUS,
           values = { o.id, o.status, o.completed_at, o.active, o.global_context } }
  else
    write_row(o)
  end
  commit()
  if ok then return { ok = true, result = res } end
  return { ok = false, error = res }
end

-- A sub-orchestrator's handle that never ran: failed already with err.
local function ended_handle(id, err)
  return setmetatable({ kind = "orchestrator", id = id, outcome = { ok = false, error = err } }, Handle)
end

-- A handle already finished with the refusal, recorded on the node.
local function refused(node, why)
  counters.refused = counters.refused + 1
  node.metadata.error = why
  set_node_status(node, "failed")
  commit()
  return ended_handle("refused", core.error_object("recursion_limit", why, { depth = node.depth }))
end

-- A sub-orchestrator's options: its parent's (but for its own budget,
-- context and plan), then what it was given.
local NOT_INHERITED = { budget = true, context = true, plan = true }
local function inherit(parent, opts)
  if not parent then return opts end
  local o = {}
  for k, v in pairs(parent.options) do
    if not NOT_INHERITED[k] then o[k] = v end
  end
  for k, v in pairs(opts) do o[k] = v end
  return o
end

-- A sub-orchestrator's life in its task: the strategy, then what it no
-- longer needs is let go.
local function orch_done(h, o, outcome)
  h.outcome = outcome
  h.task = nil
  if o.node.owner == o then o.node.owner = FINISHED end
  o.parent, o.handle = nil, nil
end

local function orch_body(h, o, strategy)
  orch_done(h, o, guarded(orch_main, o, strategy))
end

-- An orchestrator whose task was cancelled before it ever ran (that task
-- never runs): its end, recorded as orch_main would have.
local function orch_unrun(h, o, err)
  orch_done(h, o, guarded(orch_end, o, false, err))
end

local function orch_start(h, o, strategy)
  arrived(o)
  orch_body(h, o, strategy)
end

-- The orchestrator itself, on node: its table, row (or its delay), the
-- node in progress. h: the handle it gets (a new one if nil).
local function new_orchestrator(node, opts, parent, name, version, max, budget, id, h)
  local o = setmetatable({
    id = id, type = parent and "sub" or "top_level", parent = parent, node = node,
    strategy = name, version = version, options = opts, max_agents = max, active = 0,
    pool = limits.pool(max, "the orchestrator's max_concurrent_agents"),
    global_context = opts.context or {}, status = "active", budget = budget,
    created_at = now(), started = core.now(),
  }, Ctx)
  orchestrators[o.id] = o
  counters.orchestrators = counters.orchestrators + 1
  take_node(node, o, name)
  o.mark = { name = name, version = version } -- shared by the nodes its agents work alone
  node.metadata.strategy = o.mark
  if parent then
    unwritten[o], n_unwritten = true, n_unwritten + 1
    if not sweeper and task.current() then sweeper = task.spawn(sweep) end
  else
    write_row(o)
  end
  -- (a node an agent left open for it is in progress already)
  if node.owner == o and node.status ~= "in_progress" then set_node_status(node, "in_progress") end
  commit()
  h = h or setmetatable({ kind = "orchestrator", id = o.id }, Handle)
  h.orchestrator, o.handle = o, h
  return o, h
end

-- The start gate. A sub-orchestrator does not start (no orchestrator,
-- agent, coroutine of its strategy or row yet: only its task, waiting
-- here) while max_concurrent_agents agents already wait for a slot: work
-- enough for every slot that frees. They start in the order they were
-- asked for, as slots are handed on. Without it a wide tree had every
-- node's orchestrator and planner waiting at once (a B=4 D=6 tree at
-- 200 ms: 4,096 leaves queued, 105 MB); with it what waits is a node
-- and a task each, and memory follows the concurrency, not the tree.
local gate_head, gate_tail = nil, nil -- entries {ev =, next =, admitted =, dead =}
local gated = {} -- entry -> true while its task waits (cancel_local, stop)
local function n_gated()
  local n = 0
  for _ in pairs(gated) do n = n + 1 end
  return n
end

local function gate_open()
  local g = global or global_pool()
  return g:waiting() + on_the_way < global_limit
end

-- Lets in, from the front, what may start now (everything when stopping:
-- they end at once).
local function pump()
  while gate_head and (stopping or gate_open()) do
    local e = gate_head
    gate_head = e.next
    if not gate_head then gate_tail = nil end
    e.next = nil
    if not e.dead then
      e.admitted, e.on_the_way = true, true
      on_the_way = on_the_way + 1
      e.ev:set()
    end
  end
end
pump_gate = pump

-- An entry leaves the gate without starting: its node ends with why
-- (stop() has recorded it already when nyx stops), its handle with the
-- failure. Done here, not in its task: a task cancelled before it ever
-- ran never runs.
local function leave_gate(e)
  e.dead = true
  gated[e] = nil
  arrived(e) -- and the next may be let in
end

local function drop_gated(e, why)
  if e.dead then return end
  leave_gate(e)
  if not stopping then
    fail_node(e.node, why, (type(why) == "table" and why.type == "cancelled") and "cancelled" or "failed")
    commit()
  end
  e.handle.outcome = { ok = false, error = why }
  e.handle.task = nil
  pump()
end

local function gated_body(h, e, node, opts, parent, name, max, budget)
  local ok, err = true, nil
  if not e.admitted then ok, err = pcall(e.ev.wait, e.ev) end
  if e.dead then return end -- dropped while it waited (cancelled)
  local why = (not ok and err) or e.cancelled or parent.cancelled or
              (stopping and core.error_object("cancelled", "nyx is stopping (" .. stopping .. "): no new work starts"))
  local strategy, version
  if not why then
    -- the strategy as its file is now: a node that waited runs the version current when it starts
    ok, strategy, version = pcall(M.load_strategy, name)
    if not ok then why = strategy end
  end
  if why then return drop_gated(e, why) end
  leave_gate(e)
  local o = new_orchestrator(node, opts, parent, name, version, max, budget, e.id, h)
  if parent.cancelled then o.cancelled = parent.cancelled end
  orch_body(h, o, strategy)
end

function run_orchestrator(node, opts, parent)
  opts = inherit(parent, opts)
  local name = opts.strategy or (parent and parent.strategy) or "decompose"
  local strategy, version = M.load_strategy(name)
  local why = limits.depth(node.depth, int_setting("max_recursion_depth", 10), "max_recursion_depth (system_config)")
  if why then return refused(node, why) end
  if node.cancelled then -- cancelled while an agent had left it open
    return ended_handle("cancelled", node.cancelled)
  end
  local max = math.tointeger(opts.max_concurrent_agents) or (parent and parent.max_agents) or
              int_setting("max_concurrent_agents", 10)
  if max < 1 then error("bad argument #2 to 'orchestrate' (max_concurrent_agents must be at least 1)", 3) end
  -- a sub-orchestrator's calls count against its parent's budgets too; a
  -- top-level budget starts from what the subtree has already spent
  local budget = parent and (node_budget[node.id] or node_budget[parent.node.id]) or nil
  if opts.budget then budget = new_budget(opts.budget, budget, not parent and spent_under(node.id) or nil) end
  node_budget[node.id] = budget
  if parent and (gate_head or not gate_open()) then
    local e = { ev = limits.event(), id = core.uuid(), node = node }
    if gate_tail then gate_tail.next = e else gate_head = e end
    gate_tail = e
    local h = setmetatable({ kind = "orchestrator", id = e.id }, Handle)
    e.handle = h
    gated[e] = true
    h.task = task.spawn(gated_body, h, e, node, opts, parent, name, max, budget)
    if parent.cancelled then -- asked for by a cancelled strategy: cancelled too
      e.cancelled = parent.cancelled
      local t = h.task
      drop_gated(e, parent.cancelled)
      t:cancel(parent.cancelled)
      return h
    end
    pump() -- open after all (a waiter cancelled, nyx stopping): it starts
    return h
  end
  local o, h = new_orchestrator(node, opts, parent, name, version, max, budget, core.uuid())
  o.on_the_way, on_the_way = true, on_the_way + 1
  h.task = task.spawn(orch_start, h, o, strategy)
  if parent and parent.cancelled then -- started by a cancelled strategy: cancelled too
    o.cancelled = parent.cancelled
    arrived(o)
    h.task:cancel(parent.cancelled)
    orch_unrun(h, o, parent.cancelled)
  end
  return h
end

--- orchestrate(node_or_goal, opts): runs a top-level orchestrator (see
-- docs/lua-api.md). Blocks (or, in a task, yields) until the strategy is
-- done; returns true, result or false, error, and the orchestrator.
function M.orchestrate(node, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #2 to 'orchestrate' (options must be a table)", 2) end
  if type(node) == "string" then
    node = tree.create{ goal = node, metadata = opts.metadata }
  end
  if type(node) ~= "table" or not node.id then
    error("bad argument #1 to 'orchestrate' (expected a node or a goal string)", 2)
  end
  check_budget_spec(opts.budget, "orchestrate")
  if not trapped and opts.trap_signals ~= false then M.trap_signals() end
  require("nyx.steer").listen() -- steered from other processes from now on
  if not opts.budget then
    local b = {}
    for _, k in ipairs { "usd", "tokens", "calls" } do
      local v = tonumber(setting("budget_" .. k, nil))
      if v then b[k] = v end
    end
    if next(b) then opts.budget = b end
  end
  local ok, h = pcall(run_orchestrator, node, opts, nil)
  if not ok then error(h, 2) end
  local okr, res = h:wait()
  db.flush()
  if stats_task then stats_task:wait() end
  flush_template_stats()
  return okr, res, h.orchestrator
end

-- ---- steering (nyx.steer) ---------------------------------------------------

-- Whether node lies under target (or is it): its ancestors in memory, and
-- the subtree's ids as the database has them.
local function under(n, target, ids)
  while n do
    if n.id == target or ids[n.id] then return true end
    local pid = n.parent_id
    if pid == nil then return false end
    if pid == target or ids[pid] then return true end
    n = live_nodes[pid]
  end
  return false
end

--- cancel_local(node_id, {at =, by =}): what this process runs on that
-- node's subtree ends: its orchestrators' and agents' tasks are cancelled
-- (requests aborted, tool processes killed), so they end with a
-- "cancelled" error their parents receive; agents are recorded
-- terminated, orchestrators paused, their nodes cancelled (with
-- metadata.cancelled = info). nyx.steer calls it on a notification.
-- Returns {agents =, orchestrators =}.
function M.cancel_local(target, info)
  local n = { agents = 0, orchestrators = 0 }
  if type(target) ~= "string" or not core.is_uuid(target) or (next(agents) == nil and next(orchestrators) == nil) then
    return n
  end
  local ids = {}
  for _, r in ipairs(db.query([[WITH RECURSIVE t AS (SELECT id FROM thought_trees WHERE id = $1
      UNION ALL SELECT c.id FROM thought_trees c JOIN t ON c.parent_id = t.id) SELECT id FROM t]], target)) do
    ids[r.id] = true
  end
  local err = core.error_object("cancelled", ("node %s was cancelled by %s"):format(target, tostring(info.by)),
                                { node = target, by = info.by })
  local function stop(x, kind)
    if x.cancelled or not under(x.node, target, ids) then return end
    x.cancelled = err
    if not TERMINAL[x.node.status] then x.node.metadata.cancelled = info end
    local unrun = x.on_the_way -- its task has not run yet: cancelled, it never will
    arrived(x)
    local h = x.handle
    if h and h.task then h.task:cancel(err) end
    if unrun and h then
      if kind == "agents" then agent_unrun(h, x, err) else orch_unrun(h, x, err) end
    end
    n[kind] = n[kind] + 1
  end
  for _, o in pairs(orchestrators) do stop(o, "orchestrators") end
  for e in pairs(gated) do -- not started: it ends at the gate, recorded here
    if not e.cancelled and under(e.node, target, ids) then
      e.cancelled = err
      e.node.metadata.cancelled = info
      local t = e.handle.task
      drop_gated(e, err)
      if t then t:cancel(err) end
      n.orchestrators = n.orchestrators + 1
    end
  end
  for _, a in pairs(agents) do stop(a, "agents") end
  for _, o in pairs(orchestrators) do -- nodes its agents left open: cancelled before anything takes them up
    for node in pairs(o.left_open or {}) do
      if not TERMINAL[node.status] and under(node, target, ids) then
        o.left_open[node], node.opened_by = nil, nil
        node.cancelled = err
        node.metadata.cancelled = info
        fail_node(node, err, "cancelled")
      end
    end
  end
  commit()
  pump_gate() -- agents that waited for a slot are gone: others may start
  return n
end

--- retry_local(node_id, root_id, by [, strategy]): if this process runs
-- the node's tree, claims the node (nyx.steer.claim) and works it again: a
-- sub-orchestrator under the orchestrator of its parent when that one
-- still runs, else a top-level one, with the strategy the node ran (or
-- the one given). Its parent's strategy is not told again. Returns the
-- handle, or nil if this process does not run the tree or the node could
-- not be claimed.
function M.retry_local(id, root, by, strategy)
  local runs
  for _, o in pairs(orchestrators) do
    if o.node.root_id == root then runs = true; break end
  end
  if not runs then return nil end
  local steer = require "nyx.steer"
  local node = steer.claim(id, by)
  if not node then return nil end
  steer.announce("retry_claimed", { node = id })
  local parent
  for _, o in pairs(orchestrators) do
    if o.node.id == node.parent_id and not o.cancelled then parent = o; break end
  end
  io.stderr:write(("nyx: node %s retried (asked by %s)\n"):format(id, tostring(by)))
  local h = run_orchestrator(node, { strategy = strategy or (not parent and "decompose" or nil) }, parent)
  h:wait()
  return h
end

-- ---- stopping ---------------------------------------------------------------

--- stop(why): stops starting work and marks what runs: nodes in progress
-- cancelled, agents terminated, orchestrators paused. Returns counts.
function M.stop(why)
  stopping = why or "stop"
  commit()
  local n = { agents = 0, orchestrators = 0, nodes = 0 }
  local rows = {}
  local ts = now()
  local seen = {}
  for id, a in pairs(agents) do
    rows[#rows + 1] = { table = "agents", update = true, columns = AGENT_STATUS,
                        values = { id, "terminated", ts, a.state } }
    a.status = "terminated"
    n.agents = n.agents + 1
    local node = a.node
    if not TERMINAL[node.status] and not seen[node] then seen[node] = true end
  end
  for id, o in pairs(orchestrators) do
    if o.row then
      rows[#rows + 1] = { table = "orchestrators", update = true, columns = ORCH_STATUS,
                          values = { id, "paused", ts, 0, o.global_context } }
    end
    o.status = "paused"
    n.orchestrators = n.orchestrators + 1
    if not TERMINAL[o.node.status] then seen[o.node] = true end
    for node in pairs(o.left_open or {}) do -- left open by its agents, not taken up yet
      if not TERMINAL[node.status] then seen[node] = true end
    end
  end
  for o in pairs(unwritten) do write_row(o, ts) end -- written as they are now: paused
  for e in pairs(gated) do -- not started: their nodes are cancelled too
    if not TERMINAL[e.node.status] then seen[e.node] = true end
  end
  commit()
  for node in pairs(seen) do
    node.status, node.completed_at = "cancelled", ts
    rows[#rows + 1] = { table = "thought_trees", update = true, columns = NODE_STATUS,
                        values = { node.id, "cancelled", ts, node.metadata } }
    n.nodes = n.nodes + 1
  end
  if #rows > 0 then db.log(rows) end
  db.flush()
  pump_gate() -- what waits at the start gate ends now, as stopped
  return n
end

--- stopping(): the reason nyx is stopping, or nil.
function M.stopping() return stopping end

--- trap_signals(): on SIGINT/SIGTERM, stop (see stop), kill tool processes,
-- say what was stopped in one line, exit 130 (for either signal: "stopped
-- on request", as the issue that defined it asks).
function M.trap_signals()
  trapped = true
  limits.trap(function(sig)
    local procs = package.loaded["nyx.proc"]
    if procs and procs.cancel_all then pcall(procs.cancel_all) end
    local progress = package.loaded["nyx.progress"] -- its line erased first
    if progress and progress.disable then pcall(progress.disable) end
    local ok, n = pcall(M.stop, sig)
    if ok then
      io.stderr:write(("nyx: %s: stopped; %d node%s cancelled, %d agent%s terminated, %d orchestrator%s paused\n")
        :format(sig, n.nodes, n.nodes == 1 and "" or "s", n.agents, n.agents == 1 and "" or "s",
                n.orchestrators, n.orchestrators == 1 and "" or "s"))
    else
      io.stderr:write(("nyx: %s: could not record the stop: %s\n"):format(sig, tostring(n)))
    end
    io.stderr:flush()
    os.exit(130, true)
  end)
end

--- stats(): what this process has run: agents and orchestrators started,
-- refusals, and the process-wide pool ({limit, active, peak, waiting}).
function M.stats()
  local p = global_pool():stats()
  return { agents = counters.agents, orchestrators = counters.orchestrators, refused = counters.refused,
           active = p.active, peak = p.peak, waiting = p.waiting, limit = p.limit, starting = on_the_way,
           gated = n_gated(), backpressure = counters.backpressure }
end

--- reset_peak(): the process-wide peak starts again from now.
function M.reset_peak() global_pool():reset_peak() end

--- current_agent(): the agent whose code is running, or nil.
M.current_agent = current_agent
M.Agent, M.Handle, M.Orchestrator = Agent, Handle, Ctx
return M
