-- The offline model's answers to the prompts strategies send besides plans
-- and answers: a validator's verdict, a council's vote, and a plan that is
-- not JSON (to exercise repair), with their markers and `times`.
local H = require "tests.lua.helper"
local claude = require "nyx.claude"
local json = nyx.json

describe("the offline model", function()
  local dbname, root
  setup(function()
    dbname = H.fresh_db()
    nyx.config.set("default_retry_attempts", 3)
    root = nyx.tree.create{ goal = "fake spec" }
  end)
  teardown(function() H.drop_db(dbname) end)
  before_each(function() claude.fake_reset() end)

  local function ask(system, text, extra)
    local req = { tree = root, system = system, messages = { { role = "user", content = text } } }
    for k, v in pairs(extra or {}) do req[k] = v end
    return nyx.llm.complete(req)
  end

  local JUDGE = "You validate work. Give your verdict as JSON: {\"pass\": bool, \"quality\": 0..1, \"reasons\": \"...\"}."
  local function verdict(goal, extra)
    local r = ask(JUDGE, "Goal: " .. goal .. "\nResult: something was done.", extra)
    local v = json.decode(r.text)
    assert.is_boolean(v.pass, r.text)
    assert.is_number(v.quality, r.text)
    assert.is_string(v.reasons, r.text)
    return v, r.text
  end
  local function passes(v) assert.is_true(v.pass); assert.is_true(v.quality >= 0.70 and v.quality <= 0.99, v.quality) end
  local function fails(v) assert.is_false(v.pass); assert.is_true(v.quality >= 0.20 and v.quality <= 0.50, v.quality) end

  describe("verdicts", function()
    it("pass a short goal, and a long one that is part of a split", function()
      passes(verdict("Write a haiku about rain"))
      passes(verdict(("Write a long and detailed report on the history of the printing press (part 2 of 3)")))
      passes(verdict(("Write a long and detailed report on the history of the printing press: step 1 of 3")))
      passes(verdict(("x"):rep(60))) -- 60 is not longer than 60
      local r = ask(JUDGE, "Result: no goal line here, however long this text is, it passes.")
      passes(json.decode(r.text))
    end)

    it("fail a long goal that was not split, deterministically", function()
      local goal = "Write a long and detailed report on the history of the printing press in Europe"
      local v, text = verdict(goal)
      fails(v)
      assert.are.equal(text, select(2, verdict(goal)))
      fails(verdict(("x"):rep(61)))
      -- the qualities spread over the range with the request
      local seen = {}
      for i = 1, 12 do seen[verdict(goal .. " " .. i).quality] = true end
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      assert.is_true(n >= 4, n)
    end)

    it("is asked for by the word verdict and JSON in the system or the message", function()
      local r = ask(nil, "Goal: a haiku\nResult: ok. Reply with a VERDICT in json.")
      passes(json.decode(r.text))
      assert.matches("^Offline answer", ask("Give a verdict.", "Goal: a haiku").text) -- no JSON asked
    end)

    it("can be forced, for the first N verdicts only", function()
      fails(verdict("a haiku [[fake:verdict=fail]]"))
      fails(verdict("a haiku [[fake:verdict=fail]]")) -- without times: always
      passes(verdict(("y"):rep(80) .. " [[fake:verdict=pass]]"))
      local goal = "a haiku [[fake:verdict=fail,times=1]]"
      -- the attempt with the same goal is not a verdict: it does not count
      assert.matches("^Offline answer", ask(nil, "Goal: " .. goal).text)
      fails(verdict(goal))
      passes(verdict(goal))
      passes(verdict(goal))
      -- even a goal that would fail by default passes after that
      local long = ("z"):rep(80) .. " [[fake:verdict=fail,times=2]]"
      fails(verdict(long))
      fails(verdict(long))
      passes(verdict(long))
    end)

    it("takes a forced quality, passing from 0.6", function()
      local v = verdict("a haiku [[fake:quality=0.42]]")
      assert.is_false(v.pass)
      assert.are.equal(0.42, v.quality)
      v = verdict(("w"):rep(80) .. " [[fake:quality=0.6]]")
      assert.is_true(v.pass)
      assert.are.equal(0.6, v.quality)
      v = verdict("a haiku [[fake:verdict=fail,quality=0.8]]")
      assert.is_false(v.pass)
      assert.are.equal(0.8, v.quality)
      v = verdict("a haiku [[fake:quality=0.3,times=1,id=q1]]")
      assert.are.same({ false, 0.3 }, { v.pass, v.quality })
      passes(verdict("a haiku [[fake:quality=0.3,times=1,id=q1]]"))
    end)

    it("counts only verdicts delivered, not a retried error", function()
      local goal = "a haiku [[fake:status=529,times=1,retry_after_ms=5,verdict=fail]]"
      local v, _ = verdict(goal)
      fails(v) -- the 529 was retried; the verdict that came was the forced one
      assert.are.equal(2, claude.fake_stats().requests)
    end)
  end)

  describe("votes", function()
    local COUNCIL = "You judge proposals. Vote for the best one; reply as JSON: {\"choice\": n, \"reasons\": \"...\"}."
    local function proposals(n, tag)
      local lines = { "Goal: " .. (tag or "pick a name") }
      for i = 1, n do lines[#lines + 1] = ("Proposal %d: option %s"):format(i, string.char(64 + i)) end
      lines[#lines + 1] = "Proposals are numbered; Proposal text above." -- not a proposal line
      return table.concat(lines, "\n")
    end
    local function vote(text)
      local v = json.decode(ask(COUNCIL, text).text)
      local k = math.tointeger(v.choice) -- cjson decodes numbers as floats
      assert.is_number(k, tostring(v.choice))
      assert.is_string(v.reasons)
      return k
    end

    it("chooses one of the proposals, spread by the request", function()
      local seen = {}
      for i = 1, 30 do
        local k = vote(proposals(3, "name " .. i))
        assert.is_true(k >= 1 and k <= 3, k)
        seen[k] = true
      end
      assert.are.same({ true, true, true }, seen)
      assert.are.equal(vote(proposals(3, "same")), vote(proposals(3, "same")))
      for i = 1, 10 do assert.are.equal(1, vote(proposals(1, "one " .. i))) end
      assert.are.equal(1, vote("Goal: nothing to choose from"))
    end)

    it("can be forced", function()
      assert.are.equal(2, vote(proposals(4) .. "\n[[fake:choice=2]]"))
      assert.are.equal(4, vote(proposals(4) .. "\n[[fake:choice=4]]"))
    end)

    it("gives way to a verdict", function()
      local v = json.decode(ask(COUNCIL .. " Or give a verdict.", "Goal: a haiku").text)
      assert.is_true(v.pass)
      assert.is_nil(v.choice)
    end)
  end)

  describe("malformed plans", function()
    local PLANNER = 'Split the goal into subtasks. Reply with JSON only: {"subtasks": [{"goal": "..."}]}.'
    local function plan(text) return ask(PLANNER, text).text end
    local function prose(t) assert.matches("^I would split this into a few parts: first", t); assert.is_nil(t:find("{", 1, true)) end
    local function valid(t) assert.is_table(json.decode(t).subtasks, t) end

    it("answers prose for the first N plans, then JSON", function()
      local goal = "Goal: Write a book on rivers [[fake:plan=malformed,times=1]]"
      assert.matches("^Offline answer", ask(nil, goal).text) -- not a plan: does not count
      prose(plan(goal))
      valid(plan(goal))
      -- a repair request mentions subtasks and JSON too: a valid plan
      valid(plan(goal .. "\nYour reply was not JSON. Reply with the subtasks as JSON."))
    end)

    it("works on the fractal workload and without times", function()
      local goal = "Goal: Write a book on lakes [[fake:plan=malformed,times=2]]\nDEPTH: 0"
      prose(plan(goal))
      prose(plan(goal))
      local t = plan(goal)
      assert.are.equal(3, #json.decode(t).subtasks)
      for _ = 1, 3 do prose(plan("Goal: Write a book [[fake:plan=malformed]]")) end
    end)

    it("makes the planner agent raise malformed_plan", function()
      local ok, err = nyx.orchestrate("Write a book on seas [[fake:plan=malformed]]", { trap_signals = false })
      assert.is_false(ok)
      assert.are.equal("malformed_plan", err.type)
      assert.matches("^I would split this", err.text)
    end)
  end)

  describe("answers", function()
    it("mention the first words of a goal line, never a marker", function()
      assert.matches("^Offline answer: on Write a haiku about rain in,", ask(nil, "Goal: Write a haiku about rain in spring today").text)
      assert.matches("^Offline answer: on Plan, ", ask(nil, "Goal: Plan [[fake:id=x]]").text)
      assert.is_nil(ask(nil, "Plan a party").text:find(",", 1, true)) -- no goal line: words only
    end)
  end)
end)
