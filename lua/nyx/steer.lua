--- nyx.steer: steering a live tree from another process. node:cancel(),
-- node:retry() and nyx.config.set write to the database and send a
-- notification on the channel "nyx_control" (a JSON payload); an engine
-- (a process in which nyx.orchestrate has started) LISTENs on it and acts
-- at once: it cancels the coroutines working on a cancelled subtree, works
-- a retried node again, applies a setting. docs/lua-api.md ("Steering a
-- live tree") is the reference.
local db = require "nyx.db"
local core = require "nyx.core"
local json = require "cjson"

local M = { channel = "nyx_control", claim_timeout = 1.0 }

local me
--- who(): "pid N on HOST", this process, as the changes it makes record it.
function M.who()
  if me then return me end
  local pid, host = "?", "?"
  local f = io.open("/proc/self/stat")
  if f then pid = f:read("n") or pid; f:close() end
  f = io.open("/proc/sys/kernel/hostname")
  if f then host = f:read("l") or host; f:close() end
  me = ("pid %s on %s"):format(math.tointeger(pid) or pid, host)
  return me
end

local function send(msg)
  msg.by = msg.by or M.who()
  db.notify(M.channel, json.encode(msg))
end

-- What an engine does with each message (set by listen()).
local handlers = {}
local waiting_claims = {} -- node id -> event, while retry() waits for an engine

local function on_message(payload)
  local ok, msg = pcall(json.decode, payload)
  if not ok or type(msg) ~= "table" or type(msg.op) ~= "string" then
    io.stderr:write(("nyx: ignored a malformed %s message: %s\n"):format(M.channel, payload:sub(1, 200)))
    return
  end
  local h = handlers[msg.op]
  if h then h(msg) end
end

-- ---- an engine: what it does on each message ----------------------------

function handlers.cancel(msg)
  local n = require("nyx.runtime").cancel_local(msg.node, { at = msg.at, by = msg.by })
  if n.agents + n.orchestrators > 0 then
    io.stderr:write(("nyx: node %s cancelled by %s: %d agent%s, %d orchestrator%s stopped\n"):format(
      msg.node, msg.by, n.agents, n.agents == 1 and "" or "s", n.orchestrators, n.orchestrators == 1 and "" or "s"))
  end
end

function handlers.retry(msg)
  require("nyx.runtime").retry_local(msg.node, msg.root, msg.by, msg.strategy)
end

function handlers.retry_claimed(msg)
  local ev = waiting_claims[msg.node]
  if ev then waiting_claims[msg.node] = msg.by; ev:set() end
end

function handlers.config(msg)
  local config = require "nyx.config"
  config.refresh()
  if msg.by == M.who() then return end -- its own change: nothing to say
  local row = db.query("SELECT config_type FROM system_config WHERE config_key = $1", msg.key)[1]
  local shown = row and row.config_type == "credential" and "(a credential, not shown)" or
                json.encode(config.get(msg.key) == nil and json.null or config.get(msg.key))
  io.stderr:write(("nyx: %s changed to %s by %s\n"):format(msg.key, shown, msg.by))
end

--- listen(): this process follows nyx_control from now on (nyx.orchestrate
-- calls it when it starts). Cheap to call again (the same function is
-- registered once), and after nyx.db.close or connect it listens again.
function M.listen()
  db.listen(M.channel, on_message)
end

--- announce(op, fields): a message on nyx_control (what nyx.config.set
-- sends: announce("config", {key = k})).
function M.announce(op, fields)
  fields = fields or {}
  fields.op = op
  send(fields)
end

-- ---- the steering side --------------------------------------------------

local SUBTREE = [[WITH RECURSIVE t AS (SELECT id FROM thought_trees WHERE id = $1
                  UNION ALL SELECT n.id FROM thought_trees n JOIN t ON n.parent_id = t.id)]]

--- cancel(node): the subtree's unfinished nodes cancelled in the database
-- (metadata.cancelled = {at =, by =}), and the engine running it told.
-- Returns the number of nodes marked.
function M.cancel(node)
  db.flush()
  local at = core.timestamp()
  local info = { at = at, by = M.who() }
  local n = db.exec(SUBTREE .. [[
    UPDATE thought_trees SET status = 'cancelled', completed_at = clock_timestamp(),
           metadata = COALESCE(metadata, '{}') || jsonb_build_object('cancelled', $2::jsonb)
    WHERE id IN (SELECT id FROM t) AND status IN ('pending', 'in_progress')]], node.id, info)
  send{ op = "cancel", node = node.id, root = node.root_id, at = at, by = info.by }
  node:refresh()
  return n
end

-- Claims a failed or cancelled node for a new attempt: in_progress again,
-- metadata.retries + 1, the attempt that ended kept in metadata.attempts.
-- Returns the node (fresh), or nil if it was not failed or cancelled.
function M.claim(id, by)
  local row = db.query([[
    UPDATE thought_trees SET status = 'in_progress', completed_at = NULL,
      metadata = (COALESCE(metadata, '{}') - 'error' - 'error_details' - 'cancelled' - 'result')
        || jsonb_build_object('retries', COALESCE((metadata->>'retries')::int, 0) + 1,
             'attempts', COALESCE(metadata->'attempts', '[]'::jsonb) || jsonb_build_array(
               jsonb_strip_nulls(jsonb_build_object('status', status, 'error', metadata->'error',
                 'error_details', metadata->'error_details', 'cancelled', metadata->'cancelled',
                 'ended_at', completed_at, 'retried_at', clock_timestamp(), 'retried_by', $2::text))))
    WHERE id = $1 AND status IN ('failed', 'cancelled') RETURNING id]], id, by)[1]
  if not row then return nil end
  return require("nyx.tree").get(id)
end

--- retry(node [, opts]): see docs. Returns where it ran ("engine" and who,
-- or "here" and the orchestrate results).
function M.retry(node, opts)
  opts = opts or {}
  db.flush()
  node:refresh()
  if node.status ~= "failed" and node.status ~= "cancelled" then
    error(("cannot retry node %s: it is %s (only a failed or cancelled node is retried)"):format(node.id, node.status), 3)
  end
  local strategy = opts.strategy or (node.metadata.strategy and node.metadata.strategy.name)
  -- an engine running the tree claims it within claim_timeout, else it runs here
  M.listen()
  local ev = require("nyx.limits").event()
  waiting_claims[node.id] = ev
  send{ op = "retry", node = node.id, root = node.root_id, strategy = strategy }
  local claimed = ev:wait(M.claim_timeout)
  local by = waiting_claims[node.id]
  waiting_claims[node.id] = nil
  if claimed then node:refresh(); return "engine", by end
  local fresh = M.claim(node.id, M.who())
  if not fresh then
    node:refresh()
    error(("cannot retry node %s: it is %s now (another process took it)"):format(node.id, node.status), 3)
  end
  local ok, res, o = require("nyx.runtime").orchestrate(fresh, { strategy = strategy or "decompose" })
  node:refresh()
  return "here", ok, res, o
end

return M
