-- nyx.llm against the fake Claude (the offline model, in-process, over real
-- HTTP on loopback): answers, every error class and its retry decision,
-- timeouts, streaming, caching, cost, concurrency, and one logged row per
-- call, recorded before the caller sees the answer.
local H = require "tests.lua.helper"
local claude = require "nyx.claude"
local pricing = require "pricing"
local llm = nyx.llm

local function now() return require("nyx.core").now() end

describe("nyx.llm.complete", function()
  local dbname, root
  setup(function()
    dbname = H.fresh_db()
    nyx.config.set("default_retry_attempts", 3)
    nyx.config.set("llm_timeout_seconds", 20)
    root = nyx.tree.create{ goal = "llm spec" }
  end)
  teardown(function() H.drop_db(dbname) end)
  before_each(function() claude.fake_reset() end)

  local function ask(text, extra)
    local req = { tree = root, messages = { { role = "user", content = text } } }
    for k, v in pairs(extra or {}) do req[k] = v end
    return llm.complete(req)
  end

  local function fails(text, extra)
    local ok, e = pcall(ask, text, extra)
    assert.is_false(ok, "expected the call to fail")
    assert.is_table(e, tostring(e))
    return e
  end

  local function row(id) return nyx.db.query("SELECT * FROM llm_interactions WHERE id = $1", id)[1] end
  local function detail(id) return nyx.db.query("SELECT * FROM llm_call_details WHERE interaction_id = $1", id)[1] end
  local function count() return nyx.db.query("SELECT count(*) AS n FROM llm_interactions")[1].n end

  it("answers through the offline model and records everything", function()
    assert.is_true(llm.endpoint().offline)
    assert.matches("^http://127%.0%.0%.1:%d+$", llm.endpoint().base_url)
    local r = ask("Plan a small dinner party")
    assert.are.equal("message", r.type)
    assert.are.equal("assistant", r.role)
    assert.matches("^msg_", r.id)
    assert.are.equal("claude-sonnet-5-5", r.model)
    assert.are.equal("end_turn", r.stop_reason)
    assert.are.equal("text", r.content[1].type)
    assert.are.equal(r.content[1].text, r.text)
    assert.is_true(#r.text > 10)
    assert.are.equal("integer", math.type(r.usage.input_tokens))
    assert.are.equal(0, r.retries)
    assert.is_true(r.latency_ms >= 0)
    local cost, without = pricing.cost(r.model, r.usage)
    assert.are.equal(cost, r.cost_usd)
    -- by hand: Sonnet 5.5 is $2 in, $10 out per million tokens
    assert.is_true(math.abs(r.cost_usd - (r.usage.input_tokens * 2 + r.usage.output_tokens * 10) / 1e6) < 1e-12)
    assert.are.equal(without, r.cost_without_cache_usd)

    local l = row(r.interaction_id)
    assert.are.equal(root.id, l.thought_tree_id)
    assert.is_nil(l.agent_id)
    assert.are.equal("claude", l.provider)
    assert.are.equal(r.model, l.model)
    assert.are.same({ { role = "user", content = "Plan a small dinner party" } }, nyx.json.decode(l.prompt_text))
    assert.is_nil(l.system_prompt)
    assert.are.equal(r.text, l.response_text)
    assert.are.equal(r.usage.input_tokens, l.token_count_input)
    assert.are.equal(r.usage.output_tokens, l.token_count_output)
    assert.are.equal(0, l.cached_token_count)
    assert.are.equal(0, l.cache_creation_input_tokens)
    assert.are.equal(0, l.cache_read_input_tokens)
    assert.is_true(math.abs(l.cost_usd - cost) < 1e-6)
    assert.is_true(math.abs(l.cost_without_cache_usd - without) < 1e-6)
    assert.is_false(l.uses_prompt_caching)
    assert.is_nil(l.cache_ttl_seconds)
    assert.is_false(l.cache_hit)
    assert.is_true(l.success)
    assert.is_nil(l.error_message)
    assert.are.equal(0, l.retry_count)
    assert.is_true(l.latency_ms >= 0)
    assert.is_true(nyx.db.query("SELECT $1::timestamptz <= $2::timestamptz AS ok",
                                l.request_timestamp, l.response_timestamp)[1].ok)

    local d = detail(r.interaction_id)
    assert.are.equal(r.request_id, d.request_id)
    assert.matches("^req_", d.request_id)
    assert.are.equal(r.id, d.response_id)
    assert.are.equal(200, d.http_status)
    assert.are.equal("end_turn", d.stop_reason)
    assert.is_false(d.streamed)
    assert.are.same(r.usage, d.usage)
    assert.are.equal("4000", d.rate_limit["anthropic-ratelimit-requests-limit"])
    assert.are.equal(1, #d.attempts)
    assert.are.equal(200, d.attempts[1].status)
  end)

  it("records the row before the caller gets the answer", function()
    local other = nyx.db.open(H.url_for(dbname))
    local r = ask("Is it there?")
    -- another connection sees it at once: committed, not just sent
    assert.are.equal(1, other:query("SELECT count(*) AS n FROM llm_interactions WHERE id = $1", r.interaction_id)[1].n)
    other:close()
  end)

  it("answers deterministically", function()
    assert.are.equal(ask("Same question").text, ask("Same question").text)
    assert.are_not.equal(ask("Same question").text, ask("Another question").text)
  end)

  it("passes the Messages API fields through, and takes the agent", function()
    local agent = nyx.db.query("INSERT INTO agents (thought_tree_id, agent_type, agent_class, status) " ..
                               "VALUES ($1, 'task', 'spec', 'active') RETURNING id", root.id)[1]
    local r = ask("Count to ten slowly", {
      model = "claude-opus-4-8", max_tokens = 5, system = "You are terse.",
      stop_sequences = { "zzz" }, metadata = { user_id = "spec" }, agent = agent,
    })
    assert.are.equal("claude-opus-4-8", r.model)
    assert.are.equal("max_tokens", r.stop_reason)
    assert.are.equal(5, r.usage.output_tokens)
    local l = row(r.interaction_id)
    assert.are.equal(agent.id, l.agent_id)
    assert.are.equal("You are terse.", l.system_prompt)
    -- the offline model's answers begin "Offline answer:"
    local ans = ask("Say something", { stop_sequences = { "answer" } })
    assert.are.equal("stop_sequence", ans.stop_reason)
    assert.are.equal("answer", ans.stop_sequence)
    assert.are.equal("Offline ", ans.text)
  end)

  describe("retries", function()
    for _, status in ipairs{ 408, 409, 429, 500, 502, 503, 504, 529 } do
      it("retries HTTP " .. status .. " and then succeeds", function()
        local r = ask(("retry me [[fake:status=%d,times=1,retry_after_ms=10,id=r%d]]"):format(status, status))
        assert.are.equal(1, r.retries)
        assert.are.equal(1, row(r.interaction_id).retry_count)
        assert.is_true(row(r.interaction_id).success)
        local d = detail(r.interaction_id)
        assert.are.equal(2, #d.attempts)
        assert.are.equal(status, d.attempts[1].status)
        assert.are.equal(200, d.attempts[2].status)
        assert.matches("^req_", d.attempts[1].request_id)
      end)
    end

    local never = { [400] = "invalid_request_error", [401] = "authentication_error", [402] = "billing_error",
                    [403] = "permission_error", [404] = "not_found_error", [413] = "request_too_large" }
    for status, etype in pairs(never) do
      it("does not retry HTTP " .. status, function()
        local before = count()
        local e = fails(("fail me [[fake:status=%d]]"):format(status))
        assert.are.equal(etype, e.type)
        assert.are.equal(status, e.status)
        assert.are.equal(0, e.retries)
        assert.matches("^req_", e.request_id)
        assert.is_string(e.message)
        assert.are.equal(e.message, tostring(e))
        assert.are.equal(before + 1, count()) -- a failure is one row too
        local l = row(e.interaction_id)
        assert.is_false(l.success)
        assert.are.equal(0, l.retry_count)
        assert.matches(etype .. ": .* %(request%-id " .. e.request_id .. "%)", l.error_message)
        assert.are.equal(etype, detail(e.interaction_id).error_type)
      end)
    end

    it("obeys x-should-retry either way", function()
      local e = fails("[[fake:status=500,should_retry=false]]")
      assert.are.equal("api_error", e.type)
      assert.are.equal(0, e.retries)
      local r = ask("[[fake:status=400,should_retry=true,times=1,retry_after_ms=10]]")
      assert.are.equal(1, r.retries)
    end)

    it("waits as retry-after says", function()
      local t0 = now()
      local r = ask("slow down [[fake:status=429,retry_after=1,times=1]]")
      local elapsed = now() - t0
      assert.are.equal(1, r.retries)
      assert.is_true(elapsed >= 0.95 and elapsed < 5, ("took %.2f s"):format(elapsed))
      local d = detail(r.interaction_id)
      assert.are.equal(1000, d.attempts[1].delay_ms)
      assert.are.equal(429, d.attempts[1].status)
    end)

    it("backs off exponentially with jitter when the server does not say", function()
      local r = ask("[[fake:status=503,times=2]]")
      assert.are.equal(2, r.retries)
      local a = detail(r.interaction_id).attempts
      assert.is_true(a[1].delay_ms >= 375 and a[1].delay_ms <= 500, a[1].delay_ms)
      assert.is_true(a[2].delay_ms >= 750 and a[2].delay_ms <= 1000, a[2].delay_ms)
    end)

    it("gives up after default_retry_attempts and raises the last error", function()
      nyx.config.set("default_retry_attempts", 2)
      local e = fails("[[fake:status=529,retry_after_ms=5]]")
      nyx.config.set("default_retry_attempts", 3)
      assert.are.equal("overloaded_error", e.type)
      assert.are.equal(529, e.status)
      assert.are.equal("Overloaded", e.message)
      assert.are.equal(2, e.retries)
      assert.are.equal(3, #detail(e.interaction_id).attempts)
      assert.are.equal(2, row(e.interaction_id).retry_count)
    end)

    it("lets other tasks run while a call waits to retry", function()
      local order = {}
      local slow = nyx.task.spawn(function()
        ask("[[fake:status=429,retry_after=1,times=1,id=concurrent]]")
        order[#order + 1] = "retried"
      end)
      local quick = nyx.task.spawn(function() ask("quick one"); order[#order + 1] = "quick" end)
      nyx.task.wait_all{ slow, quick }
      assert.are.same({ "quick", "retried" }, order)
    end)

    it("retries a connection dropped half way", function()
      local r = ask("[[fake:drop,times=1]]")
      assert.are.equal(1, r.retries)
      local a = detail(r.interaction_id).attempts
      assert.is_number(a[1].curl_code)
    end)

    it("does not retry an answer that is not JSON", function()
      local e = fails("[[fake:malformed]]")
      assert.are.equal("invalid_response", e.type)
      assert.are.equal(0, e.retries)
    end)
  end)

  it("times out an attempt after llm_timeout_seconds", function()
    nyx.config.set("llm_timeout_seconds", 1)
    nyx.config.set("default_retry_attempts", 0)
    local t0 = now()
    local ok, e = pcall(ask, "[[fake:delay_ms=4000]]")
    local elapsed = now() - t0
    nyx.config.set("llm_timeout_seconds", 20)
    nyx.config.set("default_retry_attempts", 3)
    assert.is_false(ok)
    assert.are.equal("timeout", e.type)
    assert.matches("within 1 s %(llm_timeout_seconds%)", e.message)
    assert.is_true(elapsed >= 0.9 and elapsed < 3, ("took %.2f s"):format(elapsed))
    assert.is_false(row(e.interaction_id).success)
  end)

  describe("streaming", function()
    it("builds the same response and calls on_text as text arrives", function()
      local plain = ask("Tell me a story")
      local chunks = {}
      local r = ask("Tell me a story", { on_text = function(t) chunks[#chunks + 1] = t end })
      assert.is_true(#chunks > 1)
      assert.are.equal(plain.text, table.concat(chunks))
      assert.are.equal(plain.text, r.text)
      assert.are.equal(plain.usage.output_tokens, r.usage.output_tokens)
      assert.are.equal(plain.usage.input_tokens, r.usage.input_tokens)
      assert.are.equal("end_turn", r.stop_reason)
      assert.is_true(detail(r.interaction_id).streamed)
      assert.are.equal(r.text, row(r.interaction_id).response_text)
    end)

    it("streams without on_text, and lets on_text wait", function()
      local r = ask("Tell me a story", { stream = true })
      assert.is_true(#r.text > 0)
      local n = 0
      ask("slowly [[fake:chunk_delay_ms=5]]", { on_text = function() nyx.task.sleep(0.001); n = n + 1 end })
      assert.is_true(n > 1)
    end)

    it("assembles tool_use blocks from input_json_delta", function()
      local tools = { { name = "search", description = "look up", input_schema = { type = "object" } } }
      for _, stream in ipairs{ false, true } do
        local r = ask("find the manual [[fake:tool_use]]", { tools = tools, stream = stream })
        assert.are.equal("tool_use", r.stop_reason)
        local tu = r.content[2]
        assert.are.equal("tool_use", tu.type)
        assert.are.equal("search", tu.name)
        assert.matches("^toolu_", tu.id)
        assert.are.equal("find the manual [[fake:tool_use]]", tu.input.query)
      end
    end)

    it("fails on an error event after HTTP 200, without retrying", function()
      local chunks = {}
      local ok, e = pcall(ask, "[[fake:stream_error=overloaded_error]]",
                          { on_text = function(t) chunks[#chunks + 1] = t end })
      assert.is_false(ok)
      assert.are.equal("overloaded_error", e.type)
      assert.are.equal(0, e.retries)
      assert.are.equal(1, #chunks) -- what came before the error did arrive
      assert.is_false(row(e.interaction_id).success)
    end)

    it("fails when the stream breaks off", function()
      local e = fails("[[fake:drop]]", { stream = true })
      assert.are.equal("incomplete_stream", e.type)
    end)

    it("stops the request when on_text raises", function()
      local ok, e = pcall(ask, "[[fake:chunk_delay_ms=20]]", { on_text = function() error("enough", 0) end })
      assert.is_false(ok)
      assert.are.equal("enough", e)
      assert.are.equal(0, claude.in_flight())
    end)
  end)

  describe("prompt caching", function()
    local system = ("You are a careful planner who writes everything down. "):rep(100) -- ~1,400 tokens

    it("writes the prefix once, then reads it", function()
      local first = ask("Plan step one", { system = system, cache = true })
      local u1 = first.usage
      assert.is_true(u1.cache_creation_input_tokens > 1000)
      assert.are.equal(u1.cache_creation_input_tokens, u1.cache_creation.ephemeral_5m_input_tokens)
      assert.are.equal(0, u1.cache_read_input_tokens)
      assert.is_true(first.cost_usd > first.cost_without_cache_usd) -- the write premium
      local l1 = row(first.interaction_id)
      assert.is_true(l1.uses_prompt_caching)
      assert.are.equal(300, l1.cache_ttl_seconds)
      assert.is_false(l1.cache_hit)
      assert.are.equal(0, l1.cached_token_count)
      assert.are.equal(system, l1.system_prompt)

      local second = ask("Plan step two", { system = system, cache = true })
      local u2 = second.usage
      assert.are.equal(u1.cache_creation_input_tokens, u2.cache_read_input_tokens)
      assert.are.equal(0, u2.cache_creation_input_tokens)
      assert.is_true(second.cost_usd < second.cost_without_cache_usd)
      local l2 = row(second.interaction_id)
      assert.is_true(l2.cache_hit)
      assert.are.equal(u2.cache_read_input_tokens, l2.cached_token_count)
      assert.are.equal(u2.cache_read_input_tokens, l2.cache_read_input_tokens)
      local stats = claude.fake_stats()
      assert.are.equal(1, stats.cache_writes)
      assert.are.equal(1, stats.cache_reads)
    end)

    it("prices a one-hour write at its own rate", function()
      local r = ask("Plan", { system = system .. " (1h)", cache = "1h", model = "claude-opus-4-8" })
      local u = r.usage
      assert.is_true(u.cache_creation.ephemeral_1h_input_tokens > 1000)
      assert.are.equal(0, u.cache_creation.ephemeral_5m_input_tokens)
      assert.are.equal(3600, row(r.interaction_id).cache_ttl_seconds)
      local want = (u.input_tokens * 5 + u.cache_creation.ephemeral_1h_input_tokens * 10 + u.output_tokens * 25) / 1e6
      assert.is_true(math.abs(r.cost_usd - want) < 1e-12)
    end)

    it("passes hand-written breakpoints through and refuses a fifth", function()
      local cached = llm.cached
      local r = llm.complete{ tree = root, system = { cached(system) },
                              messages = { { role = "user", content = { cached("first part " .. system), { type = "text", text = "question" } } } } }
      assert.is_true(row(r.interaction_id).uses_prompt_caching)
      local before = count()
      local ok, err = pcall(llm.complete, { tree = root, system = { cached("a"), cached("b"), cached("c") },
                                            messages = { { role = "user", content = { cached("d"), cached("e") } } } })
      assert.is_false(ok)
      assert.matches("5 cache_control breakpoints; the API allows at most 4", err)
      assert.are.equal(before, count())
    end)
  end)

  it("refuses bad requests before sending them", function()
    local before = claude.fake_stats().requests
    local cases = {
      { { messages = { { role = "user", content = "x" } } }, "tree is required" },
      { { tree = "nope", messages = { { role = "user", content = "x" } } }, "tree must be a node" },
      { { tree = root }, "messages must be a non-empty array" },
      { { tree = root, messages = { { role = "system", content = "x" } } }, "messages[1].role must be" },
      { { tree = root, max_tokens = 0, messages = { { role = "user", content = "x" } } }, "max_tokens must be a positive integer" },
      { { tree = root, on_text = 1, messages = { { role = "user", content = "x" } } }, "on_text must be a function" },
      { { tree = root, cache = "2h", messages = { { role = "user", content = "x" } } }, "cache must be true" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(llm.complete, c[1])
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'complete' (" .. c[2], err, 1, true)
    end
    assert.are.equal(before, claude.fake_stats().requests)
  end)

  it("sends a request and reads its answer while a long run of ready tasks goes on", function()
    -- the call starts, then 400 tasks ready in the same turn run for about
    -- 0.2 s: the loop is polled meanwhile, so the request goes out and
    -- its answer is read before they are through, not after
    local before = claude.fake_stats().requests
    local sent, answered = false, false
    local call = nyx.task.spawn(ask, "polled")
    local spinners = {}
    for i = 1, 400 do
      spinners[i] = nyx.task.spawn(function()
        local t = now() + 0.0005
        while now() < t do end
        sent = sent or claude.fake_stats().requests > before
        answered = answered or claude.in_flight() == 0
      end)
    end
    for _, r in ipairs(nyx.task.wait_all(spinners)) do assert.is_true(r.ok, tostring(r.error)) end
    assert.is_true(sent, "the request waited for the whole run")
    assert.is_true(answered, "the answer waited for the whole run")
    local ok, resp = call:wait()
    assert.is_true(ok, tostring(resp))
  end)

  it("runs calls concurrently on one connection pool", function()
    local t0 = now()
    local hs = {}
    for i = 1, 100 do hs[i] = nyx.task.spawn(ask, "in parallel " .. i .. " [[fake:delay_ms=200]]") end
    local rs = nyx.task.wait_all(hs)
    local elapsed = now() - t0
    for _, r in ipairs(rs) do assert.is_true(r.ok, tostring(r.error)) end
    assert.is_true(elapsed < 3, ("100 calls of 200 ms took %.2f s"):format(elapsed)) -- not 20 s
    assert.is_true(claude.fake_stats().peak_in_flight >= 80)
  end)
end)

describe("the API key", function()
  local dbname, tmp, server
  setup(function()
    dbname = H.fresh_db{ connect = false }
    tmp = H.tmpdir()
    -- a fake Claude of its own, as a separate process
    H.sh("sh -c " .. H.quote(("%s fake-claude --port 0 > %s/fake.out 2>&1 & echo $! > %s/fake.pid"):format(
      H.quote(H.bin), tmp, tmp)))
    for _ = 1, 100 do
      local f = io.open(tmp .. "/fake.out")
      local line = f and f:read("l")
      if f then f:close() end
      if line then server = line:match("listening on (%S+)") break end
      os.execute("sleep 0.05")
    end
    assert(server, "the fake server did not start")
  end)
  teardown(function()
    os.execute("kill $(cat " .. tmp .. "/fake.pid)")
    H.drop_db(dbname)
    H.rmdir(tmp)
  end)

  local SECRET = "sk-ant-api03-TESTKEY-must-never-leak-0123456789"

  it("never reaches the database, a log or the output", function()
    local script = H.write(tmp .. "/key.lua", [==[
      local root = nyx.tree.create{ goal = "key test" }
      print(nyx.llm.complete{ tree = root, messages = { { role = "user", content = "hi" } } }.text ~= nil)
      print(pcall(nyx.llm.complete, { tree = root, messages = { { role = "user", content = "[[fake:status=401]]" } } }))
      print(nyx.llm.endpoint().base_url)
      error(nyx.llm.complete{ tree = root, messages = { { role = "user", content = "[[fake:status=403]]" } } })
    ]==])
    local r = H.nyx({ script }, { env = H.env_for(dbname, {
      ANTHROPIC_API_KEY = SECRET, ANTHROPIC_BASE_URL = server, NYX_OFFLINE = false }) })
    assert.are.equal(1, r.code)
    assert.matches("^true\nfalse\tinvalid x%-api%-key\n" .. server:gsub("%p", "%%%0") .. "\n$", r.out)
    assert.is_nil((r.out .. r.err):find("TESTKEY", 1, true))
    local conn = nyx.db.open(H.url_for(dbname))
    for _, t in ipairs{ "llm_interactions", "llm_call_details", "thought_trees", "system_config" } do
      local n = conn:query(("SELECT count(*) AS n FROM %s t WHERE row_to_json(t)::text LIKE $1"):format(t), "%TESTKEY%")[1].n
      assert.are.equal(0, n, t)
    end
    assert.are.equal(3, conn:query("SELECT count(*) AS n FROM llm_interactions")[1].n)
    conn:close()
  end)

  it("is required with a base URL, before any request", function()
    local r = H.nyx({ "-e", "nyx.llm.complete{ tree = nyx.tree.create{goal='x'}, messages = {{role='user', content='hi'}} }" },
                    { env = H.env_for(dbname, { ANTHROPIC_API_KEY = false, ANTHROPIC_BASE_URL = server, NYX_OFFLINE = false }) })
    assert.are.equal(1, r.code)
    assert.matches("ANTHROPIC_BASE_URL is set %(" .. server:gsub("%p", "%%%0") ..
                   "%) but ANTHROPIC_API_KEY is not: set the key, or unset ANTHROPIC_BASE_URL to use the offline model", r.err)
  end)
end)
