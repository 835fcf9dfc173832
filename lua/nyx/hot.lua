--- nyx.hot: modules that follow their files. hot.require(name) returns the
-- module, and loads it again when its file has changed (looked at, at most,
-- every `interval` seconds), so pricing, scoring or a strategy can be
-- edited while nyx runs. Reloading is all or nothing: the new file loads
-- into a fresh chunk and must pass `check`, or the previous version stays
-- and one line says why.
local core = require "nyx.core"

local M = { interval = 0.5 }

local known = {} -- name -> { module, path, mtime, checked, version }

-- The version mark of a file: a hash of its content ("embedded" for a
-- module compiled into nyx with no file on disk).
local function version_of(path)
  if not path then return "embedded" end
  local f = io.open(path, "rb")
  if not f then return "embedded" end
  local s = f:read("a")
  f:close()
  return core.hash(s)
end

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

--- require(name [, check [, interval]]): the module, current with its
-- file, and its version (a hash of the file it came from). check(mod)
-- returns true, or false and why, to accept a new version; interval (in
-- seconds, M.interval by default) is how often the file is looked at.
function M.require(name, check, interval)
  local k, now = known[name], core.now()
  if k and now - k.checked < (interval or M.interval) then return k.module, k.version end
  -- a known file is only looked at (one stat); the search path is walked
  -- again when it is gone
  local mtime = k and k.path and core.mtime(k.path)
  local path = mtime and k.path or package.searchpath(name, package.path)
  if not k then
    mtime = path and core.mtime(path)
    local mod = require(name)
    if check then
      local good, why = check(mod)
      if not good then error(("%s: %s"):format(path or name, why or "does not export what it must"), 2) end
    end
    known[name] = { module = mod, path = path, mtime = mtime, checked = now, version = version_of(path) }
    return mod, known[name].version
  end
  k.checked = now
  mtime = mtime or (path and core.mtime(path))
  if path == k.path and mtime == k.mtime then return k.module, k.version end
  k.path, k.mtime = path, mtime
  local mod, err = nil, "its file is gone"
  if path then mod, err = load_fresh(name, path, check) end
  if mod then
    k.module, k.version = mod, version_of(path)
    package.loaded[name] = mod
    io.stderr:write(("nyx: reloaded %s\n"):format(path))
  else
    io.stderr:write(("nyx: kept the previous %s: %s\n"):format(name, err or "its file is gone"))
  end
  return k.module, k.version
end

--- version(name): the version mark of the loaded module (nil if unknown).
function M.version(name)
  return known[name] and known[name].version
end

return M
