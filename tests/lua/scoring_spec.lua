-- lua/scoring.lua: the scores of a finished node, the usefulness heuristic,
-- the learned time expectation, and a formula changed while nyx runs.
local H = require "tests.lua.helper"
local S = require "scoring"

local FIELDS = { "success_score", "quality_score", "speed_score", "usefulness_score", "overall_weight" }
local LEVELS = { low = true, medium = true, high = true }

local function leaf(fields)
  local n = { status = "completed", depth = 2, kind = "agent:answer", elapsed_ms = 5000, learn = false }
  for k, v in pairs(fields or {}) do n[k] = v end
  return n
end

describe("scoring.score", function()
  before_each(function() S.reset() end)
  after_each(function() S.reset() end)

  it("gives the documented scores for a plain completed leaf", function()
    assert.are.same({ success_score = 1, quality_score = 0.6, speed_score = 0.5, usefulness_score = 0.5,
                      overall_weight = 0.705, importance_level = "medium" }, S.score(leaf()))
  end)

  it("stays in [0, 1], rounded to 4 decimals, over random inputs", function()
    math.randomseed(20261207)
    local statuses = { "completed", "completed", "failed", "cancelled" }
    local kinds = { "decompose", "council", "agent:answer", "agent:planner" }
    local seen = {}
    for _ = 1, 3000 do
      local total = math.random(0, 6)
      local ok = math.random(0, total)
      local n = {
        status = statuses[math.random(#statuses)], depth = math.random(0, 12), kind = kinds[math.random(#kinds)],
        elapsed_ms = math.random() < 0.1 and nil or math.random() * 10 ^ math.random(0, 7),
        children = total > 0 and { total = total, ok = ok, failed = total - ok } or nil,
        validation = math.random() < 0.5 and { pass = math.random() < 0.5, quality = math.random() * 1.4 - 0.2 } or nil,
        usefulness = math.random() < 0.5 and math.random() * 1.4 - 0.2 or nil,
        retries = math.random(0, 9),
        llm = { calls = math.random(0, 5), tokens = math.random(0, 9000), cost_usd = math.random() },
      }
      local s = S.score(n)
      for _, f in ipairs(FIELDS) do
        local v = s[f]
        assert.is_number(v, f)
        assert.is_true(v >= 0 and v <= 1, ("%s = %s"):format(f, v))
        assert.is_true(math.abs(v * 10000 - math.floor(v * 10000 + 0.5)) < 1e-6, ("%s = %s not rounded"):format(f, v))
      end
      assert.is_true(LEVELS[s.importance_level], s.importance_level)
      seen[s.importance_level] = true
      if n.status ~= "completed" then assert.are.equal("low", s.importance_level) end
    end
    assert.are.same({ low = true, medium = true, high = true }, seen) -- the grid reaches every level
  end)

  it("scores more elapsed time lower, and on-time as 0.5", function()
    local prev = 2
    for _, t in ipairs{ 0, 10, 500, 2500, 5000, 10000, 60000, 1e6 } do
      local sp = S.score(leaf{ elapsed_ms = t }).speed_score
      assert.is_true(sp < prev, ("speed at %d ms = %s, not below %s"):format(t, sp, prev))
      prev = sp
    end
    assert.are.equal(1, S.score(leaf{ elapsed_ms = 0 }).speed_score)
    assert.are.equal(0.5, S.score(leaf{ elapsed_ms = S.expected_ms(2, "agent:answer") }).speed_score)
    assert.are.equal(0.5, S.score(leaf{ elapsed_ms = nil }).speed_score) -- unknown: neutral
  end)

  it("scores a failed or cancelled node below a completed one, and low", function()
    local done = S.score(leaf())
    for _, st in ipairs{ "failed", "cancelled" } do
      local s = S.score(leaf{ status = st, validation = { pass = true, quality = 0.9 }, usefulness = 1 })
      assert.are.equal(0, s.success_score)
      assert.are.equal(0, s.speed_score)
      assert.are.equal(0, s.usefulness_score)
      assert.is_true(s.overall_weight < done.overall_weight)
      assert.are.equal("low", s.importance_level)
    end
  end)

  it("takes quality from the validator, and a prior from success without one", function()
    local lo = S.score(leaf{ validation = { pass = true, quality = 0.3 } })
    local hi = S.score(leaf{ validation = { pass = true, quality = 0.9 } })
    assert.are.equal(0.3, lo.quality_score)
    assert.are.equal(0.9, hi.quality_score)
    assert.is_true(hi.overall_weight > lo.overall_weight)
    -- a failing verdict caps the quality at 0.5
    assert.are.equal(0.5, S.score(leaf{ validation = { pass = false, quality = 0.8 } }).quality_score)
    assert.are.equal(0.25, S.score(leaf{ validation = { pass = false } }).quality_score)
    assert.are.equal(0.75, S.score(leaf{ validation = { pass = true } }).quality_score)
    -- no validator: 0.6 x success
    assert.are.equal(0.6, S.score(leaf()).quality_score)
    assert.are.equal(0.48, S.score(leaf{ retries = 2 }).quality_score)
  end)

  it("lowers success with retries and failed children", function()
    assert.are.equal(0.9, S.score(leaf{ retries = 1 }).success_score)
    assert.are.equal(0.5, S.score(leaf{ retries = 20 }).success_score) -- the floor
    local node = { status = "completed", depth = 0, kind = "decompose", elapsed_ms = 1000, learn = false }
    node.children = { total = 4, ok = 4, failed = 0 }
    assert.are.equal(1, S.score(node).success_score)
    node.children = { total = 4, ok = 2, failed = 2 }
    assert.are.equal(0.75, S.score(node).success_score)
    node.children = { total = 4, ok = 0, failed = 4 }
    assert.are.equal(0.5, S.score(node).success_score)
  end)

  it("takes the parent's judgment of usefulness, else 0.5", function()
    assert.are.equal(0.5, S.score(leaf()).usefulness_score)
    assert.are.equal(0.9, S.score(leaf{ usefulness = 0.9 }).usefulness_score)
    assert.are.equal(1, S.score(leaf{ usefulness = 7 }).usefulness_score) -- clamped
    assert.is_true(S.score(leaf{ usefulness = 0.9 }).overall_weight > S.score(leaf{ usefulness = 0.1 }).overall_weight)
  end)

  it("refuses what is not a finished node", function()
    assert.has_error(function() S.score(nil) end, "bad argument #1 to 'score' (a table expected)")
    assert.has_error(function() S.score{ status = "pending" } end,
                     "bad argument #1 to 'score' (status must be completed, failed or cancelled, not pending)")
  end)
end)

describe("scoring.importance", function()
  local mid = { status = "completed", depth = 1 }

  it("splits at 0.75 and 0.35", function()
    assert.are.equal("high", S.importance({ overall_weight = 0.75 }, mid))
    assert.are.equal("high", S.importance({ overall_weight = 1 }, mid))
    assert.are.equal("medium", S.importance({ overall_weight = 0.7499 }, mid))
    assert.are.equal("medium", S.importance({ overall_weight = 0.35 }, mid))
    assert.are.equal("low", S.importance({ overall_weight = 0.3499 }, mid))
    assert.are.equal("low", S.importance({ overall_weight = 0 }, mid))
  end)

  it("marks failed and cancelled nodes low, and never a completed root", function()
    assert.are.equal("low", S.importance({ overall_weight = 0.9 }, { status = "failed", depth = 1 }))
    assert.are.equal("low", S.importance({ overall_weight = 0.9 }, { status = "cancelled", depth = 0 }))
    assert.are.equal("medium", S.importance({ overall_weight = 0.1 }, { status = "completed", depth = 0 }))
    assert.are.equal("high", S.importance({ overall_weight = 0.8 }, { status = "completed", depth = 0 }))
  end)

  it("is what score uses, so it can be overridden alone", function()
    local saved = S.importance
    S.importance = function() return "high" end
    local level = S.score(leaf{ status = "failed" }).importance_level
    S.importance = saved
    assert.are.equal("high", level)
    -- and a real low-value record: slow, retried, poorly validated, unused
    assert.are.equal("low", S.score(leaf{ elapsed_ms = 60000, retries = 5, usefulness = 0.1,
                                          validation = { pass = false, quality = 0.2 } }).importance_level)
  end)
end)

describe("scoring.usefulness", function()
  it("is 1 for a result used verbatim, the floor for one not used at all", function()
    local child = "Index the orders table on customer_id before the migration."
    assert.are.equal(1, S.usefulness(child, "Plan:\n1. " .. child .. "\n2. Then copy."))
    assert.are.equal(1, S.usefulness("  " .. child .. "\n", "Plan: " .. child)) -- whitespace around it
    assert.are.equal(0.1, S.usefulness(child, "Bake bread with flour, water and yeast."))
  end)

  it("is the share of the child's content words in the parent's, on [floor, 1]", function()
    -- content words: database, migration, needs, careful, indexing; 3 of 5 used
    assert.are.equal(0.64, S.usefulness("The database migration needs careful indexing",
                                        "We did careful INDEXING of the database."))
    -- stop words and short words do not count: only "kettle" here, and it is used
    assert.are.equal(1, S.usefulness("Then this is what we would do: kettle", "a kettle"))
    assert.are.equal(0.1 + 0.9 / 3, S.usefulness("alpha beta gamma", "the gamma ray"))
    assert.are.equal(0.4 + 0.6 / 3, S.usefulness("alpha beta gamma", "the gamma ray", { floor = 0.4 }))
  end)

  it("is 1 for a completed child when the parent only gathered, 0 for a failed one", function()
    assert.are.equal(1, S.usefulness("any result", nil))
    assert.are.equal(0, S.usefulness("any result", nil, { status = "failed" }))
    assert.are.equal(0, S.usefulness("any result", "any result", { status = "cancelled" }))
    assert.are.equal(0.1, S.usefulness("", "something"))
    assert.are.equal(0.1, S.usefulness(nil, nil))
    assert.are.equal(0.1, S.usefulness("a b c", "x y z")) -- no content words, not verbatim
  end)

  it("reads a table result as its JSON", function()
    assert.are.equal(1, S.usefulness({ answer = "sourdough starter" }, "Use a sourdough starter."))
  end)
end)

describe("scoring.expected_ms", function()
  before_each(function() S.reset() end)
  after_each(function() S.reset() end)

  it("starts from the defaults: 5 s for an agent, +50% per level of subtree", function()
    assert.are.equal(5000, S.expected_ms(3, "agent:answer"))
    assert.are.equal(5000, S.expected_ms(0, "agent:answer"))
    assert.are.equal(5000 * 1.5 ^ 3, S.expected_ms(0, "decompose"))
    assert.are.equal(5000 * 1.5 ^ 2, S.expected_ms(1, "decompose"))
    assert.are.equal(5000 * 1.5, S.expected_ms(2, "decompose"))
    assert.are.equal(5000 * 1.5, S.expected_ms(7, "decompose"))
  end)

  it("learns from completed nodes: fast ones lower it", function()
    local kind = "agent:quick"
    local before = S.score(leaf{ kind = kind, elapsed_ms = 2000 }).speed_score
    local prev = S.expected_ms(2, kind)
    for _ = 1, 20 do
      S.score{ status = "completed", depth = 2, kind = kind, elapsed_ms = 500 }
      local e = S.expected_ms(2, kind)
      assert.is_true(e < prev, ("%s not below %s"):format(e, prev))
      prev = e
    end
    assert.is_true(prev < 1000 and prev > 500, prev)
    assert.is_true(math.abs(500 + 4500 * 0.8 ^ 20 - prev) < 1e-6, prev) -- alpha = 0.2
    -- so the same 2 s now scores slower
    assert.is_true(S.score(leaf{ kind = kind, elapsed_ms = 2000 }).speed_score < before)
    -- other depths and kinds keep theirs
    assert.are.equal(5000, S.expected_ms(1, kind))
    assert.are.equal(5000, S.expected_ms(2, "agent:answer"))
    assert.are.equal(20, S.learned()["2|" .. kind].n)
  end)

  it("does not learn from failures, re-scores with usefulness, or learn = false", function()
    local kind = "agent:other"
    S.score{ status = "failed", depth = 1, kind = kind, elapsed_ms = 10 }
    S.score{ status = "cancelled", depth = 1, kind = kind, elapsed_ms = 10 }
    S.score{ status = "completed", depth = 1, kind = kind, elapsed_ms = 10, usefulness = 0.7 }
    S.score{ status = "completed", depth = 1, kind = kind, elapsed_ms = 10, learn = false }
    assert.are.equal(5000, S.expected_ms(1, kind))
    S.score{ status = "completed", depth = 1, kind = kind, elapsed_ms = 10 }
    assert.are.equal(5000 + 0.2 * (10 - 5000), S.expected_ms(1, kind))
  end)
end)

describe("scoring, changed while nyx runs", function()
  local tmp, saved_path, saved_interval, saved_module
  setup(function()
    tmp = H.tmpdir()
    saved_path, saved_interval, saved_module = package.path, nyx.hot.interval, package.loaded.scoring
    package.path = tmp .. "/?.lua;" .. package.path
    package.loaded.scoring = nil
    nyx.hot.interval = 0
  end)
  teardown(function()
    package.path, nyx.hot.interval, package.loaded.scoring = saved_path, saved_interval, saved_module
    H.rmdir(tmp)
    S.reset()
  end)

  local f = assert(io.open(H.source .. "/lua/scoring.lua", "rb"))
  local original = f:read("a")
  f:close()

  local stamp = os.time()
  local function write(text)
    H.write(tmp .. "/scoring.lua", text)
    stamp = stamp + 10 -- past any mtime granularity: set it explicitly
    os.execute(("touch -d '@%d' %s/scoring.lua"):format(stamp, tmp))
  end
  local function variant(k, text) return (text or original):gsub("\nreturn M\n$", ("\nM.variant = %d\nreturn M\n"):format(k)) end
  local check = function(m)
    return type(m.score) == "function" and type(m.usefulness) == "function", "score and usefulness must be functions"
  end
  local node = { status = "completed", depth = 1, kind = "agent:hot", elapsed_ms = 100,
                 validation = { pass = true, quality = 0.2 }, usefulness = 0.3 }

  it("takes a new formula on the next require, keeps what it learned, and survives a broken file", function()
    write(variant(1))
    local m1 = nyx.hot.require("scoring", check)
    assert.are.equal(1, m1.variant) -- the file in tmp, not nyx's own
    -- 0.35 x 1 + 0.30 x 0.2 + 0.15 x 5000/5100 + 0.20 x 0.3
    assert.are.equal(0.6171, m1.score(node).overall_weight)
    m1.learn(1, "agent:hot", 1000)
    local learned = m1.expected_ms(1, "agent:hot")

    -- success alone now makes the overall weight
    local text, n = original:gsub("M%.weights = %b{}", "M.weights = { success = 1, quality = 0, speed = 0, usefulness = 0 }")
    assert.are.equal(1, n)
    write(variant(2, text))
    local m2 = nyx.hot.require("scoring", check)
    assert.are.equal(2, m2.variant)
    assert.are.equal(1, m2.score(node).overall_weight)
    assert.are.equal("high", m2.score(node).importance_level)
    assert.are.equal(learned, m2.expected_ms(1, "agent:hot")) -- observations outlive the formula

    write(variant(3, original:gsub("function M%.score", "function M.score(", 1))) -- a syntax error
    assert.are.equal(2, nyx.hot.require("scoring", check).variant)
    write("return { score = 1 }") -- loads, fails the check
    assert.are.equal(2, nyx.hot.require("scoring", check).variant)
    write(variant(4)) -- back to the weighted mean, with the learned 4.2 s
    assert.are.equal(0.6165, nyx.hot.require("scoring", check).score(node).overall_weight)
  end)
end)
