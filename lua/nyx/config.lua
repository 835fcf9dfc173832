--- nyx.config: the system_config table, read through a short cache so the
-- engine can consult it on every call. A change made while nyx runs (by
-- another process, or nyx.config.set) is seen within `ttl` seconds.
local db = require "nyx.db"
local core = require "nyx.core"

local M = { ttl = 1.0 }

local rows, loaded_at = nil, -math.huge

local function load()
  local now = core.now()
  if rows and now - loaded_at < M.ttl then return rows end
  local fresh = {}
  for _, r in ipairs(db.query("SELECT config_key, config_value, config_type FROM system_config")) do
    fresh[r.config_key] = r
  end
  rows, loaded_at = fresh, now
  return rows
end

--- get(key [, default]): the setting's value ({"value": v} rows give v).
function M.get(key, default)
  local r = load()[key]
  if r == nil then return default end
  local v = r.config_value
  if type(v) == "table" and v.value ~= nil then return v.value end
  return v
end

--- set(key, value [, config_type, description]): writes {"value": value};
-- a new key needs its config_type ('limit', 'setting' or 'credential').
function M.set(key, value, config_type, description)
  if type(key) ~= "string" or key == "" then
    error("bad argument #1 to 'set' (key must be a non-empty string)", 2)
  end
  local n = db.exec("UPDATE system_config SET config_value = $2 WHERE config_key = $1", key, { value = value })
  if n == 0 then
    if not config_type then
      error(("bad argument #3 to 'set' (no setting '%s' yet: give its config_type, 'limit', 'setting' or 'credential')"):format(key), 2)
    end
    db.exec("INSERT INTO system_config (config_key, config_value, config_type, description) VALUES ($1, $2, $3, $4)",
            key, { value = value }, config_type, description)
  end
  rows = nil
end

--- refresh(): forget the cache; the next get reads the table.
function M.refresh() rows = nil end

return M
