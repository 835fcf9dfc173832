---@meta nyx
-- The nyx Lua API, for lua-language-server (completion, hover, type checks
-- in Neovim, VS Code, ...): `.luarc.json` at the repository's root points
-- the server here. This file is never run; docs/lua-api.md is the
-- reference, and tests/lua/types_spec.lua checks every name below against
-- what the nyx binary registers (both ways), so the two cannot drift.
--
-- Conventions the check relies on: a class named like a path (`nyx.tree`)
-- describes the table found there; `---@field name?` marks a field that may
-- be absent; methods are `function Class:name(...)` on a `local` bound to
-- its class right after the `---@class` block.

-- ---- enums ------------------------------------------------------------------

---@alias nyx.tree.Status
---| "pending"
---| "in_progress"
---| "completed"
---| "failed"
---| "cancelled"

---@alias nyx.tree.Importance
---| "low"
---| "medium"
---| "high"

---@alias nyx.tree.Score
---| "success_score"
---| "quality_score"
---| "speed_score"
---| "usefulness_score"
---| "overall_weight"

---@alias nyx.runtime.AgentType
---| "task"
---| "council"
---| "validator"
---| "memory"

---@alias nyx.runtime.MessageType
---| "context_share"
---| "request"
---| "response"
---| "notification"

---@alias nyx.runtime.AgentStatus
---| "spawned"
---| "active"
---| "completed"
---| "failed"
---| "terminated"

---@alias nyx.runtime.OrchestratorType
---| "top_level"
---| "sub"

---@alias nyx.runtime.OrchestratorStatus
---| "active"
---| "completed"
---| "failed"
---| "paused"

---@alias nyx.strategy.Role
---| "plan"
---| "leaf"
---| "validate"
---| "council"
---| "judge"
---| "synthesize"

---@alias nyx.task.Status
---| "ready"
---| "running"
---| "waiting"
---| "done"
---| "failed"

---@alias nyx.db.MigrationState
---| "applied"
---| "pending"
---| "changed"
---| "unknown"

---@alias nyx.config.Type
---| "limit"
---| "setting"
---| "credential"

---@alias nyx.llm.CacheTtl
---| true
---| "5m"
---| "1h"

---@alias nyx.ErrorType
---| "sql"
---| "connection"
---| "migration"
---| "log"
---| "recursion_limit"
---| "budget_exceeded"
---| "cancelled"
---| "tool_error"
---| "turn_limit"
---| "malformed_plan"
---| "malformed_verdict"
---| "malformed_vote"
---| "validation_failed"
---| "spawn"
---| "timeout"
---| "connection_error"
---| "invalid_response"
---| "incomplete_stream"
---| "rate_limit_error"
---| "overloaded_error"
---| "invalid_request_error"
---| "api_error"
---| string

-- ---- nyx --------------------------------------------------------------------

---The nyx module: the global `nyx` in scripts nyx runs; `require "nyx"` returns it.
---@class nyx
---@field version string the engine's version, "0.1.0"
---@field home? string the folder holding lua/, sql/, prompts/; nil when nyx runs on the copies compiled into it
---@field json nyx.json lua-cjson (also `require "cjson"`)
---@field core nyx.core low level: clocks, hashes, JSON for log rows
---@field tree nyx.tree thought trees
---@field task nyx.task tasks: coroutines on the event loop
---@field llm nyx.llm Claude calls, logged
---@field db nyx.db PostgreSQL
---@field config nyx.config system_config, through a short cache
---@field hot nyx.hot modules that reload when their file changes
---@field runtime nyx.runtime orchestrators, agents, budgets, messages, stopping
---@field tool nyx.tool tools agents run (Lua functions or processes)
---@field strategy nyx.strategy what strategies share: models by role, plan, validate, ...
---@field prompts nyx.prompts prompt templates from prompts/, versioned, chosen and rendered
---@field proc nyx.proc child processes on the event loop
---@field limits nyx.limits slot pools, the recursion check, events, signals (C)
---@field steer nyx.steer steering live trees from other processes: cancel, retry, settings
---@field pretty nyx.pretty (v [, opts]): a value as readable text, credentials redacted
---@field progress nyx.progress the live view while a tree runs (stderr)
---@field stats nyx.stats (opts): what the LLM calls cost, by model and template
---@field run? nyx.Run nyx's own words taken out of a script's arguments (absent for `-e` and commands)
nyx = {}

---A new random (version 4) UUID string.
---@return string
function nyx.uuid() end

---Runs a top-level orchestrator on a node (a goal string makes a new root):
---loads the strategy, runs `strategy.run(node, ctx)`. Yields in a task,
---blocks outside one.
---@param node nyx.tree.Node|string the node, or a goal for a new root
---@param opts? nyx.OrchestrateOptions
---@return boolean ok
---@return any result_or_error the strategy's result, or the error
---@return nyx.runtime.Orchestrator orchestrator
function nyx.orchestrate(node, opts) end

---@class nyx.OrchestrateOptions
---@field strategy? string a module under lua/strategies/ ("decompose" by default)
---@field max_concurrent_agents? integer this orchestrator's own limit (default: the setting)
---@field budget? nyx.Budget for the subtree (default: system_config budget_usd, budget_tokens, budget_calls)
---@field context? table the orchestrator's global_context
---@field metadata? table the new root's metadata, when given a goal
---@field synthesize? boolean decompose: combine the children's results with one more call
---@field trap_signals? boolean false: leave SIGINT/SIGTERM alone
---@field model? string every role's model
---@field models? table<nyx.strategy.Role, string> a model per role
---@field [string] any anything else the strategy reads from ctx.options

---@class nyx.Budget
---@field usd? number dollars
---@field tokens? integer input, output, cache writes and cache reads
---@field calls? integer LLM calls

---nyx's own words (`--repl`, `--quiet`, `--json`) found among a script's arguments.
---@class nyx.Run
---@field repl boolean
---@field quiet boolean
---@field json boolean

---A structured error: what failures of the outside world raise. `tostring`
---gives the message; the other fields depend on the type (docs/lua-api.md, "Errors").
---@class nyx.Error
---@field type nyx.ErrorType
---@field message string
---@field sqlstate? string sql: the SQLSTATE code
---@field detail? string sql
---@field hint? string sql
---@field constraint? string sql
---@field table? string sql
---@field column? string sql
---@field position? integer sql
---@field response? nyx.llm.Response log: the answer that could not be recorded
---@field cause? nyx.Error log: the LLM call's own failure
---@field depth? integer recursion_limit
---@field budget? string budget_exceeded: "usd", "tokens" or "calls"
---@field spent? number budget_exceeded
---@field limit? number budget_exceeded
---@field tool? string tool_error
---@field result? table tool_error: the last run's result
---@field exit_code? integer tool_error
---@field stdout? string tool_error
---@field stderr? string tool_error
---@field retries? integer tool_error, LLM calls
---@field turns? integer turn_limit
---@field tool_calls? integer turn_limit
---@field text? string malformed_*: the last reply
---@field texts? string[] malformed_*: every reply
---@field verdict? nyx.strategy.Verdict validation_failed
---@field status? integer LLM calls: the HTTP status
---@field request_id? string LLM calls
---@field interaction_id? string LLM calls: the llm_interactions row
---@field program? string spawn

