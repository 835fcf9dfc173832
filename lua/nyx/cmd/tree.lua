--- nyx tree show [ID] [--depth N] [--siblings N] [--all]
--- nyx tree export ID --format dot|mermaid|json
local views = require "nyx.views"
local C = require "nyx.cmd.common"

local HINT = "usage: nyx tree show [ID] [--depth N] [--siblings N] [--all]; nyx tree export ID --format dot|mermaid|json"
local FORMATS = { dot = views.dot, mermaid = views.mermaid, json = views.export_json }

local function show(args)
  local o, words = C.parse("tree show", args, { ["--depth"] = "int", ["--siblings"] = "int", ["--all"] = "flag" }, HINT)
  if #words > 1 then C.usage("tree show", ("one node id at most, got %d words"):format(#words), HINT) end
  local id = C.node("tree show", words[1])
  io.stdout:write(views.text(id, { depth = o.depth, siblings = o.siblings, all = o.all,
                                   colour = views.colour("stdout") }))
end

local function export(args)
  local o, words = C.parse("tree export", args, { ["--format"] = "string" }, HINT)
  if #words ~= 1 then C.usage("tree export", "give the id of the node to export", HINT) end
  local f = FORMATS[o.format or ""]
  if not f then
    C.usage("tree export", o.format and ("unknown format '%s'"):format(o.format) or "--format is required",
            "--format dot, mermaid or json")
  end
  io.stdout:write(f(C.node("tree export", words[1])))
end

return function(...)
  local args = { ... }
  local sub = table.remove(args, 1)
  if sub == "show" then return show(args) end
  if sub == "export" then return export(args) end
  C.usage("tree", sub and ("unknown subcommand '%s'"):format(sub) or "a subcommand is needed", HINT)
end
