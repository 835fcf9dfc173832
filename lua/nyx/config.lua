--- nyx.config: the system_config table, read through a short cache so the
-- engine can consult it on every call. A change made while nyx runs (by
-- another process, or nyx.config.set) is seen within `ttl` seconds; one
-- made with set() at once by every engine (set announces it on
-- nyx_control, and nyx.steer drops the cache on the notification).
local db = require "nyx.db"
local core = require "nyx.core"

local M = { ttl = 1.0 }

local values, secrets, loaded_at = nil, nil, -math.huge

local function strings_of(v, into)
  if type(v) == "string" and v ~= "" then into[v] = true
  elseif type(v) == "table" then for _, x in pairs(v) do strings_of(x, into) end end
end

--- values(): every setting's value by key, as get gives them; a table
-- that is read again from the database after `ttl` seconds (do not keep
-- it longer than a call).
function M.values()
  local now = core.now()
  if values and now - loaded_at < M.ttl then return values end
  local fresh, secret = {}, {}
  for _, r in ipairs(db.query("SELECT config_key, config_value, config_type FROM system_config")) do
    local v = r.config_value
    if type(v) == "table" and v.value ~= nil then v = v.value end
    fresh[r.config_key] = v
    if r.config_type == "credential" then strings_of(v, secret) end
  end
  values, secrets, loaded_at = fresh, secret, now
  return values
end

--- secrets(): the values of the credentials (rows of config_type
-- 'credential'; every string in one) as a set, for nyx.pretty to redact;
-- nil while this process has not read system_config (it opens no
-- connection of its own for that).
function M.secrets()
  if loaded_at == -math.huge then return nil end
  M.values()
  return secrets
end

--- reveal(key): the setting's value wrapped so that nyx.pretty and the
-- REPL print it in clear (a credential prints redacted otherwise); the
-- value itself is r.value. Code that needs a credential uses get.
function M.reveal(key)
  return require("nyx.pretty").revealed(M.get(key))
end

--- get(key [, default]): the setting's value ({"value": v} rows give v).
function M.get(key, default)
  local v = M.values()[key]
  if v == nil then return default end
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
  values = nil
  require("nyx.steer").announce("config", { key = key }) -- engines apply it at once
end

--- refresh(): forget the cache; the next get reads the table.
function M.refresh() values = nil end

return M