-- ---- nyx.json (lua-cjson) -----------------------------------------------------

---lua-cjson (https://kyne.au/~mark/software/lua-cjson-manual.html); only the
---common part is described here.
---@class nyx.json
---@field null lightuserdata JSON null
nyx.json = {}

---@param value any
---@return string
function nyx.json.encode(value) end

---@param text string
---@return any
function nyx.json.decode(text) end

-- ---- nyx.core ---------------------------------------------------------------

---Low level, in C.
---@class nyx.core
---@field version string the engine's version
---@field home? string nyx's home folder (see nyx.home)
---@field executable string the nyx binary's path
nyx.core = {}

---A new random (version 4) UUID string.
---@return string
function nyx.core.uuid() end

---Whether s is a UUID in text form (8-4-4-4-12 hex digits, either case).
---@param s any
---@return boolean
function nyx.core.is_uuid(s) end

---Registry references nyx holds (counted, for leak checks in tests).
---@return integer
function nyx.core.refs() end

---Seconds on the monotonic clock: for measuring, not for dates.
---@return number
function nyx.core.now() end

---The wall clock as PostgreSQL takes it: "2026-12-04 20:40:50.123456+00".
---@return string
function nyx.core.timestamp() end

---The file's modification time in seconds (with the nanoseconds), or nil.
---@param path string
---@return number?
function nyx.core.mtime(path) end

---The names in a folder (without . and ..), in no order; or nil and why.
---@param path string
---@return string[]? names
---@return string? why
function nyx.core.dir(path) end

---The files compiled into nyx whose name (relative to the source tree) starts with prefix.
---@param prefix string
---@return table<string, string> files name -> data
function nyx.core.assets(prefix) end

---FNV-1a of s, 16 hex digits (a version mark, not a secret).
---@param s string
---@return string
function nyx.core.hash(s) end

---Seconds of CPU this process has used, user + system.
---@return number
function nyx.core.cpu() end

---The peak resident set size of this process, in bytes.
---@return integer
function nyx.core.maxrss() end

---A structured error, not raised: `error(nyx.core.error_object(...))` raises it.
---@param type nyx.ErrorType
---@param message string
---@param fields? table more fields (status, sqlstate, ...)
---@return nyx.Error
function nyx.core.error_object(type, message, fields) end

---The value of a JSON text (integers as integers, null as nil), or nil and why.
---@param text string
---@return any value
---@return string? why
function nyx.core.json_decode(text) end

---JSON text (integers exact, {} for an empty table).
---@param value any
---@return string
function nyx.core.json_encode(value) end

---A value json_encode writes as it is (JSON already encoded, e.g. for a JSONB column of a log row).
---@param text string
---@return userdata
function nyx.core.json_raw(text) end

---Whether module name is compiled into nyx.
---@param name string
---@return boolean
function nyx.core.embedded(name) end

---Whether the stream is a terminal (the views colour and redraw only there).
---@param fd integer|"stdin"|"stdout"|"stderr"
---@return boolean
function nyx.core.isatty(fd) end

---The terminal's width in columns, or nil when it is not a terminal or does not say.
---@param fd integer|"stdin"|"stdout"|"stderr"
---@return integer?
function nyx.core.columns(fd) end

-- ---- nyx.tree ---------------------------------------------------------------

---Thought trees: one `thought_trees` row per node.
---@class nyx.tree
---@field STATUSES nyx.tree.Status[] pending, in_progress, completed, failed, cancelled
---@field SCORES nyx.tree.Score[] the score columns node:update takes
---@field IMPORTANCE nyx.tree.Importance[] low, medium, high
---@field Node nyx.tree.Node the nodes' metatable (methods)
---@field null lightuserdata JSON null (nyx.json.null)
nyx.tree = {}

---@class nyx.tree.CreateSpec
---@field goal string required, non-blank
---@field parent? nyx.tree.Node|string the parent node or its id; none: a root
---@field metadata? table<string, any> stored as a JSON object

---Inserts a node with status pending and returns it. Without parent it is a root.
---@param spec nyx.tree.CreateSpec
---@return nyx.tree.Node
function nyx.tree.create(spec) end

---The node with that id, or nil. Raises on a value that is not a UUID.
---@param id string
---@return nyx.tree.Node?
function nyx.tree.find(id) end

---The node with that id; raises if there is none.
---@param id string
---@return nyx.tree.Node
function nyx.tree.get(id) end

---The most recent root nodes, newest first.
---@param opts? {limit?: integer} limit: 20 by default
---@return nyx.tree.Node[]
function nyx.tree.roots(opts) end

---The newest root, or nil.
---@return nyx.tree.Node?
function nyx.tree.latest() end

---A node: its thought_trees row (NULL columns are nil; timestamps ISO 8601
---in UTC) plus methods. `tostring(node)`: `node <id> [<status>] <goal>`.
---@class nyx.tree.Node
---@field id string
---@field parent_id? string nil for a root
---@field root_id string
---@field goal string
---@field status nyx.tree.Status
---@field depth integer 0 for a root
---@field created_at string
---@field updated_at string
---@field completed_at? string set on entering completed, failed or cancelled
---@field metadata table<string, any>
---@field success_score? number 0..1
---@field quality_score? number 0..1
---@field speed_score? number 0..1
---@field usefulness_score? number 0..1
---@field overall_weight? number 0..1
---@field importance_level? nyx.tree.Importance
---@field validation? {pass: boolean, quality: number} set by strategies, read by scoring
---@field feedback? string a reviewer's reasons, for the planner and answer agents
---@field retries? integer repairs and retries, read by scoring
local Node = {}

---The direct children, in the order they were created.
---@return nyx.tree.Node[]
function Node:children() end

---The node and all its descendants, depth first (each node before its children).
---@return nyx.tree.Node[]
function Node:subtree() end

---The parent node; nil for a root.
---@return nyx.tree.Node?
function Node:parent() end

---The root of the node's tree (the node itself for a root).
---@return nyx.tree.Node
function Node:root() end

---Re-reads the row, for changes made by another process.
---@return nyx.tree.Node self
function Node:refresh() end

---Sets the status; entering completed, failed or cancelled sets completed_at,
---going back to pending or in_progress clears it.
---@param status nyx.tree.Status
---@return nyx.tree.Node self updated from the database
function Node:set_status(status) end

---Changes scores (0..1), importance_level and metadata (merged into the
---stored object), in one statement.
---@param fields nyx.tree.NodeUpdate
---@return nyx.tree.Node self updated from the database
function Node:update(fields) end

---Steering, from any process: the subtree's unfinished nodes marked cancelled
---(metadata.cancelled = {at =, by =}) and the engine running them told at once.
---@return integer marked how many nodes it marked
function Node:cancel() end

---Steering: a failed or cancelled node worked again, by the engine running
---its tree (`"engine", by`, at once) or else here (`"here", ok, result, orchestrator`,
---once done). Raises for a node in any other status.
---@param opts? nyx.steer.RetryOptions
---@return nyx.steer.Where where
---@return string|boolean by_or_ok "engine": who claimed it ("pid N on HOST"); "here": ok
---@return any result "here": the strategy's result, or the error
---@return nyx.runtime.Orchestrator? orchestrator "here"
function Node:retry(opts) end

---Prints the subtree as `nyx tree show` does (to stdout).
---@param opts? nyx.tree.PrintOptions
function Node:print(opts) end

---The subtree's llm_interactions rows, oldest first, each with its
---llm_call_details row as `details`.
---@return table<string, any>[]
function Node:llm_calls() end

---The subtree's tool_executions rows, oldest first.
---@return table<string, any>[]
function Node:tools() end

---The subtree's agent_communications rows, oldest first.
---@return table<string, any>[]
function Node:messages() end

---The subtree's agents rows, oldest first.
---@return table<string, any>[]
function Node:agents() end

---@class nyx.tree.PrintOptions
---@field depth? integer stop this many levels down, saying how many nodes are below
---@field siblings? integer children listed per node (20), the rest summarised by status
---@field all? boolean lift both limits
---@field colour? boolean default: stdout is a terminal and NO_COLOR is unset
---@field utf8? boolean status marks in UTF-8; default: the locale

---@class nyx.tree.NodeUpdate
---@field success_score? number
---@field quality_score? number
---@field speed_score? number
---@field usefulness_score? number
---@field overall_weight? number
---@field importance_level? nyx.tree.Importance
---@field metadata? table<string, any> merged: top-level keys replaced, the others kept

-- ---- nyx.task ---------------------------------------------------------------

---Tasks: coroutines on nyx's event loop. A slow call yields its task.
---@class nyx.task
nyx.task = {}

---A task running fn(...); it starts when the current task next waits.
---@param fn fun(...): ...
---@param ... any
---@return nyx.task.Handle
function nyx.task.spawn(fn, ...) end

---Waits for all; a list, in order, of {ok = true, n = k, results...} or {ok = false, error = e}.
---@param handles nyx.task.Handle[]
---@return {ok: boolean, n?: integer, error?: any, [integer]: any}[]
function nyx.task.wait_all(handles) end

---Waits without holding the others up (0: let the others run).
---@param seconds number
function nyx.task.sleep(seconds) end

---The running task's handle, or nil.
---@return nyx.task.Handle?
function nyx.task.current() end

---Tasks not finished.
---@return integer
function nyx.task.count() end

---A task's handle (userdata). `tostring`: `nyx.task <id> (<status>)`.
---@class nyx.task.Handle
---@field id integer
---@field status nyx.task.Status
---@field cancelled boolean whether it was cancelled
local TaskHandle = {}

---Waits for the task: true, results... or false, error (a failure is a value, not a raise).
---@return boolean ok
---@return any ...
function TaskHandle:wait() end

---Cancels the task: err (default: a structured error of type `cancelled`) is
---raised in it at the wait it is in, and what it waited for is stopped (a
---timer, an LLM request, a process, a place in a queue). A task cancelled
---before it ran never runs. Tasks it started go on.
---@param err? any
---@return boolean cancelled false if it had already ended or been cancelled
function TaskHandle:cancel(err) end

-- ---- nyx.llm ----------------------------------------------------------------

---Claude calls, each logged completely (llm_interactions, llm_call_details).
---@class nyx.llm
---@field default_model string NYX_MODEL or "claude-sonnet-5-5"
---@field default_max_tokens integer 4096
---@field guard? nyx.llm.Guard set by nyx.runtime to enforce budgets
nyx.llm = {}

---One call to the Anthropic Messages API: the API's body plus nyx's own
---fields. Yields in a task. Raises a structured error (nyx.Error) on failure.
---@param request nyx.llm.Request
---@return nyx.llm.Response
function nyx.llm.complete(request) end

---A text block marked as a cache breakpoint.
---@param text string
---@param ttl? "5m"|"1h" "5m" by default
---@return nyx.llm.TextBlock
function nyx.llm.cached(text, ttl) end

---Where calls go, never the key.
---@return {base_url: string, offline: boolean}
function nyx.llm.endpoint() end

---How many requests are on the wire.
---@return integer
function nyx.llm.in_flight() end

---The runtime's hooks around every call (budgets, slots).
---@class nyx.llm.Guard
---@field before fun(tree_id: string, agent_id?: string) may raise budget_exceeded
---@field after fun(tree_id: string, usage: nyx.llm.Usage, cost?: number, ok: boolean)
---@field log fun(rows: nyx.db.LogRow[]): boolean writes the call's rows

---@class nyx.llm.TextBlock
---@field type "text"
---@field text string
---@field cache_control? {type: "ephemeral", ttl?: "5m"|"1h"}

---@class nyx.llm.Message
---@field role "user"|"assistant"
---@field content string|table[] a string or content blocks

---The Messages API's body, passed through as given, plus nyx's own fields.
---@class nyx.llm.Request
---@field tree nyx.tree.Node|string required: the node (or its id) the call belongs to
---@field agent? nyx.runtime.Agent|string the agent (or its id) making it
---@field on_text? fun(chunk: string) called as text arrives; implies stream = true
---@field cache? nyx.llm.CacheTtl mark the stable prefix (system prompt and tools) as a cache breakpoint
---@field beta? string the anthropic-beta header
---@field template? table the prompt template version (or rendering) the call was made from
---@field templates? table[] more versions the call used (runtime: recorded with the node's outcome)
---@field model? string NYX_MODEL or claude-sonnet-5-5 by default
---@field max_tokens? integer 4096 by default
---@field system? string|nyx.llm.TextBlock[]
---@field messages nyx.llm.Message[]
---@field temperature? number
---@field top_p? number
---@field top_k? integer
---@field stop_sequences? string[]
---@field tools? table[] (agent:chat: names of registered tools)
---@field tool_choice? table
---@field metadata? table
---@field stream? boolean
---@field thinking? table
---@field max_turns? integer agent:chat: 8 by default
---@field [string] any

---@class nyx.llm.Usage
---@field input_tokens integer
---@field output_tokens integer
---@field cache_creation_input_tokens? integer
---@field cache_read_input_tokens? integer
---@field cache_creation? table the 5-minute/1-hour split of the writes

---The response as the API gives it, plus nyx's fields.
---@class nyx.llm.Response
---@field id string
---@field type string "message"
---@field role string "assistant"
---@field model string
---@field content table[] content blocks
---@field stop_reason? string
---@field stop_sequence? string
---@field usage nyx.llm.Usage
---@field text string the text blocks joined
---@field interaction_id string its llm_interactions row
---@field cost_usd? number nil for a model without a price
---@field cost_without_cache_usd? number
---@field latency_ms number all attempts
---@field request_id? string
---@field retries integer
---@field turns? integer agent:chat
---@field tool_calls? integer agent:chat

-- ---- nyx.db -----------------------------------------------------------------

---PostgreSQL: the module works on the default connection, opened on first use.
---Values travel as parameters ($1, $2, ...).
---@class nyx.db
nyx.db = {}

---Runs one statement; its rows, keyed by column name.
---@param sql string
---@param ... any parameters $1, $2, ...
---@return table<string, any>[]
function nyx.db.query(sql, ...) end

---Runs one statement; the number of rows it affected.
---@param sql string
---@param ... any
---@return integer
function nyx.db.exec(sql, ...) end

---fn(...) inside BEGIN ... COMMIT (savepoints when nested); rolled back and
---raised again if fn raises. fn must not yield.
---@param fn fun(...): ...
---@param ... any
---@return any ...
function nyx.db.transaction(fn, ...) end

---The default connection: which database, where from.
---@return nyx.db.Info
function nyx.db.info() end

---Applies pending migrations; how many.
---@return integer
function nyx.db.migrate() end

---Every migration and its state.
---@return {version: integer, name: string, state: nyx.db.MigrationState, applied_at?: string}[]
function nyx.db.status() end

---A separate connection (not the default, not migrated); usable with <close>.
---@param conninfo string
---@param overrides? table<string, string> libpq parameters replacing those in conninfo
---@return nyx.db.Connection
function nyx.db.open(conninfo, overrides) end

---A new default connection (closing the old one), migrated.
---@param conninfo? string the environment's database by default
---@param overrides? table<string, string>
function nyx.db.connect(conninfo, overrides) end

---Closes the default connection; the next call opens a new one.
function nyx.db.close() end

---Writes log rows in batches on connections of its own; waits until they
---are committed unless opts.wait is false. opts.append: inserts nothing
---updates later (an update row is an error).
---@param rows nyx.db.LogRow[]
---@param opts? {wait?: boolean, append?: boolean}
---@return boolean
function nyx.db.log(rows, opts) end

---What the log writer has sent since the process started: batches (and
---those on the second lane, those sent as a prepared statement), and the
---row versions written.
---@return {batches: integer, lane1_batches: integer, prepared_batches: integer, inserted: integer, updated: integer}
function nyx.db.log_stats() end

---Waits until every row logged so far is committed.
function nyx.db.flush() end

---The statement and parameters one batch of these rows would be sent as,
---without sending them (nil and {} for no rows): which tables go as arrays,
---which as JSON, what folds into what.
---@param rows nyx.db.LogRow[]
---@return string|nil sql
---@return string[] params
function nyx.db.log_statement(rows) end

---How many values wait for the log writer's next batch (not those in a
---batch being written).
---@return integer
function nyx.db.log_backlog() end

---Waits until at most n values wait for a batch: backpressure for code
---that makes rows faster than PostgreSQL takes them.
---@param n integer
function nyx.db.log_drain(n) end

---PostgreSQL's LISTEN on the event loop: from now on each notification on
---channel runs fn(payload, channel, pid) as a task, in order (a connection of
---its own to the default database, opened the first time). The same fn twice is one.
---@param channel string a lowercase identifier (letters, digits, _, at most 63)
---@param fn fun(payload: string, channel: string, pid: integer)
function nyx.db.listen(channel, fn) end

---No function runs on channel any more.
---@param channel string
function nyx.db.unlisten(channel) end

---pg_notify(channel, payload) on the default connection: delivered when the
---transaction commits, at once outside one (at most 8000 bytes).
---@param channel string
---@param payload? string "" by default
function nyx.db.notify(channel, payload) end

---@class nyx.db.LogRow
---@field table string
---@field columns string[]|userdata
---@field values any[] holes or nyx.json.null for NULL
---@field update? boolean set columns on the row whose first column has this value

---@class nyx.db.Info
---@field database string
---@field server_version integer
---@field source "embedded"|"NYX_DATABASE_URL"|"PG* variables"|"the caller"
---@field embedded boolean
---@field in_transaction boolean
---@field host? string the host, or the folder of the Unix socket
---@field port? string
---@field user? string
---@field dbname? string

---A connection from nyx.db.open (userdata).
---@class nyx.db.Connection
local Connection = {}

---@param sql string
---@param ... any
---@return table<string, any>[]
function Connection:query(sql, ...) end

---@param sql string
---@param ... any
---@return integer
function Connection:exec(sql, ...) end

---@param fn fun(...): ...
---@param ... any
---@return any ...
function Connection:transaction(fn, ...) end

---@return nyx.db.Info
function Connection:info() end

---@return integer
function Connection:migrate() end

---@return {version: integer, name: string, state: nyx.db.MigrationState, applied_at?: string}[]
function Connection:status() end

---pg_notify(channel, payload) on this connection (see nyx.db.notify).
---@param channel string
---@param payload? string
function Connection:notify(channel, payload) end

function Connection:close() end

-- ---- nyx.config, nyx.hot ------------------------------------------------------

---system_config, read through a cache of `ttl` seconds.
---@class nyx.config
---@field ttl number seconds a read is cached (1)
nyx.config = {}

---A setting's value ({"value": v} rows give v), or default.
---@param key string
---@param default? any
---@return any
function nyx.config.get(key, default) end

---Writes {"value": value}; a new key needs its type.
---@param key string
---@param value any
---@param config_type? nyx.config.Type
---@param description? string
function nyx.config.set(key, value, config_type, description) end

---Every setting's value by key, as get gives them.
---@return table<string, any>
function nyx.config.values() end

---Forgets the cache; the next get reads the table.
function nyx.config.refresh() end

---The setting's value wrapped so that nyx.pretty and the REPL print it in
---clear (a credential prints redacted otherwise); `r.value` is the value.
---@param key string
---@return nyx.pretty.Revealed
function nyx.config.reveal(key) end

---The credentials' values (rows of config_type credential) as a set, for
---nyx.pretty to redact; nil while this process has not read system_config.
---@return table<string, true>?
function nyx.config.secrets() end

---Modules that reload when their file changes.
---@class nyx.hot
---@field interval number seconds between looks at a file (0.5)
nyx.hot = {}

---require for a module that follows its file: loaded again, fresh, when the
---file changes, kept only if it loads and passes check.
---@param name string
---@param check? fun(module: any): boolean, string?
---@param interval? number
---@return any module
---@return string version a hash of its file
function nyx.hot.require(name, check, interval) end

---The version (a hash of its file) of a module loaded with hot.require.
---@param name string
---@return string?
function nyx.hot.version(name) end

-- ---- nyx.runtime ------------------------------------------------------------

---Orchestrators and agents on the event loop.
---@class nyx.runtime
---@field AGENT_TYPES nyx.runtime.AgentType[]
---@field Agent nyx.runtime.Agent the agents' metatable (methods)
---@field Handle nyx.runtime.Handle the handles' metatable (methods)
---@field Orchestrator nyx.runtime.Orchestrator the orchestrators' metatable (methods)
---@field on nyx.runtime.Hooks hooks for views (nyx.progress)
---@field orchestrator_row_delay number seconds a sub-orchestrator runs before its row is written (if it has not ended)
---@field log_backlog_max? integer values waiting for the log writer above which a new LLM call waits (nil: no bound)
nyx.runtime = {}

---Hooks for views, each nil or a function that must not raise.
---@class nyx.runtime.Hooks
---@field node? fun(node: nyx.tree.Node, status: nyx.tree.Status) a node made (pending), or its status changed
---@field agent? fun(agent: nyx.runtime.Agent) an agent's row written
---@field call? fun(tree_id: string, usage: nyx.llm.Usage, cost: number?, ok: boolean) an LLM call finished

---Same as nyx.orchestrate.
---@param node nyx.tree.Node|string
---@param opts? nyx.OrchestrateOptions
---@return boolean ok
---@return any result_or_error
---@return nyx.runtime.Orchestrator orchestrator
function nyx.runtime.orchestrate(node, opts) end

---Waits for each: a list of {ok = true, result =} or {ok = false, error =}.
---@param handles nyx.runtime.Handle[]
---@return nyx.runtime.Outcome[]
function nyx.runtime.wait_all(handles) end

---The strategy module (current with its file) and its version.
---@param name string
---@return {run: fun(node: nyx.tree.Node, ctx: nyx.runtime.Orchestrator): any} strategy
---@return string version
function nyx.runtime.load_strategy(name) end

---Stops starting work and marks what runs: nodes cancelled, agents terminated,
---orchestrators paused. Returns the counts.
---@param why? string
---@return {agents: integer, orchestrators: integer, nodes: integer}
function nyx.runtime.stop(why) end

---The signal's name once nyx is stopping, else nil.
---@return string?
function nyx.runtime.stopping() end

---Makes SIGINT and SIGTERM stop cleanly (exit 130).
function nyx.runtime.trap_signals() end

---Agents and orchestrators started, refusals, and the process pool's figures.
---@return {agents: integer, orchestrators: integer, refused: integer, limit: integer, active: integer, peak: integer, waiting: integer, starting: integer, gated: integer, backpressure: integer}
function nyx.runtime.stats() end

---Resets the process pool's peak.
function nyx.runtime.reset_peak() end

---The agent the running task belongs to, or nil.
---@return nyx.runtime.Agent?
function nyx.runtime.current_agent() end

---Writes the prompt template uses counted in memory.
function nyx.runtime.flush_template_stats() end

---The engine's side of a steered cancel: the tasks of this process's
---orchestrators and agents on that node's subtree are cancelled (a
---`cancelled` error with node and by); agents recorded terminated,
---orchestrators paused. nyx.steer calls it on a notification.
---@param node_id string
---@param info {at?: string, by?: string} recorded as metadata.cancelled
---@return {agents: integer, orchestrators: integer} stopped
function nyx.runtime.cancel_local(node_id, info) end

