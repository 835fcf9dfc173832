-- lua/pricing.lua: the reference's worked examples (section 8), lookups by
-- id, alias and dated id, price bands, modifiers, unknown models.
local H = require "tests.lua.helper"
local pricing = require "pricing"

local function near(want, got)
  assert.is_number(got)
  assert.is_true(math.abs(want - got) < 1e-12, ("want %.9f, got %.9f"):format(want, got))
end

describe("pricing", function()
  it("prices a cache write with mixed TTLs (worked example 1, Opus 4.8)", function()
    local cost, without, id = pricing.cost("claude-opus-4-8", {
      input_tokens = 45, cache_creation_input_tokens = 15000, cache_read_input_tokens = 0,
      cache_creation = { ephemeral_5m_input_tokens = 5000, ephemeral_1h_input_tokens = 10000 },
      output_tokens = 600 })
    near(0.146475, cost)
    near(0.090225, without)
    assert.are.equal("claude-opus-4-8", id)
  end)

  it("prices a cache read (worked example 2, Opus 4.8 and Opus 5.5)", function()
    local usage = { input_tokens = 52, cache_creation_input_tokens = 0, cache_read_input_tokens = 15000, output_tokens = 480 }
    local cost, without = pricing.cost("claude-opus-4-8", usage)
    near(0.01976, cost)
    near(0.08726, without)
    cost, without = pricing.cost("claude-opus-5-5", usage)
    near(0.012808, cost)
    near(0.069808, without)
  end)

  it("prices Sonnet 5.5 with its own read rate (0.05x, not 0.1x)", function()
    local cost, without = pricing.cost("claude-sonnet-5-5", {
      input_tokens = 1000, cache_creation_input_tokens = 2000, cache_read_input_tokens = 10000, output_tokens = 500 })
    -- 1000*2 + 2000*2.50 + 10000*0.10 + 500*10, per million
    near((2000 + 5000 + 1000 + 5000) / 1e6, cost)
    near(((1000 + 2000 + 10000) * 2 + 500 * 10) / 1e6, without)
  end)

  it("takes a write without the TTL split as a 5-minute write", function()
    local cost = pricing.cost("claude-haiku-4-5", { input_tokens = 0, cache_creation_input_tokens = 1000000, output_tokens = 0 })
    near(1.25, cost)
  end)

  it("finds dated ids, aliases and dated versions of dateless ids", function()
    local cases = {
      ["claude-sonnet-4-5-20250929"] = "claude-sonnet-4-5-20250929",
      ["claude-sonnet-4-5"] = "claude-sonnet-4-5-20250929",
      ["claude-opus-4-1"] = "claude-opus-4-1-20250805",
      ["claude-opus-4-8-20261201"] = "claude-opus-4-8",
      ["claude-haiku-4-5-20251001"] = "claude-haiku-4-5-20251001",
    }
    for model, want in pairs(cases) do
      local _, id = pricing.lookup(model)
      assert.are.equal(want, id, model)
    end
    near(15 / 1e6 * 1000 + 75 / 1e6 * 100, (pricing.cost("claude-opus-4-1", { input_tokens = 1000, output_tokens = 100 })))
  end)

  it("does not guess: an unknown or merely similar model has no price", function()
    for _, model in ipairs{ "claude-opus-4-9", "claude-opus-4-8-fast", "gpt-4", "claude-sonnet-4-5-2025" } do
      assert.is_nil(pricing.lookup(model), model)
    end
  end)

  it("prices Haiku 5.5 by the prompt's size band, all tokens at once", function()
    local small = pricing.cost("claude-haiku-5-5", { input_tokens = 100000, output_tokens = 1000 })
    near((100000 * 0.10 + 1000 * 0.50) / 1e6, small)
    local big = pricing.cost("claude-haiku-5-5", { input_tokens = 60000, cache_read_input_tokens = 40001, output_tokens = 1000 })
    near((60000 * 0.50 + 40001 * 0.05 + 1000 * 2.50) / 1e6, big)
  end)

  it("halves batch calls and adds 10% for US-only inference", function()
    local u = { input_tokens = 1000000, output_tokens = 0 }
    near(3, pricing.cost("claude-sonnet-4-6", u))
    u.service_tier = "batch"
    near(1.5, pricing.cost("claude-sonnet-4-6", u))
    u.service_tier, u.inference_geo = "standard", "us"
    near(3.3, pricing.cost("claude-sonnet-4-6", u))
  end)

  it("covers every model of the reference's price table", function()
    for _, model in ipairs{ "claude-fable-5-2", "claude-mythos-5-2", "claude-fable-5-1", "claude-mythos-5-1",
                            "claude-fable-5", "claude-mythos-5", "claude-opus-5-5", "claude-opus-5", "claude-opus-4-8",
                            "claude-opus-4-7", "claude-opus-4-6", "claude-opus-4-5", "claude-opus-4-1", "claude-opus-4",
                            "claude-sonnet-5-5", "claude-sonnet-5", "claude-sonnet-4-6", "claude-sonnet-4-5",
                            "claude-sonnet-4", "claude-haiku-5-5", "claude-haiku-4-5" } do
      assert.is_number((pricing.cost(model, { input_tokens = 1, output_tokens = 1 })), model)
    end
  end)

  it("leaves an unknown model's cost empty and warns once", function()
    local r = H.nyx({ "-e", [[
      local p = require "pricing"
      print(p.cost("claude-unknown-9", { input_tokens = 5 }), p.cost("claude-unknown-9", {}))
    ]] }, { env = { NYX_DATABASE_URL = "host=/nonexistent dbname=x" } })
    assert.are.equal("nil\tnil\n", r.out)
    assert.are.equal("nyx: no price for model 'claude-unknown-9' in lua/pricing.lua: its cost is left empty\n", r.err)
  end)
end)
