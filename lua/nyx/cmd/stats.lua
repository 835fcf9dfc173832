--- nyx stats [--tree ID] [--since DATE] [--json]: nyx.stats as aligned
-- text, or as JSON.
local C = require "nyx.cmd.common"
local stats = require "nyx.stats"
local views = require "nyx.views"

local HINT = "usage: nyx stats [--tree ID] [--since YYYY-MM-DD] [--json]"

return function(...)
  local o, words = C.parse("stats", { ... }, { ["--tree"] = "string", ["--since"] = "string", ["--json"] = "flag" }, HINT)
  if #words > 0 then C.usage("stats", ("unexpected argument '%s'"):format(words[1]), HINT) end
  local id = o.tree and C.node("stats", o.tree)
  local ok, s = pcall(stats.stats, { tree = id, since = o.since })
  if not ok then C.usage("stats", (tostring(s):gsub("^.-nyx%.stats: ", "")), HINT) end
  if not o.json then return io.stdout:write(stats.text(s)) end
  local A = views.array
  s.by_model, s.by_template, s.failures = A(s.by_model), A(s.by_template), A(s.failures)
  io.stdout:write(views.encode(s), "\n")
end