---The engine's side of a steered retry: if this process runs the tree
---(root_id), claims the node and works it again (a sub-orchestrator under its
---parent's orchestrator if that still runs, else a top-level one), waiting
---for it. nil if this process does not run the tree or could not claim it.
---@param node_id string
---@param root_id string
---@param by string who asked ("pid N on HOST")
---@param strategy? string the strategy the node ran by default
---@return nyx.runtime.Handle?
function nyx.runtime.retry_local(node_id, root_id, by, strategy) end

---@class nyx.runtime.Outcome
---@field ok boolean
---@field result? any
---@field error? any

---@class nyx.runtime.SpawnSpec
---@field type? nyx.runtime.AgentType "task" by default
---@field class? string lua/agents/CLASS.lua
---@field run? fun(agent: nyx.runtime.Agent, input: any): any inline code instead of a class
---@field node? nyx.tree.Node an existing node to work on
---@field goal? string a new child node for the agent
---@field metadata? table the new node's metadata
---@field input? any the second argument of the agent's function
---@field context? table the agent's context
---@field max_recursion_depth? integer

---An orchestrator: the `ctx` a strategy's run(node, ctx) is given.
---`tostring`: `orchestrator <id> (<type>, <strategy>) on <node id>`.
---@class nyx.runtime.Orchestrator
---@field id string its orchestrators row
---@field type nyx.runtime.OrchestratorType
---@field node nyx.tree.Node
---@field strategy string the strategy's name
---@field version string the strategy's version (a hash of its file)
---@field options nyx.OrchestrateOptions the opts it was given (a sub-orchestrator's: inherited)
---@field active integer its agents active now
---@field status nyx.runtime.OrchestratorStatus
---@field max_agents integer its max_concurrent_agents
---@field pool nyx.limits.Pool its slots
---@field global_context table
---@field parent? nyx.runtime.Orchestrator nil for a top-level one, and once finished
---@field budget? table the subtree's budget
---@field shared? table[] what ctx:share queued
---@field created_at string when it started (its row's created_at)
---@field started number when it started, nyx.core.now() seconds
---@field row? boolean its orchestrators row is written (see nyx.runtime.orchestrator_row_delay)
---@field completed_at? string
---@field handle? nyx.runtime.Handle the handle spawn/orchestrate returned for it; nil once finished
---@field mark {name: string, version: string} its node's metadata.strategy, shared with the nodes its agents work alone
---@field left_open? table<nyx.tree.Node, true> nodes its agents left open (agent:leave_open) and nothing took up yet
local Orchestrator = {}

---An agent of this orchestrator.
---@param spec nyx.runtime.SpawnSpec
---@return nyx.runtime.Handle
function Orchestrator:spawn(spec) end

---A new child node of ctx.node.
---@param goal string
---@param metadata? table
---@return nyx.tree.Node
function Orchestrator:child(goal, metadata) end

---New child nodes of ctx.node, one per goal.
---@param goals (string|{goal: string, metadata?: table})[]
---@return nyx.tree.Node[]
function Orchestrator:children(goals) end

---A sub-orchestrator on node, running opts.strategy or this one.
---@param node nyx.tree.Node
---@param opts? nyx.OrchestrateOptions
---@return nyx.runtime.Handle
function Orchestrator:orchestrate(node, opts) end

---Waits for each: a list of {ok = true, result =} or {ok = false, error =}.
---@param handles nyx.runtime.Handle[]
---@return nyx.runtime.Outcome[]
function Orchestrator:wait_all(handles) end

---nyx.llm.complete for ctx.node, no agent.
---@param request nyx.llm.Request
---@return nyx.llm.Response
function Orchestrator:complete(request) end

---Every agent this orchestrator (or one under it) starts from now on gets
---content as a message from `from` before it runs.
---@param from nyx.runtime.Agent|nyx.runtime.Handle
---@param message_type nyx.runtime.MessageType
---@param content table|string
function Orchestrator:share(from, message_type, content) end

---An agent, inside its function(agent, input).
---@class nyx.runtime.Agent
---@field id string its agents row
---@field node nyx.tree.Node
---@field type nyx.runtime.AgentType
---@field class string its code, lua/agents/CLASS.lua, or "inline"
---@field depth integer its node's depth
---@field max_depth integer its max_recursion_depth
---@field context table
---@field state table written with the agent's row (set_state)
---@field status nyx.runtime.AgentStatus
---@field orchestrator nyx.runtime.Orchestrator
---@field handle nyx.runtime.Handle
---@field parent? nyx.runtime.Agent the agent that spawned it
---@field version? string its class file's version
---@field holding? boolean whether it holds its slots now
---@field inbox? nyx.runtime.Message[] messages not yet received
---@field arrived? nyx.limits.Event set when a message arrives
---@field completed_at? string
---@field open? boolean it called leave_open
---@field node_result? any what set_node_result set
local Agent = {}

---nyx.llm.complete for the agent's node and agent.
---@param request nyx.llm.Request
---@return nyx.llm.Response
function Agent:complete(request) end

---The same with registered tools (names in request.tools) handed to the model;
---runs the tools it asks for until it stops asking or max_turns.
---@param request nyx.llm.Request
---@return nyx.llm.Response
function Agent:chat(request) end

---Runs a registered tool (nyx.tool.run).
---@param name string
---@param params? table
---@return any
function Agent:tool(name, params) end

---A child agent (spawned_by set; goal makes a child of the agent's node).
---@param spec nyx.runtime.SpawnSpec
---@return nyx.runtime.Handle
function Agent:spawn(spec) end

---Merges fields into state (written with the next batch).
---@param fields table
function Agent:set_state(fields) end

---When the agent returns, its node (if it owns it: it was the first to work
---on it) stays in progress for the next agent or orchestrator started on it,
---instead of being finished with the result. No effect on failure.
function Agent:leave_open() end

---What the agent's node gets as its result when the agent (its owner)
---finishes it, instead of what run returns.
---@param v any
function Agent:set_node_result(v) end

---A message to an agent (an agent_communications row); returns its id.
---@param to nyx.runtime.Agent|nyx.runtime.Handle|string
---@param message_type nyx.runtime.MessageType
---@param content table|string a string is sent as {text =}
---@return string
function Agent:send(to, message_type, content) end

---To every other live agent of the same orchestrator; returns the message's id.
---@param message_type nyx.runtime.MessageType
---@param content table|string
---@return string
function Agent:broadcast(message_type, content) end

---The contents of the context_share messages that have arrived, without waiting.
---@return table[]
function Agent:shared() end

---The next message, waiting for one; nil after the timeout.
---@param opts? {timeout?: number}
---@return nyx.runtime.Message?
function Agent:receive(opts) end

---@class nyx.runtime.Message
---@field id string
---@field from string
---@field to? string nil for a broadcast
---@field type nyx.runtime.MessageType
---@field content table
---@field sent_at string
---@field received_at? string

---What spawn and orchestrate return. `tostring`: `<kind> <id> (<state>)`.
---@class nyx.runtime.Handle
---@field kind "agent"|"orchestrator"
---@field id string the agent's or orchestrator's id ("refused" for a refusal)
---@field agent? nyx.runtime.Agent
---@field orchestrator? nyx.runtime.Orchestrator
---@field task? nyx.task.Handle while it runs
---@field outcome? nyx.runtime.Outcome once done
local Handle = {}

---true, result or false, error once done. An agent waiting here gives its slots back.
---@return boolean ok
---@return any result_or_error
function Handle:wait() end

---Whether it has finished.
---@return boolean
function Handle:done() end

-- ---- nyx.tool ---------------------------------------------------------------

---Tools agents run, each run a tool_executions row.
---@class nyx.tool
nyx.tool = {}

---@class nyx.tool.Spec
---@field name string the API's tool name rules: 1-50 letters, digits, _ or -
---@field class? string tool_class; "lua" or "process" by default
---@field description? string
---@field input_schema? table JSON Schema, checked before every run
---@field run? fun(params: table, agent: nyx.runtime.Agent): any in-process
---@field argv? string[]|fun(params: table): string[], {stdin?: string, cwd?: string, env?: table, timeout?: number}? a process
---@field timeout? number seconds; tool_timeout_seconds by default
---@field max_output? integer bytes per stream (1 MiB)
---@field ok_codes? integer[] {0}
---@field retries? integer 0

---Registers a tool; returns its entry.
---@param spec nyx.tool.Spec
---@return table
function nyx.tool.register(spec) end

---The registered tool, or nil.
---@param name string
---@return table?
function nyx.tool.get(name) end

---The registered tools' names.
---@return string[]
function nyx.tool.list() end

---@param name string
function nyx.tool.unregister(name) end

---nil when value matches schema, else why not.
---@param schema table
---@param value any
---@param path? string the name of the value in messages ("input")
---@return string?
function nyx.tool.validate(schema, value, path) end

---Runs a tool for an agent; its result, or a tool_error once its retries are spent.
---@param agent nyx.runtime.Agent
---@param name string
---@param params? table
---@return any
function nyx.tool.run(agent, name, params) end

-- ---- nyx.strategy -----------------------------------------------------------

---What strategies share (lua/nyx/strategy.lua).
---@class nyx.strategy
---@field ROLES nyx.strategy.Roles the roles' default models
nyx.strategy = {}

---The default model of each role (system_config model_ROLE overrides).
---@class nyx.strategy.Roles
---@field plan string
---@field leaf string
---@field validate string
---@field council string
---@field judge string
---@field synthesize string

---@class nyx.strategy.Verdict
---@field pass boolean
---@field quality number 0..1
---@field reasons? string

---@class nyx.strategy.Plan
---@field answer? string
---@field atomic? boolean
---@field subtasks? (string|{goal: string, metadata?: table})[]

---The model for a role: override, ctx.options.models[role], ctx.options.model,
---NYX_MODEL, system_config model_ROLE, nyx.llm.default_model.
---@param ctx nyx.runtime.Orchestrator|nyx.runtime.Agent|table
---@param role nyx.strategy.Role
---@param override? string
---@return string
function nyx.strategy.model(ctx, role, override) end

---A request from a system and a user template, the system's stable prefix cached.
---@param system_name string
---@param user_name string
---@param vars table
---@param sys_vars? table
---@return nyx.llm.Request request
---@return nyx.prompts.Rendering user the user prompt's rendering
function nyx.strategy.request(system_name, user_name, vars, sys_vars) end

---A call whose reply must be a JSON object check accepts; one repair request,
---then an error of type kind. Returns the value and the number of repairs.
---@param caller nyx.runtime.Agent|nyx.runtime.Orchestrator
---@param req nyx.llm.Request
---@param check fun(value: table): any, string?
---@param kind string
---@return any value
---@return integer repairs
function nyx.strategy.json_reply(caller, req, check, kind) end

---The first JSON object in text, checked; or nil and why.
---@param text string
---@param check fun(value: table): any, string?
---@return any
---@return string? why
function nyx.strategy.parse(text, check) end

---A plan's check: the plan, or nil and why.
---@param v table
---@return nyx.strategy.Plan?
---@return string? why
function nyx.strategy.check_plan(v) end

---A verdict's check: the verdict, or nil and why.
---@param v table
---@return nyx.strategy.Verdict?
---@return string? why
function nyx.strategy.check_verdict(v) end

---The check of a vote among n proposals.
---@param n integer
---@return fun(v: table): table?, string?
function nyx.strategy.check_vote(n) end

---What was shared with the agent, as prompt text (or "").
---@param agent nyx.runtime.Agent
---@return string
function nyx.strategy.notes(agent) end

---system_config max_recursion_depth.
---@return integer
function nyx.strategy.depth_limit() end

---The strategy named by ctx.options.inner (default "decompose") for a
---strategy that wraps another; subtasks it starts run it, not the wrapper.
---@param ctx nyx.runtime.Orchestrator
---@param self_name string the wrapping strategy's own name (refused as inner)
---@param default? string
---@return table strategy
function nyx.strategy.inner(ctx, self_name, default) end

---A planner agent answers node's goal or splits it; waited for.
---@param ctx nyx.runtime.Orchestrator
---@param node nyx.tree.Node
---@param extra? {feedback?: string, split?: boolean}
---@return nyx.strategy.Plan
function nyx.strategy.plan(ctx, node, extra) end

---An answer agent's answer to node's goal; waited for.
---@param ctx nyx.runtime.Orchestrator
---@param node nyx.tree.Node
---@param input? table
---@return string
function nyx.strategy.answer(ctx, node, input) end

---A validator agent's verdict on result; waited for.
---@param ctx nyx.runtime.Orchestrator
---@param node nyx.tree.Node
---@param result any
---@return nyx.strategy.Verdict
function nyx.strategy.validate(ctx, node, result) end

---Child nodes for plan.subtasks, a sub-orchestrator each; returns the gathered
---text, the nodes, the results and the number failed.
---@param ctx nyx.runtime.Orchestrator
---@param node nyx.tree.Node
---@param plan nyx.strategy.Plan
---@param opts? nyx.OrchestrateOptions
---@return string gathered
---@return nyx.tree.Node[] kids
---@return string[] results
---@return integer failed
function nyx.strategy.subtasks(ctx, node, plan, opts) end

---One call combining the children's results into an answer to node's goal.
---@param ctx nyx.runtime.Orchestrator
---@param node nyx.tree.Node
---@param gathered string
---@return string
function nyx.strategy.synthesize(ctx, node, gathered) end

-- ---- nyx.prompts ------------------------------------------------------------

---Prompt templates: files prompts/*.prompt, kept in prompt_templates as versions.
---@class nyx.prompts
---@field home? string the folder read first (nyx.home .. "/prompts")
---@field path string[] more folders of *.prompt files
---@field ttl number seconds the active versions are cached (1)
nyx.prompts = {}

---@class nyx.prompts.Version
---@field id string
---@field name string
---@field key string "name@N"
---@field version integer
---@field type string system, user or assistant
---@field content string
---@field variables string[]
---@field is_active boolean
---@field usage_count integer
---@field success_rate? number
---@field cache? "5m"|"1h"
---@field file? string

---@class nyx.prompts.Rendering
---@field text string the whole rendered text
---@field prefix? string the stable part
---@field rest string
---@field blocks nyx.llm.TextBlock[]
---@field system? nyx.llm.TextBlock[] for a system template
---@field template {id: string, name: string, version: integer}

---Syncs every file now.
---@return {added: integer, changed: integer, unchanged: integer, errors: string[], files: table[]}
function nyx.prompts.sync() end

---That version, or the latest active one; nil and why if none.
---@param name string
---@param version? integer
---@return nyx.prompts.Version?
---@return string? why
function nyx.prompts.get(name, version) end

---Every version, active or not, by version.
---@param name string
---@return nyx.prompts.Version[]
function nyx.prompts.versions(name) end

---One active version, picked by lua/selection.lua.
---@param name string
---@param opts? {rng?: fun(): number}
---@return nyx.prompts.Version
function nyx.prompts.choose(name, opts) end

---Renders a template (a name: choose picks; or a version) with its variables.
---@param t string|nyx.prompts.Version
---@param vars? table<string, string|number>
---@return nyx.prompts.Rendering
function nyx.prompts.render(t, vars) end

---One use of a version (or n uses whose scores sum to score); returns
---usage_count and success_rate after it.
---@param id string|nyx.prompts.Version|nyx.prompts.Rendering
---@param score number|boolean
---@param n? integer
---@return integer usage_count
---@return number success_rate
function nyx.prompts.record(id, score, n) end

---Sets is_active by hand.
---@param name string
---@param version integer
---@param on? boolean true by default
function nyx.prompts.activate(name, version, on) end

---The parser: a template, or nil and "label:line: why".
---@param text string
---@param label string
---@return table?
---@return string? why
function nyx.prompts.parse(text, label) end

---The stable-prefix split of a template's content: prefix (or nil) and rest.
---@param content string
---@return string? prefix
---@return string rest
function nyx.prompts.split(content) end

---The template files found.
---@return table[]
function nyx.prompts.files() end

-- ---- nyx.limits -------------------------------------------------------------

---The C side of the runtime's limits.
---@class nyx.limits
nyx.limits = {}

---A pool of slots.
---@param limit integer
---@param name? string named in messages
---@return nyx.limits.Pool
function nyx.limits.pool(limit, name) end

---nil, or the refusal's message naming the setting.
---@param depth integer
---@param limit integer
---@param setting? string
---@return string?
function nyx.limits.depth(depth, limit, setting) end

---An event tasks can wait for.
---@return nyx.limits.Event
function nyx.limits.event() end

---On SIGINT/SIGTERM, fn(signal_name) runs in a task of its own; nil restores the default.
---@param fn? fun(signal: string)
function nyx.limits.trap(fn) end

---Slots (userdata): FIFO, yielding in a task, blocking outside one.
---@class nyx.limits.Pool
local Pool = {}

---Takes a slot or waits; front: ahead of the queue.
---@param front? boolean
function Pool:acquire(front) end

---Takes a slot if one is free.
---@return boolean
function Pool:try_acquire() end

function Pool:release() end

---A higher limit wakes waiters at once.
---@param n integer
function Pool:set_limit(n) end

---@return {limit: integer, active: integer, peak: integer, waiting: integer, granted: integer}
function Pool:stats() end

---How many tasks wait for a slot (stats().waiting, without the table).
---@return integer
function Pool:waiting() end

function Pool:reset_peak() end

---An event (userdata).
---@class nyx.limits.Event
local Event = {}

---true when set, false on timeout.
---@param seconds? number
---@return boolean
function Event:wait(seconds) end

---Wakes every task waiting now; returns how many.
---@return integer
function Event:set() end

-- ---- nyx.proc ---------------------------------------------------------------

---Child processes on the event loop.
---@class nyx.proc
nyx.proc = {}

---@class nyx.proc.Options
---@field argv string[] required: the program first
---@field stdin? string
---@field cwd? string
---@field env? table<string, string|false> added over nyx's environment; false removes
---@field timeout? number seconds; then SIGTERM to the group, SIGKILL 200 ms later
---@field max_output? integer bytes kept per stream (1 MiB)

---@class nyx.proc.Result
---@field exit_code? integer nil when a signal ended the child
---@field signal? integer
---@field stdout string
---@field stderr string
---@field stdout_truncated boolean
---@field stderr_truncated boolean
---@field timed_out boolean
---@field cancelled boolean
---@field duration_ms number
---@field pid integer

---Runs a program and returns once it has ended (yields in a task). A non-zero
---exit is data; a program that cannot start raises a `spawn` error.
---@param opts nyx.proc.Options
---@return nyx.proc.Result
function nyx.proc.run(opts) end

---Ends every run in flight; how many.
---@return integer
function nyx.proc.cancel_all() end

---Runs in flight.
---@return integer
function nyx.proc.running() end

-- ---- nyx.steer --------------------------------------------------------------

---@alias nyx.steer.Where
---| "engine" # the engine running the tree claimed it: `"engine", by`, at once
---| "here" # no engine claimed it: run in this process, `"here", ok, result, orchestrator`

---Steering a live tree from another process: node:cancel(), node:retry() and
---nyx.config.set write to the database and send a notification on `channel`;
---an engine (a process where nyx.orchestrate has started) listens and acts at once.
---@class nyx.steer
---@field channel string the notification channel, "nyx_control"
---@field claim_timeout number seconds retry waits for an engine to claim the node (1)
nyx.steer = {}

---@class nyx.steer.RetryOptions
---@field strategy? string default: the strategy the node ran (metadata.strategy.name)

---This process, as the changes it makes record it: "pid N on HOST".
---@return string
function nyx.steer.who() end

---This process follows nyx_control from now on (nyx.orchestrate calls it);
---cheap to call again.
function nyx.steer.listen() end

---A message on nyx_control: `{op = op, by = who(), ...fields}` as JSON.
---@param op "cancel"|"retry"|"retry_claimed"|"config"|string
---@param fields? table
function nyx.steer.announce(op, fields) end

---What node:cancel() does: the subtree's unfinished nodes cancelled in the
---database (metadata.cancelled = {at =, by =}), the engine running it told.
---@param node nyx.tree.Node
---@return integer marked how many nodes it marked
function nyx.steer.cancel(node) end

---Claims a failed or cancelled node for a new attempt (in one statement that
---succeeds once): in_progress again, metadata.retries + 1, the ended attempt
---appended to metadata.attempts. The node, fresh, or nil if it was neither.
---@param id string
---@param by string who claims it ("pid N on HOST")
---@return nyx.tree.Node?
function nyx.steer.claim(id, by) end

---What node:retry() does: the engine running the tree works the node again,
---or, if none claims it within claim_timeout, this process does.
---@param node nyx.tree.Node
---@param opts? nyx.steer.RetryOptions
---@return nyx.steer.Where where
---@return string|boolean by_or_ok "engine": who claimed it; "here": ok
---@return any result "here": the strategy's result, or the error
---@return nyx.runtime.Orchestrator? orchestrator "here"
function nyx.steer.retry(node, opts) end

-- ---- nyx.stats ----------------------------------------------------------------

---What the LLM calls cost (llm_interactions joined to llm_call_details).
---Callable: `nyx.stats{tree =, since =}` is `nyx.stats.stats{...}`.
---@class nyx.stats
---@overload fun(opts?: nyx.stats.Options): nyx.stats.Stats
nyx.stats = {}

---@class nyx.stats.Options
---@field tree? nyx.tree.Node|string the node's subtree (a node, its id or a unique prefix); none: all calls
---@field since? string calls made at or after this date or timestamp ("2026-12-01")

---Token and cost figures of a set of calls.
---@class nyx.stats.Figures
---@field calls integer
---@field failed integer
---@field input integer
---@field output integer
---@field cache_write integer
---@field cache_read integer
---@field tokens integer all four
---@field cost_usd number
---@field cost_without_cache_usd number
---@field savings_usd number cost_without_cache_usd - cost_usd
---@field cache_read_share number cache reads / (input + cache writes + cache reads), 0..1

---@class nyx.stats.ByModel: nyx.stats.Figures
---@field model string

---@class nyx.stats.ByTemplate: nyx.stats.Figures
---@field template string NAME@N of the call's template, "(none)" without one

---What nyx.stats returns.
---@class nyx.stats.Stats: nyx.stats.Figures
---@field by_model nyx.stats.ByModel[] most expensive first
---@field by_template nyx.stats.ByTemplate[] most expensive first
---@field failures {error_type: string, calls: integer}[] failed calls by error type
---@field tree? string the scope: the node's id
---@field since? string the scope: the date as PostgreSQL read it

---The figures for the calls in the node's subtree and made since the date
---(both optional). Raises one line for an unknown node or an unreadable date.
---@param opts? nyx.stats.Options
---@return nyx.stats.Stats
function nyx.stats.stats(opts) end

---The text `nyx stats` prints for s.
---@param s nyx.stats.Stats
---@return string
function nyx.stats.text(s) end

-- ---- nyx.progress -------------------------------------------------------------

---The live view while a tree runs: a status line on stderr on a terminal,
---JSON events with --json, nothing with --quiet or when stderr is not a
---terminal. It listens on nyx.runtime.on.
---@class nyx.progress
---@field interval number seconds between redraws on a terminal (0.1)
---@field tick_interval number seconds between tick events in JSON (1)
nyx.progress = {}

---The counters of the trees running now, as the status line and tick events show them.
---@class nyx.progress.Counters
---@field nodes_total integer
---@field nodes_done integer
---@field nodes_failed integer
---@field agents_active integer
---@field calls integer
---@field calls_in_flight integer
---@field cost_usd number
---@field cache_hit_rate number cache reads over input-side tokens, 0..1

---The status line for counters c.
---@param c nyx.progress.Counters
---@param opts {utf8?: boolean, colour?: boolean, width?: integer, frame?: integer, elapsed?: number}
---@return string
function nyx.progress.line(c, opts) end

---The mode nyx.run and the terminal ask for: "json" with --json; false with
---`--quiet` or when stderr is not a terminal; else "tty".
---@return "tty"|"json"|false
function nyx.progress.decide() end

---Overrides the choice: "tty", "json", or nil (decide at the first event);
---the runtime's hooks are the view's from now on.
---@param mode? "tty"|"json"
function nyx.progress.enable(mode) end

---No view; the hooks are given back (or removed).
function nyx.progress.disable() end

---"tty", "json", false (off) or nil (not decided yet).
---@return "tty"|"json"|false|nil
function nyx.progress.mode() end

-- ---- nyx.pretty ---------------------------------------------------------------

---A value as readable text, for people (the REPL prints with it): tables
---nested and indented, cycles marked, long strings cut, keys sorted, and the
---values of credentials shown as REDACTED. Callable: `nyx.pretty(v [, opts])`.
---@class nyx.pretty
---@overload fun(v: any, opts?: nyx.pretty.Options): string
---@field defaults nyx.pretty.Options the options' defaults
---@field REDACTED string what a credential prints as, "<redacted: credential>"
nyx.pretty = {}

---An unknown option, or one of the wrong type, is refused.
---@class nyx.pretty.Options
---@field depth? integer levels of nested tables shown (4)
---@field string? integer bytes of a string shown (200)
---@field items? integer entries shown per table (100)
---@field width? integer columns a one-line table may take (78)
---@field indent? string "  "
---@field reveal? boolean credentials in clear (false)
---@field secrets? table<string, true> a set of strings to redact instead of nyx.config's

---A value nyx.config.reveal gave: printed in clear. `tostring(r)` is the value's.
---@class nyx.pretty.Revealed
---@field value any

---Same as nyx.pretty(v, opts).
---@param v any
---@param opts? nyx.pretty.Options
---@return string
function nyx.pretty.pretty(v, opts) end

---v wrapped so that pretty prints it in clear.
---@param v any
---@return nyx.pretty.Revealed
function nyx.pretty.revealed(v) end
