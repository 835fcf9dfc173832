--- What the commands written in Lua share: argument parsing that says in
-- one line what was wrong, and exits 2.
local views = require "nyx.views"

local M = {}

--- usage(cmd, msg, hint): one line on stderr, exit 2.
function M.usage(cmd, msg, hint)
  io.stderr:write(("nyx %s: %s%s\n"):format(cmd, msg, hint and (" (" .. hint .. ")") or ""))
  os.exit(2)
end

--- parse(cmd, args, spec, hint): options and words. spec maps "--name" to
-- "flag", "int" or "string"; returns {name = value}, {words...}.
function M.parse(cmd, args, spec, hint)
  local opts, words, i = {}, {}, 1
  while args[i] ~= nil do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    name = name or a
    local kind = spec[name]
    if a:sub(1, 2) == "--" and not kind then
      M.usage(cmd, ("unknown option '%s'"):format(name), hint)
    elseif kind == "flag" then
      opts[name:sub(3)] = true
    elseif kind then
      local v = inline
      if v == nil then i = i + 1; v = args[i] end
      if v == nil then M.usage(cmd, ("%s needs a value"):format(name), hint) end
      if kind == "int" then
        local n = math.tointeger(tonumber(v))
        if not n or n < 0 then M.usage(cmd, ("%s needs a whole number >= 0, got '%s'"):format(name, v), hint) end
        v = n
      end
      opts[name:sub(3):gsub("%-", "_")] = v
    else
      words[#words + 1] = a
    end
    i = i + 1
  end
  return opts, words
end

--- node(cmd, id): the node id for a full id or a unique prefix; the
-- latest root when id is nil; exit 2 with the reason otherwise.
function M.node(cmd, id)
  if id == nil then
    local r = require("nyx.tree").latest()
    if not r then M.usage(cmd, "there is no tree yet", "run a script that calls nyx.orchestrate first") end
    return r.id
  end
  local found, why = views.resolve(id)
  if not found then M.usage(cmd, why, "ids are printed by 'nyx tree show'") end
  return found
end

return M
