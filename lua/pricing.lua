--- pricing: what a Claude call costs, in USD. Edit the table to follow
-- Anthropic's price changes; nyx reads this file from disk (lua/ next to the
-- binary, or share/nyx/lua when installed) and picks up a change on the
-- next call, without a rebuild or restart.
--
-- Prices are USD per million tokens, each rate stated (newer models do not
-- all follow the 1.25x / 2x / 0.1x multipliers). Sources: the reference in
-- shared/reference/anthropic-messages-api.md, section 7 (December 2026);
-- rows marked UNCONFIRMED there are marked here too.
local M = {}

local function p(input, w5m, w1h, read, output)
  return { input = input, cache_write_5m = w5m, cache_write_1h = w1h,
           cache_read = read, output = output }
end

M.models = {
  ["claude-fable-5-2"] = p(8, 10, 16, 0.20, 40),          -- cache rates UNCONFIRMED (third-party)
  ["claude-mythos-5-2"] = p(8, 10, 16, 0.20, 40),         -- UNCONFIRMED (third-party, id inferred)
  ["claude-fable-5-1"] = p(10, 12.50, 20, 0.25, 50),
  ["claude-mythos-5-1"] = p(10, 12.50, 20, 0.25, 50),
  ["claude-fable-5"] = p(10, 12.50, 20, 1.00, 50),
  ["claude-mythos-5"] = p(10, 12.50, 20, 1.00, 50),
  ["claude-opus-5-5"] = p(4, 5, 8, 0.20, 20),
  ["claude-opus-5"] = p(5, 6.25, 10, 0.50, 25),
  ["claude-opus-4-8"] = p(5, 6.25, 10, 0.50, 25),
  ["claude-opus-4-7"] = p(5, 6.25, 10, 0.50, 25),
  ["claude-opus-4-6"] = p(5, 6.25, 10, 0.50, 25),
  ["claude-opus-4-5-20251101"] = p(5, 6.25, 10, 0.50, 25),
  ["claude-opus-4-1-20250805"] = p(15, 18.75, 30, 1.50, 75),
  ["claude-opus-4-20250514"] = p(15, 18.75, 30, 1.50, 75),
  ["claude-sonnet-5-5"] = p(2, 2.50, 4, 0.10, 10),        -- read 0.10 since 2026-10-07: UNCONFIRMED (0.20 before)
  ["claude-sonnet-5"] = p(2, 2.50, 4, 0.20, 10),
  ["claude-sonnet-4-6"] = p(3, 3.75, 6, 0.30, 15),
  ["claude-sonnet-4-5-20250929"] = p(3, 3.75, 6, 0.30, 15),
  ["claude-sonnet-4-20250514"] = p(3, 3.75, 6, 0.30, 15),
  ["claude-haiku-5-5"] = {                                 -- cache reads UNCONFIRMED
    -- the band follows the prompt size (input + cache writes + reads);
    -- past 100,000 every token of the request is billed at the high rates
    bands = {
      { max_prompt = 100000, input = 0.10, cache_write_5m = 0.125, cache_write_1h = 0.20, cache_read = 0.01, output = 0.50 },
      { input = 0.50, cache_write_5m = 0.625, cache_write_1h = 1.00, cache_read = 0.05, output = 2.50 },
    },
  },
  ["claude-haiku-4-5-20251001"] = p(1, 1.25, 2, 0.10, 5),
}

--- Convenience aliases the API accepts for dated models.
M.aliases = {
  ["claude-opus-4-5"] = "claude-opus-4-5-20251101",
  ["claude-opus-4-1"] = "claude-opus-4-1-20250805",
  ["claude-opus-4-0"] = "claude-opus-4-20250514",
  ["claude-opus-4"] = "claude-opus-4-20250514",
  ["claude-sonnet-4-5"] = "claude-sonnet-4-5-20250929",
  ["claude-sonnet-4-0"] = "claude-sonnet-4-20250514",
  ["claude-sonnet-4"] = "claude-sonnet-4-20250514",
  ["claude-haiku-4-5"] = "claude-haiku-4-5-20251001",
}

--- lookup(model): the price entry and the id it was found under. Exact id
-- first, then alias, then the longest known id or alias that the model
-- extends by a date (claude-opus-4-8-20261201); anything else is unknown.
function M.lookup(model)
  if type(model) ~= "string" then return nil end
  if M.models[model] then return M.models[model], model end
  local alias = M.aliases[model]
  if alias and M.models[alias] then return M.models[alias], alias end
  local best
  for _, names in ipairs{ M.models, M.aliases } do
    for name in pairs(names) do
      if #model > #name and model:sub(1, #name) == name and model:sub(#name + 1):match("^%-%d%d%d%d%d%d%d%d$")
         and (not best or #name > #best) then
        best = name
      end
    end
  end
  if not best then return nil end
  local id = M.aliases[best] or best
  return M.models[id], id
end

local warned = {}

--- cost(model, usage): cost_usd, cost_without_cache_usd, the id priced,
-- from the API's usage (input_tokens excludes cached tokens). For a model
-- without a price: nil and one warning per model, never a made-up price.
function M.cost(model, usage)
  local entry, id = M.lookup(model)
  if not entry then
    if not warned[model] then
      warned[model] = true
      io.stderr:write(("nyx: no price for model '%s' in lua/pricing.lua: its cost is left empty\n"):format(tostring(model)))
    end
    return nil
  end
  usage = usage or {}
  local input, read, out = usage.input_tokens or 0, usage.cache_read_input_tokens or 0, usage.output_tokens or 0
  local writes = usage.cache_creation_input_tokens or 0
  local split = usage.cache_creation
  -- without the split by TTL, a write is at the default TTL, 5 minutes
  local w5m = split and (split.ephemeral_5m_input_tokens or 0) or writes
  local w1h = split and (split.ephemeral_1h_input_tokens or 0) or 0
  if split then writes = w5m + w1h end
  local prompt = input + writes + read
  local rate = entry
  if entry.bands then
    for _, band in ipairs(entry.bands) do
      rate = band
      if not band.max_prompt or prompt <= band.max_prompt then break end
    end
  end
  local m = (usage.service_tier == "batch" and 0.5 or 1) * (usage.inference_geo == "us" and 1.1 or 1)
  local cost = m * (input * rate.input + w5m * rate.cache_write_5m + w1h * rate.cache_write_1h
                    + read * rate.cache_read + out * rate.output) / 1e6
  local without = m * (prompt * rate.input + out * rate.output) / 1e6
  return cost, without, id
end

return M
