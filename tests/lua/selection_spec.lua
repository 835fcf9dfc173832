-- lua/selection.lua: the Beta sampler, Thompson sampling between a 30% and
-- a 70% version (in memory and through the database), and hot reload.
local H = require "tests.lua.helper"
local S = require "selection"

local P = { A = 0.3, B = 0.7 } -- the fake model: how often each version succeeds

-- mean and variance of n draws
local function moments(draw, n)
  local sum, sq = 0, 0
  for _ = 1, n do
    local x = draw()
    sum, sq = sum + x, sq + x * x
  end
  local m = sum / n
  return m, sq / n - m * m
end

describe("selection", function()
  it("draws Beta(a, b) with the right mean and variance, for shapes above and below 1", function()
    local rng = S.rng(12345)
    for _, ab in ipairs{ { 2, 5 }, { 0.5, 0.5 }, { 1, 1 }, { 30, 70 }, { 0.2, 3 } } do
      local a, b = ab[1], ab[2]
      local m, v = moments(function() return S.sample_beta(a, b, rng) end, 40000)
      local want_m, want_v = a / (a + b), a * b / ((a + b) ^ 2 * (a + b + 1))
      assert.is_true(math.abs(m - want_m) < 0.01, ("Beta(%g,%g) mean %g, want %g"):format(a, b, m, want_m))
      assert.is_true(math.abs(v - want_v) < 0.1 * want_v + 0.001,
                     ("Beta(%g,%g) variance %g, want %g"):format(a, b, v, want_v))
    end
    local m = moments(function() return S.sample_gamma(0.3, rng) end, 40000)
    assert.is_true(math.abs(m - 0.3) < 0.02, "Gamma(0.3) mean " .. m)
    m = moments(function() return S.normal(rng) end, 40000)
    assert.is_true(math.abs(m) < 0.02, "normal mean " .. m)
  end)

  it("is reproducible from a seed and leaves math.random alone", function()
    local function run(seed)
      local rng, out = S.rng(seed), {}
      for i = 1, 20 do out[i] = S.sample_beta(1.5, 2.5, rng) end
      return out
    end
    math.randomseed(7)
    local before = math.random()
    math.randomseed(7)
    assert.are.same(run(99), run(99))
    assert.are_not.same(run(99), run(100))
    assert.are.equal(before, math.random())
    assert.has_error(function() S.choose({}) end)
  end)

  -- 300 selections between A (30%) and B (70%): the share of B in the last
  -- 100 and the cumulative (expected) regret against always choosing B.
  local function simulate(choose, record, seed)
    local pick_rng, outcome_rng = S.rng(seed), S.rng(seed * 7919 + 1)
    local b_last, regret = 0, 0
    for round = 1, 300 do
      local v = choose(pick_rng)
      local ok = outcome_rng() < P[v.label]
      record(v, ok and 1 or 0)
      regret = regret + P.B - P[v.label]
      if round > 200 and v.label == "B" then b_last = b_last + 1 end
    end
    return b_last, regret
  end

  it("learns to pick the better version, in memory", function()
    local versions = { { label = "A", usage_count = 0, success_rate = 0 },
                       { label = "B", usage_count = 0, success_rate = 0 } }
    local b_last, regret = simulate(function(rng) return S.choose(versions, rng) end, function(v, score)
      v.success_rate = (v.success_rate * v.usage_count + score) / (v.usage_count + 1)
      v.usage_count = v.usage_count + 1
    end, 2024)
    assert.is_true(b_last >= 85, ("B got %d of the last 100"):format(b_last))
    assert.is_true(regret < 0.4 * 300 / 4, "regret " .. regret) -- always A: 120
    assert.are.equal(300, versions[1].usage_count + versions[2].usage_count)
  end)

  describe("through the database", function()
    local dbname, tmp, saved_interval
    setup(function()
      dbname = H.fresh_db()
      tmp = H.tmpdir()
      table.insert(nyx.prompts.path, tmp)
      saved_interval, nyx.hot.interval = nyx.hot.interval, 0
    end)
    teardown(function()
      nyx.hot.interval = saved_interval
      table.remove(nyx.prompts.path)
      H.drop_db(dbname)
      H.rmdir(tmp)
    end)

    it("learns the same with nyx.prompts.choose and record (DB rounding included)", function()
      H.write(tmp .. "/sel_a.prompt", "name: spec_sel\ntype: system\n---\nVersion A\n")
      H.write(tmp .. "/sel_b.prompt", "name: spec_sel\ntype: system\n---\nVersion B\n")
      nyx.prompts.sync()
      local label = {}
      for _, v in ipairs(nyx.prompts.versions("spec_sel")) do label[v.id] = v.content:match("Version (%u)") end
      local b_last, regret = simulate(function(rng)
        local v = nyx.prompts.choose("spec_sel", { rng = rng })
        v.label = label[v.id]
        return v
      end, function(v, score) nyx.prompts.record(v.id, score) end, 2024)
      assert.is_true(b_last >= 85, ("B got %d of the last 100"):format(b_last))
      assert.is_true(regret < 30, "regret " .. regret)
      local total = 0
      for _, v in ipairs(nyx.prompts.versions("spec_sel")) do total = total + v.usage_count end
      assert.are.equal(300, total)
    end)

    it("follows an edit of selection.lua without a restart", function()
      local dir = H.tmpdir()
      H.write(dir .. "/v1.prompt", "name: spec_hotsel\ntype: system\n---\none\n")
      H.write(dir .. "/v2.prompt", "name: spec_hotsel\ntype: system\n---\ntwo\n")
      local script = H.write(dir .. "/run.lua", ([[
        local dir = %q
        package.path = dir .. "/?.lua;" .. package.path
        nyx.hot.interval = 0
        table.insert(nyx.prompts.path, dir)
        local t = os.time()
        local function selection(code)
          local f = assert(io.open(dir .. "/selection.lua", "w")) f:write(code) f:close()
          t = t + 1
          os.execute(("touch -d '@%%d' %%s/selection.lua"):format(t, dir))
        end
        local function picks()
          local s = ""
          for _ = 1, 5 do s = s .. nyx.prompts.choose("spec_hotsel").version end
          return s
        end
        selection("return { choose = function(v) return v[1] end }")
        print(picks())
        selection("return { choose = function(v) return v[#v] end }")
        print(picks())
        selection("return { choose = 42 }") -- fails its check: the previous stays
        print(picks())
        selection("return {")                -- does not load: the previous stays
        print(picks())
      ]]):format(dir))
      local r = H.nyx({ script }, { env = H.env_for(dbname) })
      H.rmdir(dir)
      assert.are.equal(0, r.code, r.err)
      assert.are.equal("11111\n22222\n22222\n22222\n", r.out)
      assert.matches("nyx: reloaded .*/selection.lua\n", r.err)
      assert.matches("nyx: kept the previous selection: .*selection must export choose", r.err)
      assert.matches("nyx: kept the previous selection: .*selection.lua:1: unexpected symbol near <eof>", r.err)
    end)
  end)
end)
