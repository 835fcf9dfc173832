-- The strategies of lua/strategies/ end to end against the offline model
-- (a real HTTP server on loopback) and a fresh database: decompose (with a
-- malformed plan repaired, and one that is not), as_needed, validator (a
-- rejection retried), council (judge and vote), memory; models by role;
-- templates recorded on calls and their records updated; scores written.
local H = require "tests.lua.helper"
local db = nyx.db

local dbname

local function q(sql, ...) return db.query(sql, ...) end
local function one(sql, ...) return db.query(sql, ...)[1] end

local function run(goal, opts)
  local ok, result, o = nyx.orchestrate(goal, opts)
  return ok, result, o, nyx.tree.get(o.node.id)
end

-- the calls of a tree, in order, with the template each used
local function calls(root_id)
  return q([[SELECT i.model, i.prompt_text, i.system_prompt, i.response_text, i.success, a.agent_class,
                    a.agent_type, t.depth, p.name AS template
             FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
             LEFT JOIN agents a ON a.id = i.agent_id
             LEFT JOIN llm_call_details d ON d.interaction_id = i.id
             LEFT JOIN prompt_templates p ON p.id = d.prompt_template_id
             WHERE t.root_id = $1 OR t.id = $1 ORDER BY i.request_timestamp, i.id]], root_id)
end

local function count_class(list, class)
  local n = 0
  for _, c in ipairs(list) do if c.agent_class == class then n = n + 1 end end
  return n
end

