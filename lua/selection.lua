--- selection: which active version of a prompt template to use, by
-- Thompson sampling. Each version's record (usage_count uses, success_rate
-- the mean success score) is read as s = success_rate * usage_count
-- successes and f = usage_count - s failures; a draw from Beta(1 + s, 1 + f)
-- is made for each version and the highest draw wins. A version with few
-- uses has a wide posterior and still gets tried; a version that does well
-- gets picked more and more. Scores between 0 and 1 count as fractional
-- successes.
--
-- Every draw comes from the `rng` passed in (a function returning uniform
-- numbers in [0, 1)), so a run is reproducible from a seed: Beta from two
-- Gamma draws, Gamma by Marsaglia and Tsang (2000) with the boost
-- Gamma(a) = Gamma(a + 1) * U^(1/a) for a < 1, normals by Box-Muller.
--
-- nyx.prompts loads this file with nyx.hot.require: an edit takes effect
-- without a restart (it must still export choose).
local M = {}

local log, sqrt, cos, pi = math.log, math.sqrt, math.cos, math.pi

--- normal(rng): a standard normal draw (Box-Muller; 1 - u keeps log off 0).
function M.normal(rng)
  local u1, u2 = 1 - rng(), rng()
  return sqrt(-2 * log(u1)) * cos(2 * pi * u2)
end

--- sample_gamma(a, rng): a draw from Gamma(a, 1), a > 0.
function M.sample_gamma(a, rng)
  if not (a > 0) then error(("bad argument #1 to 'sample_gamma' (shape must be > 0, got %s)"):format(a), 2) end
  if a < 1 then
    return M.sample_gamma(a + 1, rng) * (1 - rng()) ^ (1 / a)
  end
  local d = a - 1 / 3
  local c = 1 / sqrt(9 * d)
  while true do
    local x, v
    repeat
      x = M.normal(rng)
      v = 1 + c * x
    until v > 0
    v = v * v * v
    local u = 1 - rng()
    local x2 = x * x
    if u < 1 - 0.0331 * x2 * x2 or log(u) < 0.5 * x2 + d * (1 - v + log(v)) then
      return d * v
    end
  end
end

--- sample_beta(a, b, rng): a draw from Beta(a, b), a, b > 0.
function M.sample_beta(a, b, rng)
  local x = M.sample_gamma(a, rng)
  local y = M.sample_gamma(b, rng)
  if x + y == 0 then return 0.5 end -- both underflowed (tiny shapes)
  return x / (x + y)
end

--- posterior(v): the Beta parameters of a version's record.
function M.posterior(v)
  local n = math.max(tonumber(v.usage_count) or 0, 0)
  local s = math.min(math.max((tonumber(v.success_rate) or 0) * n, 0), n)
  return 1 + s, 1 + (n - s)
end

--- choose(versions, rng): the version (a table with usage_count and
-- success_rate) with the highest Beta draw, and its index. rng defaults to
-- math.random.
function M.choose(versions, rng)
  if type(versions) ~= "table" or #versions == 0 then
    error("bad argument #1 to 'choose' (a non-empty list of versions expected)", 2)
  end
  rng = rng or math.random
  local best, best_i, best_draw = nil, nil, -1
  for i, v in ipairs(versions) do
    local a, b = M.posterior(v)
    local draw = M.sample_beta(a, b, rng)
    if draw > best_draw then best, best_i, best_draw = v, i, draw end
  end
  return best, best_i
end

--- rng(seed): a seeded generator of uniform numbers in [0, 1) (SplitMix64),
-- for reproducible runs that leave math.random's state alone.
function M.rng(seed)
  local x = math.tointeger(seed) or error("bad argument #1 to 'rng' (an integer seed expected)", 2)
  return function()
    x = x + 0x9E3779B97F4A7C15
    local z = x
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return (z >> 11) * 0x1.0p-53
  end
end

return M
