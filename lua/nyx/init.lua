--- The nyx module: the engine's public Lua API (docs/lua-api.md).
-- Scripts run by `nyx` find it in the global `nyx`; `require "nyx"` returns
-- the same table.
local core = require "nyx.core"

local nyx = {
  version = core.version,   -- "0.1.0"
  home = core.home,         -- folder holding lua/, sql/, prompts/ (nil: embedded only)
  uuid = core.uuid,         -- a random (v4) UUID string
  core = core,              -- low level: now, cpu, maxrss, timestamp, hash, ...
  json = require "cjson",   -- lua-cjson
  db = require "nyx.db",    -- PostgreSQL: query, exec, transaction, ...
  tree = require "nyx.tree", -- thought trees
  task = require "nyx.task", -- coroutines on the event loop: spawn, wait, sleep
  llm = require "nyx.llm",   -- Claude calls, logged: complete, cached
  config = require "nyx.config", -- system_config: get, set
  hot = require "nyx.hot",   -- modules that reload when their file changes
  runtime = require "nyx.runtime", -- orchestrators and agents
  limits = require "nyx.limits",   -- slot pools, the recursion check, signals (C)
  proc = require "nyx.proc", -- child processes on the event loop: run, cancel_all
}
nyx.tool = require "nyx.tool" -- tools for agents, logged: register, run
nyx.strategy = require "nyx.strategy" -- what strategies share: models by role, plan, validate, ...
nyx.prompts = require "nyx.prompts" -- prompt templates: sync, get, choose, render, record
nyx.steer = require "nyx.steer" -- steering live trees from other processes: cancel, retry, settings
nyx.pretty = require "nyx.pretty" -- (v [, opts]): a value as readable text, credentials redacted
nyx.orchestrate = nyx.runtime.orchestrate -- (node or goal, opts): run a strategy on it
nyx.progress = require "nyx.progress" -- the live view while a tree runs (stderr)
nyx.progress.enable() -- decided at the first node: a terminal, --json or --quiet
nyx.stats = require "nyx.stats" -- nyx.stats{tree =, since =}: calls, tokens, cost, by model and template

return nyx
