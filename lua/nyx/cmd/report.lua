--- nyx report [ID] [-o FILE]: the tree as one self-contained HTML page
-- (nyx.report), on stdout or into FILE.
local C = require "nyx.cmd.common"

local HINT = "usage: nyx report [ID] [-o FILE] > run.html"

return function(...)
  local args = { ... }
  for i, a in ipairs(args) do if a == "-o" then args[i] = "--output" end end
  local o, words = C.parse("report", args, { ["--output"] = "string" }, HINT)
  if #words > 1 then C.usage("report", ("one node id at most, got %d words"):format(#words), HINT) end
  local page = require("nyx.report").html(C.node("report", words[1]))
  if not o.output then return io.stdout:write(page) end
  local f, err = io.open(o.output, "wb")
  if not f then C.usage("report", ("cannot write %s"):format(err), HINT) end
  f:write(page)
  f:close()
  io.stderr:write(("nyx report: wrote %s (%d bytes)\n"):format(o.output, #page))
end
