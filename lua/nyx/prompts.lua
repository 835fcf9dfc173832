--- nyx.prompts: prompt templates as files (prompts/*.prompt), synced into
-- prompt_templates with versions, chosen among their active versions by
-- lua/selection.lua (Thompson sampling) and rendered with {{variable}}
-- substitution. docs/lua-api.md and prompts/README.md describe the format.
--
-- Keying: prompt_templates.name is UNIQUE, so a version's row is named
-- NAME@N with version = N; NAME is what callers ask for. Which version each
-- file provides now is kept in prompt_template_files, the cache TTL and the
-- exact sum of recorded scores in prompt_template_stats (migration 0006).
local core = require "nyx.core"
local db = require "nyx.db"
local hot = require "nyx.hot"
local llm = require "nyx.llm"
local limits = require "nyx.limits"

local M = {
  -- folder of the built-in templates; nil: the copies compiled into nyx
  home = core.home and (core.home .. "/prompts") or nil,
  path = {}, -- more folders of *.prompt files
}

-- The active versions of each name, as last read: choose() is on every
-- templated LLM call's path, so it reads the table at most every M.ttl
-- seconds (sync, activate and record in this process read it afresh; a
-- change made by another process is seen within M.ttl).
local active_cache = {} -- name -> {at =, list =}
M.ttl = 1
local function forget() active_cache = {} end

local LOCK_KEY = 0x6E79787072 -- pg_advisory_xact_lock key of a sync ("nyxpr")
local KEYS = { name = true, type = true, variables = true, cache = true }
local TYPES = { system = true, user = true, assistant = true }
local PLACEHOLDER = "{{([%a_][%w_]*)}}"
local MARKER = "{{stable}}"

-- ---- parsing ------------------------------------------------------------

local function fail(label, line, fmt, ...)
  error({ message = ("%s:%d: " .. fmt):format(label, line, ...) }, 0)
end

local function split_list(s, label, line)
  local list, seen = {}, {}
  if not s:find("%S") then return list end
  for item in (s .. ","):gmatch("([^,]*),") do
    item = item:match("^%s*(.-)%s*$")
    if not item:match("^[%a_][%w_]*$") then
      fail(label, line, "variable name '%s' is not an identifier (letters, digits, '_')", item)
    end
    if item == "stable" then fail(label, line, "'stable' is reserved for the {{stable}} marker") end
    if seen[item] then fail(label, line, "variable '%s' is declared twice", item) end
    seen[item], list[#list + 1] = true, item
  end
  return list
end

local function read_header(lines, label)
  local h, at = {}, {}
  for i, line in ipairs(lines) do
    if line == "---" then return h, at, i end
    if line:find("%S") and not line:match("^%s*#") then
      local k, v = line:match("^%s*([%w_]+)%s*:%s*(.-)%s*$")
      if not k then fail(label, i, "expected 'key: value' or '---', got '%s'", line) end
      if not KEYS[k] then fail(label, i, "unknown key '%s' (keys: name, type, variables, cache)", k) end
      if h[k] then fail(label, i, "'%s' is given twice", k) end
      h[k], at[k] = v, i
    end
  end
  fail(label, #lines, "no '---' line ends the header")
end

-- The content's placeholders must be exactly the declared variables.
local function check_content(t, lines, first, label, at)
  local used, marker = {}, false
  for i = first, #lines do
    local line = lines[i]
    if line == MARKER then
      if marker then fail(label, i, "a second %s line", MARKER) end
      marker = true
    else
      for v in line:gmatch(PLACEHOLDER) do
        if v == "stable" then fail(label, i, "%s must be a line of its own", MARKER) end
        if not t.declared[v] then
          fail(label, i, "{{%s}} is not declared in 'variables' (declared: %s)", v,
               #t.variables > 0 and table.concat(t.variables, ", ") or "none")
        end
        used[v] = true
      end
    end
  end
  for _, v in ipairs(t.variables) do
    if not used[v] then fail(label, at.variables, "variable '%s' is declared but the content never uses {{%s}}", v, v) end
  end
end

--- parse(text, label): the template in a file's text — {name, type,
-- variables, cache, content} — or nil and one line "label:line: why".
function M.parse(text, label)
  local ok, t = pcall(function()
    text = text:gsub("\r\n", "\n")
    local lines = {}
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    local h, at, sep = read_header(lines, label)
    if not h.name then fail(label, sep, "no 'name:' in the header") end
    if not h.name:match("^[a-z0-9_.-]+$") or #h.name > 90 then
      fail(label, at.name, "name '%s' must be 1 to 90 of a-z, 0-9, '_', '.', '-'", h.name)
    end
    if not h.type then fail(label, sep, "no 'type:' in the header (system, user or assistant)") end
    if not TYPES[h.type] then fail(label, at.type, "type '%s' is not system, user or assistant", h.type) end
    local cache = h.cache or "5m"
    if cache ~= "5m" and cache ~= "1h" then fail(label, at.cache, "cache '%s' is not 5m or 1h", cache) end
    local t = { name = h.name, type = h.type, cache = cache, declared = {},
                variables = split_list(h.variables or "", label, at.variables or sep) }
    for _, v in ipairs(t.variables) do t.declared[v] = true end
    t.content = table.concat(lines, "\n", sep + 1):gsub("%s+$", "")
    if t.content == "" then fail(label, sep, "no content after '---'") end
    check_content(t, lines, sep + 1, label, at)
    t.declared = nil
    return t
  end)
  if ok then return t end
  if type(t) == "table" then return nil, t.message end
  error(t, 0)
end

--- split(content): the stable prefix (up to the {{stable}} line, which is
-- dropped) and the rest; nil and the content when there is no marker.
function M.split(content)
  local c = "\n" .. content .. "\n"
  local s, e = c:find("\n" .. MARKER .. "\n", 1, true)
  if not s or s == 1 then
    if s then return nil, c:sub(e + 1, -2) end -- marker on the first line: nothing stable
    return nil, content
  end
  return c:sub(2, s), c:sub(e + 1, -2)
end

-- ---- the files ------------------------------------------------------------

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

local function prompt_files(dir)
  local names, err = core.dir(dir)
  if not names then return nil, err end
  local out = {}
  for _, n in ipairs(names) do
    if n:match("%.prompt$") then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

--- files(): the template files nyx reads, in order — {origin =, path =
-- (nil for a compiled-in copy), data = (compiled-in), mtime =} — and the
-- folders that could not be read (one line each).
function M.files()
  local files, errors = {}, {}
  local function add_dir(dir, prefix)
    local names, err = prompt_files(dir)
    if not names then
      errors[#errors + 1] = "prompts folder " .. err
      return
    end
    for _, n in ipairs(names) do
      local path = dir .. "/" .. n
      files[#files + 1] = { origin = prefix .. n, path = path, mtime = core.mtime(path) }
    end
  end
  if M.home then
    add_dir(M.home, "prompts/")
  else
    local assets, names = core.assets("prompts/"), {}
    for n in pairs(assets) do
      if n:match("%.prompt$") then names[#names + 1] = n end
    end
    table.sort(names)
    for _, n in ipairs(names) do files[#files + 1] = { origin = n, data = assets[n], mtime = 0 } end
  end
  for _, dir in ipairs(M.path) do add_dir(dir, dir .. "/") end
  return files, errors
end

local function where()
  local dirs = { M.home or "(the copies compiled into nyx)" }
  for _, d in ipairs(M.path) do dirs[#dirs + 1] = d end
  return table.concat(dirs, ", ")
end

-- created_by is VARCHAR(100): long origins keep their end, cut at a
-- character boundary.
local function created_by(origin)
  local s = "file:" .. origin
  if #s <= 100 then return s end
  local tail = s:sub(-92):gsub("^[\128-\191]+", "")
  return "file:..." .. tail
end

-- ---- sync -------------------------------------------------------------------

local CURRENT = [[
  SELECT f.origin, t.id, split_part(t.name, '@', 1) AS base, t.version, t.template_type,
         t.variables, t.content, coalesce(s.cache_ttl, '5m') AS cache_ttl
  FROM prompt_template_files f JOIN prompt_templates t ON t.id = f.template_id
  LEFT JOIN prompt_template_stats s ON s.template_id = t.id]]

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local function same(cur, t)
  return cur.base == t.name and cur.template_type == t.type and cur.content == t.content and
         cur.cache_ttl == t.cache and same_list(cur.variables or {}, t.variables)
end

local function json_list(list)
  return #list == 0 and "[]" or core.json_encode(list)
end

local function new_version(origin, t)
  local n = db.query("SELECT coalesce(max(version), 0) + 1 AS n FROM prompt_templates WHERE split_part(name, '@', 1) = $1",
                     t.name)[1].n
  local id = db.query([[INSERT INTO prompt_templates (name, template_type, content, variables, version, is_active, created_by)
                        VALUES ($1, $2, $3, $4::jsonb, $5, true, $6) RETURNING id]],
                      ("%s@%d"):format(t.name, n), t.type, t.content, json_list(t.variables), n,
                      created_by(origin))[1].id
  db.exec("INSERT INTO prompt_template_stats (template_id, cache_ttl) VALUES ($1, $2)", id, t.cache)
  return id, n
end

-- One file, under the sync lock: its version, made or found. Returns the
-- action (added, changed, unchanged) and the version.
local function sync_one(origin, t)
  db.query("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
  local cur = db.query(CURRENT .. " WHERE f.origin = $1", origin)[1]
  if cur and same(cur, t) then return "unchanged", cur.version end
  local action = "unchanged"
  local found = db.query([[SELECT t.id, t.version, t.is_active FROM prompt_templates t
      LEFT JOIN prompt_template_stats s ON s.template_id = t.id
      WHERE split_part(t.name, '@', 1) = $1 AND t.template_type = $2 AND t.variables = $3::jsonb
        AND t.content = $4 AND coalesce(s.cache_ttl, '5m') = $5
      ORDER BY t.version DESC LIMIT 1]], t.name, t.type, json_list(t.variables), t.content, t.cache)[1]
  local id, version
  if found then -- content seen before (a revert, or a variant's twin): use that version
    id, version = found.id, found.version
    if not found.is_active then
      db.exec("UPDATE prompt_templates SET is_active = true WHERE id = $1", id)
      action = "changed"
    end
  else
    id, version = new_version(origin, t)
    action = version == 1 and "added" or "changed"
  end
  if cur then -- the version this file had is retired, unless another file still gives it
    local n = db.exec([[UPDATE prompt_templates SET is_active = false WHERE id = $1 AND is_active
        AND NOT EXISTS (SELECT 1 FROM prompt_template_files WHERE template_id = $1 AND origin <> $2)]],
                      cur.id, origin)
    if n > 0 and action == "unchanged" then action = "changed" end
  end
  db.exec([[INSERT INTO prompt_template_files (origin, template_id) VALUES ($1, $2)
            ON CONFLICT (origin) DO UPDATE SET template_id = EXCLUDED.template_id, synced_at = now()]],
          origin, id)
  return action, version
end

local state = { sig = nil, checked = -math.huge, reported = {}, busy = nil }

local function report(origin, err)
  if state.reported[origin] == err then return end
  state.reported[origin] = err
  io.stderr:write("nyx: prompt template skipped: ", err, "\n")
end

local function signature(files)
  local parts = { db.info().database, M.home or "(embedded)" }
  for _, f in ipairs(files) do parts[#parts + 1] = f.origin .. "\0" .. tostring(f.mtime) end
  for _, d in ipairs(M.path) do parts[#parts + 1] = d end
  return table.concat(parts, "\n")
end

local function run_sync(files, errors)
  local summary = { added = 0, changed = 0, unchanged = 0, errors = errors, files = {} }
  for _, e in ipairs(errors) do report(e, e) end
  local current = {}
  for _, r in ipairs(db.query(CURRENT)) do current[r.origin] = r end
  for _, f in ipairs(files) do
    local text, err = f.data, nil
    if not text then text, err = read(f.path) end
    local t
    if text then t, err = M.parse(text, f.origin) end
    if not t then
      errors[#errors + 1] = err
      report(f.origin, err)
    else
      state.reported[f.origin] = nil
      local action, version = "unchanged", current[f.origin] and current[f.origin].version
      if not (current[f.origin] and same(current[f.origin], t)) then
        action, version = db.transaction(sync_one, f.origin, t)
      end
      summary[action] = summary[action] + 1
      summary.files[#summary.files + 1] = { file = f.origin, name = t.name, version = version, action = action }
    end
  end
  return summary
end

--- sync(): brings prompt_templates up to date with the files; returns
-- {added =, changed =, unchanged =, errors = {lines}, files = {{file =,
-- name =, version =, action =}}}.
function M.sync()
  forget()
  while state.busy do state.busy:wait() end -- another task of ours is syncing
  state.busy = limits.event()
  local files, errors = M.files()
  local ok, summary = pcall(run_sync, files, errors)
  local busy = state.busy
  state.busy = nil
  busy:set()
  if not ok then error(summary, 0) end
  state.sig, state.checked = signature(files), core.now()
  return summary
end

-- On first use, and when a file's mtime (or the folder list, or the
-- database) has changed, looked at most every nyx.hot.interval seconds.
local function refresh()
  while state.busy do state.busy:wait() end
  local now = core.now()
  if state.sig and now - state.checked < hot.interval then return end
  state.checked = now
  if signature((M.files())) ~= state.sig then M.sync() end
end

-- ---- reading versions ------------------------------------------------------

local SELECT = [[
  SELECT t.id, t.name AS key, split_part(t.name, '@', 1) AS name, t.version, t.template_type, t.content,
         t.variables, coalesce(t.is_active, false) AS is_active, coalesce(t.usage_count, 0) AS usage_count,
         coalesce(t.success_rate, 0) AS success_rate, t.created_by, coalesce(s.cache_ttl, '5m') AS cache_ttl
  FROM prompt_templates t LEFT JOIN prompt_template_stats s ON s.template_id = t.id
  WHERE split_part(t.name, '@', 1) = $1]]

local function version_of(r)
  return { id = r.id, name = r.name, key = r.key, version = r.version, type = r.template_type,
           content = r.content, variables = r.variables or {}, is_active = r.is_active,
           usage_count = r.usage_count, success_rate = r.success_rate, cache = r.cache_ttl,
           file = r.created_by and r.created_by:match("^file:(.*)") or r.created_by }
end

local function check_name(name, fname)
  if type(name) ~= "string" or name == "" then
    error(("bad argument #1 to '%s' (a template name expected)"):format(fname), 3)
  end
end

--- get(name [, version]): that version, or the latest active one; nil and
-- why when there is none.
function M.get(name, version)
  check_name(name, "get")
  refresh()
  local r
  if version then
    r = db.query(SELECT .. " AND t.version = $2", name, version)[1]
    if not r then return nil, ("prompt '%s' has no version %s"):format(name, tostring(version)) end
  else
    r = db.query(SELECT .. " AND t.is_active ORDER BY t.version DESC LIMIT 1", name)[1]
    if not r then return nil, ("prompt '%s' has no active version (templates are read from: %s)"):format(name, where()) end
  end
  return version_of(r)
end

--- versions(name): every version of name, active or not, by version.
function M.versions(name)
  check_name(name, "versions")
  refresh()
  local out = {}
  for i, r in ipairs(db.query(SELECT .. " ORDER BY t.version", name)) do out[i] = version_of(r) end
  return out
end

local function selection()
  return hot.require("selection", function(m)
    return type(m.choose) == "function", "selection must export choose(versions, rng)"
  end)
end

--- choose(name [, opts]): one active version, picked by lua/selection.lua
-- from the versions' records; opts.rng: a uniform [0, 1) generator.

local function active_versions(name)
  local c = active_cache[name]
  local now = core.now()
  if c and now - c.at < M.ttl then return c.list end
  local list = {}
  for i, r in ipairs(db.query(SELECT .. " AND t.is_active ORDER BY t.version", name)) do list[i] = version_of(r) end
  active_cache[name] = { at = now, list = list }
  return list
end


function M.choose(name, opts)
  check_name(name, "choose")
  refresh()
  local active = active_versions(name)
  if #active == 0 then
    error(("prompt '%s' has no active version (templates are read from: %s)"):format(name, where()), 2)
  end
  if #active == 1 then return active[1] end
  return (selection().choose(active, opts and opts.rng))
end

--- activate(name, version [, on]): sets is_active of NAME@version (on
-- defaults to true); returns the version.
function M.activate(name, version, on)
  check_name(name, "activate")
  refresh()
  forget()
  local n = db.exec("UPDATE prompt_templates SET is_active = $3 WHERE split_part(name, '@', 1) = $1 AND version = $2",
                    name, math.tointeger(version) or -1, on ~= false)
  if n == 0 then error(("no prompt '%s' version %s"):format(name, tostring(version)), 2) end
  return M.get(name, version)
end

-- ---- rendering ----------------------------------------------------------------

-- What render needs of a version, worked out once per version table:
-- the declared set, the split at {{stable}}, whether anything varies.
local compiled_of = setmetatable({}, { __mode = "k" }) -- version table -> compiled

local function compile(t)
  local c = compiled_of[t]
  if c then return c end
  local declared = {}
  for _, v in ipairs(t.variables) do declared[v] = true end
  local prefix, rest = M.split(t.content)
  c = { declared = declared, prefix = prefix, rest = rest }
  compiled_of[t] = c
  return c
end

local function label_of(t)
  return ("prompt '%s@%s' (%s)"):format(t.name, tostring(t.version), t.file or "?")
end

local function values_for(t, c, vars)
  if vars ~= nil and type(vars) ~= "table" then
    error("bad argument #2 to 'render' (a table of variables expected)", 3)
  end
  vars = vars or {}
  for _, v in ipairs(t.variables) do
    if vars[v] == nil then error(("%s needs variable '%s', not given"):format(label_of(t), v), 3) end
  end
  local declared, values, undeclared = c.declared, {}, nil
  for k, v in pairs(vars) do
    if not declared[k] then
      undeclared = undeclared or {}
      undeclared[#undeclared + 1] = tostring(k)
    else
      local tv = type(v)
      if tv == "string" then
        values[k] = v
      elseif tv == "number" then
        values[k] = tostring(v)
      else
        error(("%s: variable '%s' must be a string or a number, not a %s"):format(label_of(t), k, tv), 3)
      end
    end
  end
  if undeclared then -- the first by name, so the message does not depend on table order
    table.sort(undeclared)
    error(("%s does not declare variable '%s' (it declares: %s)"):format(label_of(t), undeclared[1],
          #t.variables > 0 and table.concat(t.variables, ", ") or "none"), 3)
  end
  return values
end

local function text_block(s) return { type = "text", text = s } end

--- render(t, vars): t a template name (choose picks the version) or a
-- version table; see docs/lua-api.md for the result.
function M.render(t, vars)
  if type(t) == "string" then
    t = M.choose(t)
  elseif type(t) ~= "table" or type(t.content) ~= "string" then
    error("bad argument #1 to 'render' (a template name or a version table expected)", 2)
  end
  local c = compile(t)
  local values = values_for(t, c, vars)
  local function fill(str)
    if not str:find("{{", 1, true) then return str end
    return (str:gsub(PLACEHOLDER, values))
  end
  local prefix, rest = c.prefix, c.rest
  prefix, rest = prefix and fill(prefix), fill(rest)
  local blocks
  if prefix then
    blocks = { llm.cached(prefix, t.cache) }
    if rest ~= "" then blocks[2] = text_block(rest) end
  elseif t.type == "system" then -- a system template is stable in full
    prefix, rest = rest, ""
    blocks = { llm.cached(prefix, t.cache) }
  else
    blocks = { text_block(rest) }
  end
  return { text = (prefix or "") .. rest, prefix = prefix, rest = rest, blocks = blocks,
           system = t.type == "system" and blocks or nil, type = t.type,
           template = { id = t.id, name = t.name, version = t.version } }
end

-- ---- outcomes -------------------------------------------------------------------

-- One statement: the exact sum in prompt_template_stats (its row lock
-- orders concurrent recorders), then usage_count and the mean rounded once.
local RECORD = [[
  WITH st AS (
    INSERT INTO prompt_template_stats AS s (template_id, uses, success_sum)
    SELECT id, coalesce(usage_count, 0) + $3, coalesce(success_rate, 0) * coalesce(usage_count, 0) + $2::numeric
    FROM prompt_templates WHERE id = $1
    ON CONFLICT (template_id) DO UPDATE SET uses = s.uses + $3, success_sum = s.success_sum + $2::numeric
    RETURNING s.template_id, s.uses, s.success_sum)
  UPDATE prompt_templates t SET usage_count = st.uses, success_rate = round(st.success_sum / st.uses, 4)
  FROM st WHERE t.id = st.template_id
  RETURNING t.usage_count, t.success_rate]]

--- record(id, score [, n]): one use of a version (its id, a version table
-- or a render result) with success score 0..1 (clamped; true = 1, false =
-- 0); or, with n, n uses whose scores sum to score (0..n). Returns
-- usage_count and success_rate after it.
function M.record(id, score, n)
  if type(id) == "table" then id = id.template and id.template.id or id.id end
  if type(id) ~= "string" or not core.is_uuid(id) then
    error("bad argument #1 to 'record' (a template version id, version table or render result expected)", 2)
  end
  if type(score) == "boolean" then score = score and 1 or 0 end
  if type(score) ~= "number" or score ~= score then
    error("bad argument #2 to 'record' (a success score from 0 to 1 expected)", 2)
  end
  if n ~= nil and (math.tointeger(n) == nil or n < 1) then
    error("bad argument #3 to 'record' (the number of uses must be a whole number >= 1)", 2)
  end
  n = math.tointeger(n) or 1
  score = math.min(math.max(score, 0), n) + 0.0
  forget()
  local r = db.query(RECORD, id, score, n)[1]
  if not r then error(("no prompt template version with id %s"):format(id), 2) end
  return r.usage_count, r.success_rate
end

return M
