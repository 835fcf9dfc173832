-- The views of a real tree (nyx.orchestrate against the offline model, a
-- fresh database): `nyx tree show` (plain, NO_COLOR, ASCII, colour on a
-- terminal, limits), `nyx tree export` as JSON (parsed back), dot (drawn
-- by Graphviz) and Mermaid, node:print/llm_calls/tools/messages, nyx.stats
-- and `nyx stats` against sums made here from the raw rows, and the live
-- progress: JSON events, nothing when stderr is not a terminal, a status
-- line on a terminal erased before the result.
local H = require "tests.lua.helper"
local db = nyx.db

local dbname, root, nodes, by_id
local GOAL = [[Write a guide to "brewing" tea \ with <b>&</script><script>alert(1)</script>]]

local function one(sql, ...) return db.query(sql, ...)[1] end

-- Sums made here, independently of nyx.views: each node's own calls from
-- llm_interactions, added up its chain of parents.
local function sums()
  local own = {}
  for _, n in ipairs(nodes) do own[n.id] = { calls = 0, tokens = 0, cost = 0, saved = 0 } end
  for _, c in ipairs(db.query([[SELECT thought_tree_id AS node, coalesce(token_count_input, 0) + coalesce(token_count_output, 0)
      + coalesce(cache_creation_input_tokens, 0) + coalesce(cache_read_input_tokens, 0) AS tokens,
      round(coalesce(cost_usd, 0) * 1000000)::bigint AS cost,
      round(coalesce(cost_without_cache_usd - cost_usd, 0) * 1000000)::bigint AS saved FROM llm_interactions]])) do
    local n = by_id[c.node]
    while n do
      local s = own[n.id]
      s.calls, s.tokens, s.cost, s.saved = s.calls + 1, s.tokens + c.tokens, s.cost + c.cost, s.saved + c.saved
      n = n.parent_id and by_id[n.parent_id]
    end
  end
  return own -- costs in millionths of a dollar, exact
end

local function env(extra) return H.env_for(dbname, extra) end

local function tty(cmd, extra)
  return H.sh(("timeout 120 script -qfec %s /dev/null"):format(H.quote(cmd)), { env = env(extra) })
end

