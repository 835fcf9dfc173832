-- nyx.tool: in-process and process tools run for agents, one
-- tool_executions row per run, and the tool_use loop with the model.
local H = require "tests.lua.helper"
local db = nyx.db

local dbname

local function one(sql, ...) return db.query(sql, ...)[1] end

local run_dir

-- Runs M.fn(agent) as the agent of a fresh orchestration.
local function with_agent()
  return nyx.orchestrate("tools at work", { strategy = "agentrun" })
end

describe("nyx.tool", function()
  setup(function()
    dbname = H.fresh_db()
    run_dir = H.tmpdir()
    os.execute("mkdir -p " .. run_dir .. "/strategies")
    H.write(run_dir .. "/strategies/agentrun.lua", [[
      local M = {}
      function M.run(node, ctx)
        local ok, r = ctx:spawn{ type = "task", node = node, run = function(agent) return M.fn(agent) end }:wait()
        if not ok then error(r, 0) end
        return r
      end
      return M
    ]])
    package.path = run_dir .. "/?.lua;" .. package.path
  end)
  teardown(function()
    H.rmdir(run_dir)
    H.drop_db(dbname)
  end)

  local function run(fn)
    nyx.runtime.load_strategy("agentrun").fn = fn
    return with_agent()
  end

  it("runs an in-process tool and records the run", function()
    nyx.tool.register{ name = "add", class = "math", description = "adds two numbers",
      input_schema = { type = "object", properties = { a = { type = "number" }, b = { type = "number" } },
                       required = { "a", "b" } },
      run = function(p) return { sum = p.a + p.b } end }
    local ok, r, o = run(function(agent) return agent:tool("add", { a = 2, b = 3 }).sum end)
    assert.is_true(ok, tostring(r))
    assert.are.equal(5, r)
    local row = one([[SELECT x.* FROM tool_executions x JOIN thought_trees t ON t.id = x.thought_tree_id
                      WHERE t.root_id = $1]], o.node.id)
    assert.are.equal("add", row.tool_name)
    assert.are.equal("math", row.tool_class)
    assert.are.same({ a = 2, b = 3 }, row.input_parameters)
    assert.are.same({ sum = 5 }, row.output_result)
    assert.is_true(row.success)
    assert.are.equal(0, row.retry_count)
    assert.is_not_nil(row.completed_at)
    assert.is_true(row.duration_ms >= 0)
    assert.is_not_nil(row.agent_id)
  end)

  it("refuses input that does not match the schema, without running the tool", function()
    local ran = false
    nyx.tool.register{ name = "strict", input_schema = { type = "object", required = { "path" },
      properties = { path = { type = "string" } }, additionalProperties = false }, run = function() ran = true end }
    local ok, err = run(function(agent) return agent:tool("strict", { path = 7 }) end)
    assert.is_false(ok)
    assert.are.equal("tool_error", err.type)
    assert.matches("input.path must be string, got integer", err.message)
    assert.is_false(ran)
    local ok2, err2 = run(function(agent) return agent:tool("strict", { path = "x", extra = 1 }) end)
    assert.is_false(ok2)
    assert.matches("input.extra is not a known property", err2.message)
  end)

  it("runs a process tool: argv, stdin, exit code, stdout and stderr captured, a failure recorded", function()
    nyx.tool.register{ name = "shout", class = "shell", argv = function(p)
      return { "sh", "-c", "tr a-z A-Z; echo done >&2; exit " .. p.code }, { stdin = p.text }
    end, input_schema = { type = "object", required = { "text", "code" } } }
    local ok, r = run(function(agent) return agent:tool("shout", { text = "hello", code = 0 }) end)
    assert.is_true(ok, tostring(r))
    assert.are.equal("HELLO", r.stdout)
    assert.are.equal("done\n", r.stderr)
    assert.are.equal(0, r.exit_code)
    local ok2, err, o = run(function(agent) return agent:tool("shout", { text = "x", code = 3 }) end)
    assert.is_false(ok2)
    assert.are.equal(3, err.exit_code)
    assert.matches("exit code 3: done", err.message)
    local row = one([[SELECT x.* FROM tool_executions x JOIN thought_trees t ON t.id = x.thought_tree_id
                      WHERE t.root_id = $1]], o.node.id)
    assert.is_false(row.success)
    assert.are.equal(3, row.exit_code)
    assert.are.equal("X", row.stdout)
    assert.are.equal("done\n", row.stderr)
    assert.matches("exit code 3", row.error_message)
  end)

  it("kills a process tool at its timeout and retries a failing one, each in one row", function()
    nyx.tool.register{ name = "slow", argv = { "sh", "-c", "sleep 30" }, timeout = 0.3 }
    local t0 = nyx.core.now()
    local ok, err, o = run(function(agent) return agent:tool("slow") end)
    assert.is_false(ok)
    assert.is_true(nyx.core.now() - t0 < 10)
    assert.matches("timed out after 0.3 s", err.message)
    local row = one([[SELECT x.* FROM tool_executions x JOIN thought_trees t ON t.id = x.thought_tree_id
                      WHERE t.root_id = $1]], o.node.id)
    assert.is_false(row.success)
    assert.is_true(row.output_result.timed_out)

    local marker = run_dir .. "/count"
    nyx.tool.register{ name = "flaky", retries = 2,
      argv = { "sh", "-c", "echo x >> " .. marker .. "; test $(wc -l < " .. marker .. ") -ge 3" } }
    local ok2, r2, o2 = run(function(agent) return agent:tool("flaky") end)
    assert.is_true(ok2, tostring(r2))
    local row2 = one([[SELECT x.* FROM tool_executions x JOIN thought_trees t ON t.id = x.thought_tree_id
                       WHERE t.root_id = $1]], o2.node.id)
    assert.is_true(row2.success)
    assert.are.equal(2, row2.retry_count)
  end)

  it("runs many process tools at once without blocking the loop", function()
    nyx.tool.register{ name = "nap", argv = { "sleep", "0.3" } }
    local t0 = nyx.core.now()
    local ok, r = run(function(agent)
      local hs = {}
      for i = 1, 20 do hs[i] = nyx.task.spawn(function() return agent:tool("nap").exit_code end) end
      local n = 0
      for _, x in ipairs(nyx.task.wait_all(hs)) do if x.ok and x[1] == 0 then n = n + 1 end end
      return n
    end)
    assert.is_true(ok, tostring(r))
    assert.are.equal(20, r)
    assert.is_true(nyx.core.now() - t0 < 4, "20 naps of 0.3 s ran one after another")
  end)

  it("hands tools to the model: tool_use blocks run, results go back, until end_turn", function()
    local seen = {}
    nyx.tool.register{ name = "lookup", description = "looks a word up",
      input_schema = { type = "object", properties = { query = { type = "string" } }, required = { "query" } },
      run = function(p) seen[#seen + 1] = p.query; return "definition of " .. p.query end }
    nyx.tool.register{ name = "needs_path", input_schema = { type = "object", required = { "path" } },
      run = function() error("must not run") end }
    local ok, r, o = run(function(agent)
      return agent:chat{ tools = { "lookup" }, max_tokens = 200,
        messages = { { role = "user", content = "zebra [[fake:tool_use]]" } } }
    end)
    assert.is_true(ok, tostring(r))
    assert.are.equal(2, r.turns)
    assert.are.equal(1, r.tool_calls)
    assert.are.equal("end_turn", r.stop_reason)
    assert.matches("Tool results: %[definition of zebra", r.text)
    assert.are.equal(1, #seen)
    assert.are.equal(2, one([[SELECT count(*) AS n FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
                              WHERE t.root_id = $1]], o.node.id).n)
    assert.are.equal(1, one([[SELECT count(*) AS n FROM tool_executions x JOIN thought_trees t ON t.id = x.thought_tree_id
                              WHERE t.root_id = $1 AND x.success]], o.node.id).n)
    -- input that does not match the schema goes back as an error, not run
    local ok2, r2 = run(function(agent)
      return agent:chat{ tools = { "needs_path" }, max_tokens = 200,
        messages = { { role = "user", content = "zebra [[fake:tool_use]]" } } }
    end)
    assert.is_true(ok2, tostring(r2))
    assert.matches("%[error: the input does not match the tool's schema: input.path is required%]", r2.text)
    -- a tool the agent was not given cannot be reached
    local ok3, r3 = run(function(agent)
      return agent:chat{ tools = { "lookup" }, max_tokens = 200,
        messages = { { role = "user", content = "zebra [[fake:tool_use,tool=needs_path]]" } } }
    end)
    assert.is_true(ok3, tostring(r3))
    assert.matches("%[error: no tool named 'needs_path' was given to this agent%]", r3.text)
    -- a model that never stops asking hits the turn limit
    local ok4, e4 = run(function(agent)
      return agent:chat{ tools = { "lookup" }, max_tokens = 200, max_turns = 3, system = "[[fake:tool_use=10]]",
        messages = { { role = "user", content = "again" } } }
    end)
    assert.is_false(ok4)
    assert.are.equal("turn_limit", e4.type)
  end)

  it("says clearly what is wrong with a registration", function()
    assert.has_error(function() nyx.tool.register{ name = "bad name!", run = print } end,
      "bad argument #1 to 'register' (name must be 1-50 letters, digits, _ or - (the API's tool name rules))")
    assert.has_error(function() nyx.tool.register{ name = "x" } end,
      "bad argument #1 to 'register' (give run = function(params, agent) or argv = {...})")
    assert.has_error(function() nyx.tool.run({}, "add") end,
      "bad argument #1 to 'run' (the first argument must be an agent (tools run for an agent))")
  end)
end)