describe("strategies", function()
  setup(function()
    dbname = H.fresh_db()
    nyx.config.set("max_concurrent_agents", 50)
    nyx.config.set("max_recursion_depth", 10)
  end)
  teardown(function() H.drop_db(dbname) end)

  describe("decompose", function()
    it("plans from templates, answers leaves, records templates, scores every node", function()
      local ok, result, _, root = run("Write a guide to brewing tea", { strategy = "decompose", synthesize = true })
      assert.is_true(ok, tostring(result))
      local nodes = root:subtree()
      assert.are.equal(13, #nodes) -- the offline model splits in 3, down to depth 2
      local cs = calls(root.id)
      -- 13 planners, and a synthesis on each of the 4 inner nodes
      assert.are.equal(13, count_class(cs, "planner"))
      assert.are.equal(17, #cs)
      for _, c in ipairs(cs) do
        assert.is_true(c.success)
        if c.agent_class == "planner" then
          assert.matches("^decompose_task@%d+$", c.template)
          assert.are.equal(nyx.config.get("model_plan"), c.model)
        else
          assert.matches("^synthesize_task@%d+$", c.template)
          assert.are.equal(nyx.config.get("model_synthesize"), c.model)
        end
      end
      for _, n in ipairs(nodes) do
        local r = one([[SELECT success_score::float8 s, quality_score::float8 qs, speed_score::float8 sp,
                               usefulness_score::float8 u, overall_weight::float8 w, importance_level
                        FROM thought_trees WHERE id = $1]], n.id)
        assert.are.equal(1, r.s)
        for _, k in ipairs { "qs", "sp", "u", "w" } do assert.is_true(r[k] >= 0 and r[k] <= 1, k) end
        assert.truthy(({ low = 1, medium = 1, high = 1 })[r.importance_level])
      end
      -- a parent judged its children: every non-root node's usefulness was
      -- computed from its result and its parent's (not the neutral prior)
      local judged = one([[SELECT count(*) n FROM thought_trees WHERE root_id = $1 AND parent_id IS NOT NULL
                           AND usefulness_score <> 0.5]], root.id).n
      assert.is_true(judged > 0, "no child was judged")
      -- the templates' records: one use per node that called them
      local t = one([[SELECT sum(usage_count) n, max(success_rate)::float8 r FROM prompt_templates
                      WHERE name LIKE 'decompose_task@%']])
      assert.are.equal(13, t.n)
      assert.are.equal(1, t.r)
    end)

    it("repairs a malformed plan once", function()
      local ok, result, _, root = run("Outline a talk [[fake:plan=malformed,times=1,id=talk]]", { strategy = "decompose" })
      assert.is_true(ok, tostring(result))
      local cs = calls(root.id)
      assert.are.equal("repair@" .. nyx.prompts.get("repair").version, cs[2].template)
      assert.matches("JSON", cs[2].prompt_text)
      local planner = one([[SELECT state FROM agents WHERE thought_tree_id = $1 AND agent_class = 'planner']], root.id)
      assert.are.equal(1, planner.state.repairs)
      assert.are.equal(13, #root:subtree())
    end)

    it("fails the node with the model's text when the repair is malformed too", function()
      local ok, err, _, root = run("Outline a book [[fake:plan=malformed,id=book]]", { strategy = "decompose" })
      assert.is_false(ok)
      assert.are.equal("malformed_plan", err.type)
      root:refresh()
      assert.are.equal("failed", root.status)
      assert.are.equal("malformed_plan", root.metadata.error_details.type)
      assert.are.equal(2, #root.metadata.error_details.texts)
      assert.are.equal(root.metadata.error_details.text, one(
        [[SELECT response_text FROM llm_interactions WHERE thought_tree_id = $1
          ORDER BY request_timestamp DESC, id LIMIT 1]], root.id).response_text)
      assert.are.equal(0, one("SELECT success_score::float8 s FROM thought_trees WHERE id = $1", root.id).s)
      assert.are.equal("low", one("SELECT importance_level FROM thought_trees WHERE id = $1", root.id).importance_level)
    end)
  end)

  describe("as_needed", function()
    it("answers directly when the attempt passes validation", function()
      local ok, result, _, root = run("Name a tea", { strategy = "as_needed" })
      assert.is_true(ok, tostring(result))
      local cs = calls(root.id)
      assert.are.equal(2, #cs)
      assert.are.equal("answer", cs[1].agent_class)
      assert.are.equal(nyx.config.get("model_leaf"), cs[1].model)
      assert.are.equal("validator", cs[2].agent_class)
      assert.are.equal("validator", cs[2].agent_type)
      assert.are.equal(result, cs[1].response_text)
      assert.are.equal(1, #root:subtree())
      assert.is_true(root.metadata.validation.pass)
      local qs = one("SELECT quality_score::float8 q FROM thought_trees WHERE id = $1", root.id).q
      assert.is_true(math.abs(qs - root.metadata.validation.quality) < 1e-3)
    end)

    it("decomposes when the attempt fails validation, recursing the same way", function()
      local goal = "Plan a two week cycling tour through the Loire valley with a small budget"
      local ok, result, _, root = run(goal, { strategy = "as_needed" })
      assert.is_true(ok, tostring(result))
      assert.is_false(root.metadata.validation.pass)
      assert.is_string(root.metadata.as_needed.attempt_failed)
      local kids = root:children()
      assert.are.equal(3, #kids)
      for _, k in ipairs(kids) do
        assert.are.equal("completed", k.status)
        assert.are.equal("as_needed", k.metadata.strategy.name)
        assert.is_true(k.metadata.validation.pass) -- "...: step i of 3" passes
        assert.are.equal(0, #k:children())
      end
      -- root: attempt, verdict, plan, synthesis; each child: attempt, verdict
      local cs = calls(root.id)
      assert.are.equal(4 + 3 * 2, #cs)
      assert.are.equal(1, count_class(cs, "planner"))
      assert.matches("not good enough", (cs[3].prompt_text))
      local last = cs[#cs]
      assert.matches("^synthesize_task@", last.template)
      assert.are.equal(result, last.response_text)
      -- the root's result is the subtasks', not the rejected attempt: its
      -- quality is scoring's prior for an unvalidated node, not the verdict's
      local qs = one("SELECT quality_score::float8 q FROM thought_trees WHERE id = $1", root.id).q
      assert.are_not.equal(root.metadata.validation.quality, qs)
      assert.are.equal(require("scoring").params.quality_prior, qs)
    end)
  end)

  describe("validator", function()
    it("retries a rejected result with the reasons, and keeps the verdicts", function()
      local ok, result, _, root = run("Summarise tea history [[fake:verdict=fail,times=1,id=v1]]",
                                      { strategy = "validator", inner = "decompose" })
      assert.is_true(ok, tostring(result))
      local vs = root.metadata.validations
      assert.are.equal(2, #vs)
      assert.is_false(vs[1].pass)
      assert.is_true(vs[2].pass)
      -- the retry's planner was told why
      local cs = calls(root.id)
      local told = 0
      for _, c in ipairs(cs) do
        if c.agent_class == "planner" and c.depth == 0 and c.prompt_text:find("A reviewer said", 1, true) then told = told + 1 end
      end
      assert.are.equal(1, told)
      -- subtasks ran the inner strategy, and only the root was validated
      for _, k in ipairs(root:children()) do assert.are.equal("decompose", k.metadata.strategy.name) end
      assert.are.equal(2, count_class(cs, "validator"))
    end)

    it("fails the node when retry and re-plan are rejected too", function()
      local ok, err, _, root = run("Summarise coffee history [[fake:verdict=fail,id=v2]]",
                                   { strategy = "validator", inner = "decompose", retries = 1 })
      assert.is_false(ok)
      assert.are.equal("validation_failed", err.type)
      root:refresh()
      assert.are.equal("failed", root.status)
      assert.is_true(root.metadata.replanned)
      assert.are.equal(3, #root.metadata.validations)
      assert.is_not_nil(root.metadata.rejected)
      assert.are.equal("validation_failed", root.metadata.error_details.type)
    end)
  end)

  describe("council", function()
    it("has members propose, a judge pick, and records the dissent", function()
      local ok, result, _, root = run("Name a good first tea [[fake:choice=2,id=c1]]", { strategy = "council" })
      assert.is_true(ok, tostring(result))
      local c = root.metadata.council
      assert.are.equal("judge", c.mode)
      assert.are.equal(3, #c.proposals)
      assert.are.equal(2, c.choice)
      assert.are.equal(2, #c.dissent)
      local members = q([[SELECT agent_class, state FROM agents WHERE thought_tree_id = $1 AND agent_type = 'council'
                          ORDER BY created_at, id]], root.id)
      assert.are.equal(4, #members) -- 3 proposers and the judge
      local cs = calls(root.id)
      assert.are.equal(4, #cs)
      assert.are.equal(nyx.config.get("model_council"), cs[1].model)
      assert.are.equal(nyx.config.get("model_judge"), cs[4].model)
      assert.matches("Proposal 3:", cs[4].prompt_text)
      -- the result is member 2's proposal
      local second = one([[SELECT i.response_text FROM llm_interactions i JOIN agents a ON a.id = i.agent_id
                           WHERE i.thought_tree_id = $1 AND a.agent_class = 'proposer'
                             AND i.prompt_text LIKE '%member 2 of%']], root.id)
      assert.are.equal(second.response_text, result)
    end)

    it("votes: one voter per member, majority wins, dissenting votes kept", function()
      local ok, result, _, root = run("Name a calm tea", { strategy = "council", council_mode = "vote", council_size = 4 })
      assert.is_true(ok, tostring(result))
      local c = root.metadata.council
      assert.are.equal(4, #c.votes)
      local tally = {}
      for _, v in ipairs(c.votes) do tally[v.choice] = (tally[v.choice] or 0) + 1 end
      for k, n in pairs(tally) do assert.is_true(n <= tally[c.choice], "choice " .. k .. " had more votes") end
      local against = 0
      for _, v in ipairs(c.votes) do if v.choice ~= c.choice then against = against + 1 end end
      local dissenting_votes = 0
      for _, d in ipairs(c.dissent) do if d.voter then dissenting_votes = dissenting_votes + 1 end end
      assert.are.equal(against, dissenting_votes)
      assert.are.equal(8, #calls(root.id))
    end)
  end)

  describe("memory", function()
    it("shares similar finished work with the agents before they start", function()
      local ok0 = run("Plan a weekend hiking trip in the Alps", { strategy = "decompose" })
      assert.is_true(ok0)
      local ok, result, _, root = run("Plan a hiking trip in Norway", { strategy = "memory" })
      assert.is_true(ok, tostring(result))
      assert.is_true(#root.metadata.memories >= 1)
      local mem = one([[SELECT id, state FROM agents WHERE thought_tree_id = $1 AND agent_type = 'memory']], root.id)
      assert.are.equal(#root.metadata.memories, mem.state.found)
      -- one context_share row from the memory agent to each agent started after it
      local shares = one([[SELECT count(*) n, count(received_at) received, bool_and(delivered) delivered
                           FROM agent_communications WHERE sender_agent_id = $1 AND message_type = 'context_share']], mem.id)
      local others = one([[SELECT count(*) n FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
                           WHERE (t.root_id = $1 OR t.id = $1) AND a.agent_type <> 'memory']], root.id).n
      assert.are.equal(others, shares.n)
      assert.are.equal(others, shares.received)
      assert.is_true(shares.delivered)
      -- the planners saw the earlier tree's results
      local cs = calls(root.id)
      assert.matches("Results of similar past work", cs[1].prompt_text)
      assert.matches("hiking trip in the Alps", cs[1].prompt_text)
      for _, k in ipairs(root:children()) do assert.are.equal("decompose", k.metadata.strategy.name) end
    end)
  end)

  describe("scoring", function()
    it("follows lua/scoring.lua as it changes, from the next node on, without a restart", function()
      local dir = H.tmpdir()
      local function formula(w)
        H.write(dir .. "/scoring.lua", ([[
          local real = dofile(%q)
          local M = setmetatable({}, { __index = real })
          function M.score(n)
            local s = real.score(n)
            s.overall_weight = %s
            return s
          end
          return M]]):format(H.source .. "/lua/scoring.lua", w))
      end
      formula("0.123")
      local script = dir .. "/run.lua"
      H.write(script, ([[
        package.path = %q .. "/?.lua;" .. package.path
        nyx.hot.interval = 0
        local function run(goal)
          local ok, _, o = nyx.orchestrate(goal, { strategy = "as_needed" })
          assert(ok)
          return nyx.db.query("SELECT overall_weight::float8 w FROM thought_trees WHERE id = $1", o.node.id)[1].w
        end
        local before = run("Name a white tea")
        local f = assert(io.open(%q, "r")); local src = f:read("a"); f:close()
        nyx.task.sleep(1.1) -- past the file system's mtime granularity
        f = assert(io.open(%q, "w")); f:write((src:gsub("0%%.123", "0.456"))); f:close()
        print(before, run("Name an oolong tea"))]]):format(dir, dir .. "/scoring.lua", dir .. "/scoring.lua"))
      local r = H.nyx({ script }, { env = H.env_for(dbname) })
      H.rmdir(dir)
      assert.are.equal(0, r.code, r.err)
      assert.are.equal("0.123\t0.456", r.out:match("([^\n]+)\n?$"))
    end)
  end)

  describe("models by role", function()
    it("come from system_config, then a strategy's options, then the call", function()
      nyx.config.set("model_leaf", "claude-haiku-4-5")
      nyx.config.ttl = 0
      local ok, _, _, root = run("Name a green tea", { strategy = "as_needed" })
      assert.is_true(ok)
      local cs = calls(root.id)
      assert.are.equal("claude-haiku-4-5", cs[1].model)
      ok, _, _, root = run("Name a black tea", { strategy = "as_needed", models = { leaf = "claude-sonnet-4-5", validate = "claude-opus-4-5" } })
      assert.is_true(ok)
      cs = calls(root.id)
      assert.are.equal("claude-sonnet-4-5", cs[1].model)
      assert.are.equal("claude-opus-4-5", cs[2].model)
      nyx.config.set("model_leaf", "claude-haiku-5-5")
      nyx.config.ttl = 1
      assert.has_error(function() nyx.strategy.model(nil, "cook") end,
                       "unknown model role 'cook' (plan, leaf, validate, council, judge, synthesize)")
    end)
  end)
end)