describe("views", function()
  setup(function()
    dbname = H.fresh_db()
    nyx.config.set("max_concurrent_agents", 50)
    local ok = nyx.orchestrate(GOAL, { strategy = "decompose" })
    assert.is_true(ok)
    root = nyx.tree.latest()
    nodes = root:subtree()
    by_id = {}
    for _, n in ipairs(nodes) do by_id[n.id] = n end
    -- a failed call (HTTP 400) and two cached ones (the second reads the cache)
    local leaf = nodes[#nodes]
    assert.is_false(pcall(nyx.llm.complete, { tree = root, messages = { { role = "user", content = "[[fake:status=400]] no" } } }))
    local system = ("Stable instructions for the tea guide. "):rep(400)
    for _ = 1, 2 do
      nyx.llm.complete { tree = leaf, model = "claude-haiku-5-5", system = system, cache = true,
                         messages = { { role = "user", content = "Which tea?" } } }
    end
    db.flush()
  end)
  teardown(function() H.drop_db(dbname) end)

  it("made a real tree to look at", function()
    assert.equal(13, #nodes)
    assert.truthy(one("SELECT count(*) AS n FROM llm_interactions WHERE cache_read_input_tokens > 0").n > 0)
  end)

  it("tree show: every node, marks, and the subtree's tokens and cost as SQL sums them", function()
    local r = H.nyx({ "tree", "show", root.id }, { env = env { LANG = "C.UTF-8", LC_ALL = false, NO_COLOR = "1" } })
    assert.equal(0, r.code, r.err)
    assert.is_nil(r.out:find("\27[", 1, true))
    local s = sums()
    local seen = 0
    for line in r.out:gmatch("[^\n]+") do
      local mark, short, tok, cost = line:match("(%S+) Write a guide.-  (%x%x%x%x%x%x%x%x)  %[.-%]  w [%d.]+ %a+  (%d+) tok %$([%d.]+)")
      if mark then
        seen = seen + 1
        local n
        for _, x in ipairs(nodes) do if x.id:sub(1, 8) == short then n = x end end
        assert.truthy(n, line)
        assert.equal("✓", mark)
        assert.equal(s[n.id].tokens, tonumber(tok), line)
        assert.equal(s[n.id].cost, math.floor(tonumber(cost) * 1e6 + 0.5), line)
      end
    end
    assert.equal(#nodes, seen)
    local head = r.out:match("^[^\n]+")
    assert.truthy(head:find(("%d nodes"):format(#nodes), 1, true), head)
    assert.truthy(head:find(("%d LLM calls (1 failed)"):format(s[root.id].calls), 1, true), head)
    assert.truthy(head:find(("$%.6f saved by caching"):format(s[root.id].saved / 1e6), 1, true), head)
    assert.truthy(s[root.id].saved > 0)
  end)

  it("tree show: ASCII marks outside a UTF-8 locale; limits summarise", function()
    local r = H.nyx({ "tree", "show", root.id:sub(1, 8) }, { env = env { LANG = "C", LC_ALL = false, LC_CTYPE = false } })
    assert.equal(0, r.code, r.err)
    assert.is_nil(r.out:find("[\128-\255]"), r.out)
    assert.truthy(r.out:find("\n%+ Write a guide"), r.out)
    assert.truthy(r.out:find("`- + ", 1, true), r.out)
    r = H.nyx({ "tree", "show", root.id, "--depth", "0" }, { env = env() })
    assert.equal(3, select(2, r.out:gsub("\n", "")), r.out)
    assert.truthy(r.out:find("12 nodes below", 1, true), r.out)
    r = H.nyx({ "tree", "show", root.id, "--siblings", "1" }, { env = env() })
    assert.truthy(r.out:find("2 more (2 completed; --all shows them)", 1, true), r.out)
    r = H.nyx({ "tree", "show", root.id, "--siblings", "1", "--all" }, { env = env() })
    assert.equal(#nodes + 1, select(2, r.out:gsub("\n", "")))
  end)

  it("tree show: colour on a terminal, none with NO_COLOR; default is the latest root", function()
    local cmd = H.quote(H.bin) .. " tree show"
    local r = tty(cmd, { NO_COLOR = false, LANG = "C.UTF-8" })
    assert.equal(0, r.code, r.out)
    assert.truthy(r.out:find("\27[32m✓\27[0m", 1, true), r.out)
    assert.truthy(r.out:find(root.id, 1, true))
    r = tty(cmd, { NO_COLOR = "1", LANG = "C.UTF-8" })
    assert.is_nil(r.out:find("\27[", 1, true), r.out)
    assert.truthy(r.out:find("✓", 1, true))
  end)

  it("bad ids and options: one line, exit 2", function()
    for _, args in ipairs {
      { "tree", "show", "00000000-0000-4000-8000-000000000000" }, { "tree", "show", "zz" },
      { "tree", "show", "--depth", "x" }, { "tree", "frob" }, { "tree", "export", root.id },
      { "tree", "export", root.id, "--format", "png" }, { "stats", "--since", "the day after" },
      { "stats", "--tree", "abcdef12" }, { "stats", "--bogus" }, { "report", "0000000000" },
    } do
      local r = H.nyx(args, { env = env() })
      assert.equal(2, r.code, table.concat(args, " ") .. ": " .. r.err)
      local lines = select(2, r.err:gsub("[^\n]*nyx: offline[^\n]*\n", ""):gsub("\n", ""))
      assert.equal(1, lines, r.err)
      assert.truthy(r.err:find("nyx " .. args[1], 1, true), r.err)
    end
  end)

  it("export json: valid JSON, every node nested with its agents, calls and totals", function()
    local r = H.nyx({ "tree", "export", root.id, "--format", "json" }, { env = env() })
    assert.equal(0, r.code, r.err)
    local doc = nyx.json.decode(r.out)
    assert.equal("nyx.tree", doc.format)
    assert.equal(#nodes, doc.node_count)
    local s, seen = sums(), {}
    local function walk(n, parent)
      assert.is_nil(seen[n.id])
      seen[n.id] = true
      assert.equal(parent, n.parent_id)
      assert.equal(by_id[n.id].goal, n.goal)
      local calls = one("SELECT count(*) AS n FROM llm_interactions WHERE thought_tree_id = $1", n.id).n
      assert.equal(calls, #n.llm_calls)
      for _, c in ipairs(n.llm_calls) do
        assert.equal(n.id, c.thought_tree_id)
        assert.equal(c.id, one("SELECT id FROM llm_interactions WHERE id = $1", c.id).id)
        assert.truthy(c.details and c.details.http_status)
      end
      assert.equal(one("SELECT count(*) AS n FROM agents WHERE thought_tree_id = $1", n.id).n, #n.agents)
      assert.equal("table", type(n.tool_executions))
      assert.equal("table", type(n.messages))
      assert.equal(s[n.id].calls, n.totals.subtree.calls)
      assert.equal(s[n.id].tokens, n.totals.subtree.tokens)
      assert.equal(s[n.id].cost, math.floor(n.totals.subtree.cost * 1e6 + 0.5))
      for _, k in ipairs(n.children) do walk(k, n.id) end
    end
    walk(doc.root, nil)
    for _, n in ipairs(nodes) do assert.truthy(seen[n.id], n.id) end
    assert.truthy(r.out:find('"children":[]', 1, true)) -- leaves: arrays, even empty
  end)

  it("export dot: Graphviz draws it, a box per node and an edge per child, labels escaped", function()
    local dir = H.tmpdir()
    local r = H.nyx({ "tree", "export", root.id, "--format", "dot" }, { env = env() })
    assert.equal(0, r.code, r.err)
    H.write(dir .. "/t.dot", r.out)
    local d = H.sh(("timeout 60 dot -Tsvg %s -o %s"):format(H.quote(dir .. "/t.dot"), H.quote(dir .. "/t.svg")))
    assert.equal(0, d.code, d.err)
    local f = assert(io.open(dir .. "/t.svg"))
    local svg = f:read("a")
    f:close()
    H.rmdir(dir)
    assert.equal(#nodes, select(2, svg:gsub('class="node"', "")))
    assert.equal(#nodes - 1, select(2, svg:gsub('class="edge"', "")))
    assert.truthy(svg:find("&quot;brewing&quot;", 1, true) or svg:find('"brewing"', 1, true), svg)
    assert.truthy(svg:find("\\ with &lt;b&gt;&amp;", 1, true), svg)
    assert.truthy(r.out:find('fillcolor="#c8e6c9"', 1, true))
  end)

  it("export mermaid: a flowchart, a node per node, an edge per child, no raw quotes in labels", function()
    local r = H.nyx({ "tree", "export", root.id, "--format", "mermaid" }, { env = env() })
    assert.equal(0, r.code, r.err)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("flowchart TD", lines[1])
    local defs, edges, keys = 0, 0, {}
    for _, l in ipairs(lines) do
      local key, label, class = l:match('^  (n%d+)%["(.*)"%]:::(%w+)$')
      if key then
        defs = defs + 1
        keys[key] = true
        assert.equal("completed", class)
        local text = label:gsub("<br/>", "")
        assert.is_nil(text:find('["<>%[%]{}|]'), label)
      end
      local a, b = l:match("^  (n%d+) %-%-> (n%d+)$")
      if a then
        edges = edges + 1
        assert.truthy(keys[a] and keys[b], l)
      end
    end
    assert.equal(#nodes, defs)
    assert.equal(#nodes - 1, edges)
    assert.truthy(r.out:find("#34;brewing#34;", 1, true))
    assert.truthy(r.out:find("classDef failed fill:", 1, true))
  end)

  it("node:print is nyx tree show; llm_calls, tools, messages, agents are the subtree's rows", function()
    local buf, real = {}, io.stdout
    -- node:print writes to io.stdout: replaced for the call, to capture it
    -- luacheck: push ignore 122
    io.stdout = { write = function(_, ...) for _, x in ipairs { ... } do buf[#buf + 1] = x end end }
    local ok, err = pcall(root.print, root)
    io.stdout = real
    -- luacheck: pop
    assert.is_true(ok, err)
    local r = H.nyx({ "tree", "show", root.id }, { env = env() })
    assert.equal(r.out, table.concat(buf))

    local calls = root:llm_calls()
    assert.equal(sums()[root.id].calls, #calls)
    for i = 2, #calls do assert.truthy(calls[i - 1].request_timestamp <= calls[i].request_timestamp) end
    local mid = nodes[2]
    assert.equal(sums()[mid.id].calls, #mid:llm_calls())
    assert.equal(1 + #mid:children(), #mid:agents())

    -- a tree whose agent runs a tool and sends a message
    local dir = H.tmpdir()
    os.execute("mkdir -p " .. H.quote(dir .. "/strategies"))
    H.write(dir .. "/strategies/views_tools.lua", [[
      return { run = function(node, ctx)
        local h = ctx:spawn { type = "task", node = node, run = function(agent)
          agent:tool("views_echo", { x = "hi" })
          agent:send(agent, "notification", "note to self")
          return "done"
        end }
        assert(ctx:wait_all { h }[1].ok)
        return "ok"
      end }]])
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    nyx.tool.register { name = "views_echo", run = function(p) return p.x end }
    local okr, why, o = nyx.orchestrate("Use a tool", { strategy = "views_tools", trap_signals = false })
    package.path = saved
    H.rmdir(dir)
    assert.is_true(okr, tostring(why))
    local t = nyx.tree.get(o.node.id)
    local tools, msgs = t:tools(), t:messages()
    assert.equal(1, #tools)
    assert.equal("views_echo", tools[1].tool_name)
    assert.equal(1, #msgs)
    assert.equal("note to self", msgs[1].content.text)
    assert.equal(0, #root:tools())
  end)

  it("nyx.stats and nyx stats: the figures SQL sums, by model, by template version, failures by type", function()
    local s = nyx.stats { tree = root }
    local t = one([[SELECT count(*) AS calls, sum(coalesce(token_count_input, 0)) AS input,
      sum(coalesce(token_count_output, 0)) AS output, sum(cache_creation_input_tokens) AS cw,
      sum(cache_read_input_tokens) AS cr, round(sum(coalesce(cost_usd, 0)) * 1000000)::bigint AS cost,
      round(sum(coalesce(cost_without_cache_usd - cost_usd, 0)) * 1000000)::bigint AS saved
      FROM llm_interactions i JOIN thought_trees n ON n.id = i.thought_tree_id WHERE n.root_id = $1]], root.id)
    assert.equal(t.calls, s.calls)
    assert.equal(t.input, s.input)
    assert.equal(t.output, s.output)
    assert.equal(t.cw, s.cache_write)
    assert.equal(t.cr, s.cache_read)
    assert.equal(t.cost, math.floor(s.cost_usd * 1e6 + 0.5))
    assert.equal(t.saved, math.floor(s.savings_usd * 1e6 + 0.5))
    assert.truthy(s.savings_usd > 0)
    assert.near(t.cr / (t.input + t.cw + t.cr), s.cache_read_share, 1e-12)
    for _, m in ipairs(s.by_model) do
      local r = one("SELECT count(*) AS n, round(sum(coalesce(cost_usd, 0)) * 1000000)::bigint AS cost FROM llm_interactions WHERE model = $1", m.model)
      assert.equal(r.n, m.calls)
      assert.equal(r.cost, math.floor(m.cost_usd * 1e6 + 0.5))
    end
    local tpl = {}
    for _, r in ipairs(db.query([[SELECT coalesce(p.name, '(none)') AS name, count(*) AS n FROM llm_interactions i
        JOIN llm_call_details d ON d.interaction_id = i.id LEFT JOIN prompt_templates p ON p.id = d.prompt_template_id
        GROUP BY 1]])) do tpl[r.name] = r.n end
    assert.truthy(next(tpl))
    for _, r in ipairs(s.by_template) do assert.equal(tpl[r.template], r.calls, r.template) end
    assert.equal(#s.by_template, (function() local n = 0; for _ in pairs(tpl) do n = n + 1 end; return n end)())
    assert.truthy(tpl["decompose_task@1"])
    assert.same({ { error_type = "invalid_request_error", calls = 1 } }, s.failures)
    assert.equal(0, nyx.stats { tree = root.id, since = "2999-01-01" }.calls)
    assert.has_error(function() nyx.stats { since = "not a date" } end)
    assert.has_error(function() nyx.stats { tree = "00000000-0000-4000-8000-000000000000" } end)

    local r = H.nyx({ "stats", "--tree", root.id, "--json" }, { env = env() })
    assert.equal(0, r.code, r.err)
    local j = nyx.json.decode(r.out)
    assert.equal(s.calls, j.calls)
    assert.equal(s.tokens, j.tokens)
    assert.equal(#s.by_model, #j.by_model)
    assert.equal("invalid_request_error", j.failures[1].error_type)
    r = H.nyx({ "stats", "--since", "2020-01-01" }, { env = env() })
    assert.equal(0, r.code, r.err)
    assert.truthy(r.out:find(("LLM calls +%d %%(1 failed%%)"):format(s.calls)), r.out)
    assert.truthy(r.out:find("decompose_task@1", 1, true))
    assert.truthy(r.out:find("invalid_request_error%s+1"), r.out)
  end)
end)

describe("progress", function()
  local dir
  setup(function()
    dbname = H.fresh_db()
    dir = H.tmpdir()
    H.write(dir .. "/run.lua", [[
      local ok = nyx.orchestrate(arg[1], { strategy = "decompose" })
      print("RESULT " .. tostring(ok) .. " " .. nyx.tree.latest().id)
    ]])
  end)
  teardown(function()
    H.rmdir(dir)
    H.drop_db(dbname)
  end)

  it("--json: one JSON event a line on stderr, node events for every node, calls with their cost", function()
    local r = H.nyx({ dir .. "/run.lua", "Write a guide to brewing tea", "--json" }, { env = env() })
    assert.equal(0, r.code, r.err)
    local id = r.out:match("RESULT true (%S+)")
    assert.truthy(id, r.out)
    local events, finished, started, cost, calls = {}, {}, {}, 0, 0
    for line in r.err:gmatch("[^\n]+") do
      local ok, ev = pcall(nyx.json.decode, line)
      assert.is_true(ok, line)
      events[ev.event] = (events[ev.event] or 0) + 1
      if ev.event == "node_finished" then finished[ev.id] = ev.status end
      if ev.event == "node_started" then started[ev.id] = true end
      if ev.event == "llm_call" then calls = calls + 1; cost = cost + ev.cost_usd end
    end
    local rows = db.query("SELECT id FROM thought_trees WHERE root_id = $1", id)
    assert.equal(13, #rows)
    for _, n in ipairs(rows) do
      assert.equal("completed", finished[n.id], n.id)
      assert.truthy(started[n.id])
    end
    local t = one([[SELECT count(*) AS n, sum(cost_usd)::float8 AS cost FROM llm_interactions i
                    JOIN thought_trees n ON n.id = i.thought_tree_id WHERE n.root_id = $1]], id)
    assert.equal(t.n, calls)
    assert.near(t.cost, cost, 1e-9)
    assert.equal(events.agent_started, events.agent_finished)
    assert.equal(one("SELECT count(*) AS n FROM agents a JOIN thought_trees n ON n.id = a.thought_tree_id WHERE n.root_id = $1", id).n,
                 events.agent_started)
    assert.truthy(events.tick >= 1)
    assert.equal(1, events.done)
    assert.equal(1, events.notice) -- the offline model's notice, as an event too
  end)

  it("no status area when stderr is not a terminal", function()
    local r = H.nyx({ dir .. "/run.lua", "Plan a picnic" }, { env = env() })
    assert.equal(0, r.code, r.err)
    assert.is_nil(r.err:find("\r", 1, true), r.err)
    assert.is_nil(r.err:find("\27", 1, true), r.err)
    assert.is_nil(r.err:find("nodes", 1, true), r.err)
  end)

  it("on a terminal: a status line redrawn while it runs, erased before the result; --quiet: none", function()
    local cmd = H.quote(H.bin) .. " " .. H.quote(dir .. "/run.lua") .. " 'Plan a picnic'"
    local r = tty(cmd, { NYX_FAKE_DELAY_MS = "150", LANG = "C.UTF-8", NO_COLOR = false })
    assert.equal(0, r.code, r.out)
    local draws = select(2, r.out:gsub("\r\27%[K\27%[36mnyx ", ""))
    assert.truthy(draws >= 2, r.out)
    assert.truthy(r.out:find("%d+/%d+ nodes"), r.out)
    assert.truthy(r.out:find("\r\27%[K\27%[36mnyx .-\27%[0m\r\27%[KRESULT true"), r.out)
    r = tty(cmd, { NYX_FAKE_DELAY_MS = "150", LANG = "C.UTF-8", NO_COLOR = "1" })
    assert.truthy(r.out:find("\r\27[Knyx ", 1, true), r.out)
    assert.is_nil(r.out:find("\27[36m", 1, true))
    r = tty(cmd .. " --quiet", { NYX_FAKE_DELAY_MS = "150" })
    assert.equal(0, r.code, r.out)
    assert.is_nil(r.out:find("nodes", 1, true), r.out)
    assert.truthy(r.out:find("RESULT true", 1, true))
  end)
end)
