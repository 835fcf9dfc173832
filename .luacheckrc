-- luacheck configuration: `luacheck lua examples bench tests` (.ci/run runs
-- it after the formatting check). Debian's package is lua-check.

-- The std "nyx": the global nyx and every field the binary registers under
-- it, read-only, so a typo (nyx.tree.craete) or an accidental write is
-- reported. tests/lua/types_spec.lua checks this list against the binary,
-- both ways, like types/nyx.lua. A field scripts may set is marked
-- read_only = false.
stds.nyx = {
  read_globals = {
    nyx = { fields = {
      "home", "orchestrate", "uuid", "version",
      json = { other_fields = true }, -- lua-cjson
      config = { fields = {
        "get", "refresh", "reveal", "secrets", "set", "values",
        ttl = { read_only = false },
      } },
      core = { fields = {
        "assets", "columns", "cpu", "dir", "embedded", "error_object", "executable", "hash", "home",
        "is_uuid", "isatty", "json_decode", "json_encode", "json_raw", "maxrss",
        "mtime", "now", "refs", "timestamp", "uuid", "version",
      } },
      db = { fields = {
        "close", "connect", "exec", "flush", "info", "listen", "log", "log_backlog", "log_drain", "log_statement", "log_stats", "migrate", "notify", "open",
        "query", "status", "transaction", "unlisten",
      } },
      hot = { fields = {
        "require", "version",
        interval = { read_only = false },
      } },
      limits = { fields = {
        "depth", "event", "pool", "trap",
      } },
      llm = { fields = {
        "cached", "complete", "endpoint", "in_flight",
        default_max_tokens = { read_only = false }, default_model = { read_only = false },
        guard = { fields = {
          "after", "before", "log",
        } },
      } },
      proc = { fields = {
        "cancel_all", "run", "running",
      } },
      pretty = { fields = {
        "REDACTED", "pretty", "revealed",
        defaults = { fields = {
          "depth", "indent", "items", "reveal", "string", "width",
        } },
      } },
      progress = { fields = {
        "decide", "disable", "enable", "line", "mode",
        interval = { read_only = false }, tick_interval = { read_only = false },
      } },
      prompts = { fields = {
        "activate", "choose", "files", "get", "parse", "record", "render", "split", "sync", "versions",
        home = { read_only = false }, ttl = { read_only = false },
        path = { read_only = false, other_fields = true }, -- a list of folders scripts add to
      } },
      run = { fields = {
        "json", "quiet", "repl",
      } },
      runtime = { fields = {
        "AGENT_TYPES", "cancel_local", "current_agent", "flush_template_stats", "load_strategy",
        "orchestrate", "reset_peak", "retry_local", "stats", "stop", "stopping", "trap_signals",
        "wait_all",
        orchestrator_row_delay = { read_only = false },
        log_backlog_max = { read_only = false },
        on = { other_fields = true, read_only = false }, -- hooks views set: node, agent, call
        Agent = { fields = {
          "broadcast", "chat", "complete", "leave_open", "receive", "send", "set_node_result",
          "set_state", "shared", "spawn", "tool",
        } },
        Handle = { fields = {
          "done", "wait",
        } },
        Orchestrator = { fields = {
          "child", "children", "complete", "orchestrate", "share", "spawn", "wait_all",
        } },
      } },
      stats = { fields = {
        "stats", "text",
      } },
      steer = { fields = {
        "announce", "cancel", "channel", "claim", "listen", "retry", "who",
        claim_timeout = { read_only = false },
      } },
      strategy = { fields = {
        "answer", "check_plan", "check_verdict", "check_vote", "depth_limit", "inner", "json_reply",
        "model", "notes", "parse", "plan", "request", "subtasks", "synthesize", "validate",
        ROLES = { fields = {
          "council", "judge", "leaf", "plan", "synthesize", "validate",
        } },
      } },
      task = { fields = {
        "count", "current", "sleep", "spawn", "wait_all",
      } },
      tool = { fields = {
        "get", "list", "register", "run", "unregister", "validate",
      } },
      tree = { fields = {
        "IMPORTANCE", "SCORES", "STATUSES", "create", "find", "get", "latest", "null", "roots",
        Node = { fields = {
          "agents", "cancel", "children", "llm_calls", "messages", "parent", "print", "refresh",
          "retry", "root", "set_status", "subtree", "tools", "update",
        } },
      } },

    } },
  },
}

std = "lua54+nyx"

-- Noise for our style, off:
-- * line length: no rule of ours sets one; long lines are SQL strings, error
--   messages and tables of figures that read worse wrapped.
max_line_length = false
-- * an unused implicit self: methods such as ctx:wait_all(handles) keep the
--   method form for the caller's sake.
self = false
-- * W581 'not (x > y)': written so on purpose, it is true for NaN where
--   'x <= y' is not (a shape or a score that is NaN is refused).
ignore = { "581" }

files["tests/"] = { std = "+busted" }
-- the definition file for lua-language-server: it declares the global nyx
-- and empty functions, never runs
files["types/"] = { globals = { "nyx" }, unused = false }
-- the log writer declares a statement before the branches that build it
files["lua/nyx/dblog.lua"] = { ignore = { "311/stmt" } }
