-- bench/selection.lua: how fast lua/selection.lua (Thompson sampling)
-- finds the better of two template versions.
--   nyx bench/selection.lua [seeds] [rounds]
-- A fake model: version A succeeds 30% of the time, B 70%. Each run makes
-- `rounds` (300) selections, records each outcome (score 1 or 0) as
-- nyx.prompts.record does (exact sum, success_rate = the mean rounded to 4
-- decimals), and is repeated for seeds 1..`seeds` (100). Prints the share
-- of B per block of 50 selections and the cumulative expected regret
-- (sum of 0.7 - p(chosen)) at every 50, averaged over the seeds and for the
-- worst seed (highest final regret), and how many seeds gave B at least 85
-- of the last 100 selections. No database: the record is kept in memory.
local S = require "selection"

local seeds, rounds = math.tointeger(tonumber(arg[1])) or 100, math.tointeger(tonumber(arg[2])) or 300
local P = { 0.3, 0.7 }
local BLOCK = 50

local function round4(x) return math.floor(x * 10000 + 0.5) / 10000 end

local function run(seed)
  local pick, outcome = S.rng(seed), S.rng(seed * 7919 + 1)
  local v = { { usage_count = 0, success_rate = 0, sum = 0 }, { usage_count = 0, success_rate = 0, sum = 0 } }
  local share, regret, last100, r = {}, {}, 0, 0
  for i = 1, rounds do
    local _, k = S.choose(v, pick)
    local score = outcome() < P[k] and 1 or 0
    local c = v[k]
    c.usage_count, c.sum = c.usage_count + 1, c.sum + score
    c.success_rate = round4(c.sum / c.usage_count)
    r = r + P[2] - P[k]
    local b = math.ceil(i / BLOCK)
    share[b] = (share[b] or 0) + (k == 2 and 1 / BLOCK or 0)
    if i % BLOCK == 0 then regret[i // BLOCK] = r end
    if i > rounds - 100 and k == 2 then last100 = last100 + 1 end
  end
  return share, regret, last100
end

local mean_share, mean_regret, worst, worst_seed, ok, min_last = {}, {}, nil, nil, 0, math.huge
local t0 = os.clock()
for seed = 1, seeds do
  local share, regret, last100 = run(seed)
  for b = 1, #share do
    mean_share[b] = (mean_share[b] or 0) + share[b] / seeds
    mean_regret[b] = (mean_regret[b] or 0) + (regret[b] or 0) / seeds
  end
  if not worst or regret[#regret] > worst.regret[#worst.regret] then
    worst, worst_seed = { share = share, regret = regret, last100 = last100 }, seed
  end
  if last100 >= 85 then ok = ok + 1 end
  min_last = math.min(min_last, last100)
end

print(("Thompson sampling, A 30%% vs B 70%%, %d selections, seeds 1..%d (%.2f s)"):format(rounds, seeds, os.clock() - t0))
print(("%-12s %14s %14s %18s %18s"):format("selections", "B share (mean)", "B share (worst)", "regret (mean)", "regret (worst)"))
for b = 1, #mean_share do
  print(("%4d-%-7d %14.3f %14.3f %18.2f %18.2f"):format((b - 1) * BLOCK + 1, math.min(b * BLOCK, rounds),
    mean_share[b], worst.share[b], mean_regret[b], worst.regret[b] or 0))
end
print(("always B: regret 0; always A: %.0f; uniform choice: %.0f"):format(0.4 * rounds, 0.2 * rounds))
print(("B >= 85 of the last 100: %d of %d seeds (fewest: %d; worst-regret seed %d: %d)"):format(
  ok, seeds, min_last, worst_seed, worst.last100))
