--- nyx.hot: modules that follow their files. hot.require(name) returns the
-- module, and loads it again when its file has changed (looked at, at most,
-- every `interval` seconds), so pricing, scoring or a strategy can be
-- edited while nyx runs. Reloading is all or nothing: the new file loads
-- into a fresh chunk and must pass `check`, or the previous version stays
-- and one line says why.
local core = require "nyx.core"

local M = { interval = 0.5 }

local known = {} -- name -> { module, path, mtime, checked }

local function load_fresh(name, path, check)
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  local ok, mod = pcall(chunk, name, path)
  if not ok then return nil, tostring(mod) end
  if mod == nil then return nil, path .. " returned nothing" end
  if check then
    local good, why = check(mod)
    if not good then return nil, path .. ": " .. tostring(why or "does not export what it must") end
  end
  return mod
end

--- require(name [, check]): the module, current with its file. check(mod)
-- returns true, or false and why, to accept a new version.
function M.require(name, check)
  local k, now = known[name], core.now()
  if k and now - k.checked < M.interval then return k.module end
  local path = package.searchpath(name, package.path)
  if not k then
    local mod = require(name)
    known[name] = { module = mod, path = path, mtime = path and core.mtime(path), checked = now }
    return mod
  end
  k.checked = now
  local mtime = path and core.mtime(path)
  if path == k.path and mtime == k.mtime then return k.module end
  k.path, k.mtime = path, mtime
  local mod, err = nil, "its file is gone"
  if path then mod, err = load_fresh(name, path, check) end
  if mod then
    k.module = mod
    package.loaded[name] = mod
    io.stderr:write(("nyx: reloaded %s\n"):format(path))
  else
    io.stderr:write(("nyx: kept the previous %s: %s\n"):format(name, err or "its file is gone"))
  end
  return k.module
end

return M
