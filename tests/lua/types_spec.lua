-- types/nyx.lua, the lua-language-server definition of the nyx API, against
-- what the binary registers: the nyx table walked (every module, the
-- classes' method tables), real objects made (a node on a fresh database, a
-- pool, an event, a connection, a task handle, an error, an LLM response, a
-- process result, and an orchestrator, an agent and a handle from a tiny
-- orchestration), and each name the binary has and the file lacks, or the
-- file has and the binary lacks, reported. Then the file itself: valid Lua,
-- and every ---@param naming a parameter of the function that follows.
local H = require "tests.lua.helper"

local TYPES = H.source .. "/types/nyx.lua"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- ---- the file, parsed line by line -------------------------------------------

-- {classes = {name = {members = {name = {optional =, method =}}}}, aliases =
-- {name = {values}}, functions = {{owner =, name =, params =, docs =, line =}},
-- errors = {...}}
local function parse(text)
  local m = { classes = {}, aliases = {}, functions = {}, errors = {} }
  local class, alias, bind, vars, docs = nil, nil, nil, {}, {}
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local cname = line:match("^%-%-%-@class%s+([%w_%.]+)")
    local alias_name = line:match("^%-%-%-@alias%s+([%w_%.]+)")
    local field = line:match("^%-%-%-@field%s+([%w_]+%??)")
    if line:match("^%-%-%-@field%s+private%s") or line:match("^%-%-%-@field%s+package%s") then
      field = line:match("^%-%-%-@field%s+%a+%s+([%w_]+%??)")
    end
    if cname then
      class, alias, bind = { members = {}, line = n }, nil, cname
      if m.classes[cname] then m.errors[#m.errors + 1] = ("line %d: class %s declared twice"):format(n, cname) end
      m.classes[cname] = class
    elseif alias_name then
      alias, class = {}, nil
      m.aliases[alias_name] = alias
    elseif field and class then
      local name, opt = field:match("^([%w_]+)(%??)$")
      class.members[name] = { optional = opt == "?", line = n }
    elseif alias and line:match("^%-%-%-|") then
      local v = line:match('^%-%-%-|%s*"([^"]*)"')
      if v then alias[#alias + 1] = v end
    elseif line:match("^%-%-%-@param%s") then
      docs[#docs + 1] = { name = line:match("^%-%-%-@param%s+([%w_]+%??)") or line:match("^%-%-%-@param%s+(%.%.%.)"),
                          line = n }
    elseif not line:match("^%-%-%-") then
      local var = line:match("^local%s+([%w_]+)%s*=%s*{}%s*$")
      if var and bind then vars[var] = bind end
      local owner, sep, fname, params = line:match("^function%s+([%w_%.]+)([%.:])([%w_]+)%s*(%b())")
      if owner then
        local cls = vars[owner] or owner
        local list = {}
        for p in params:sub(2, -2):gmatch("[^,%s]+") do list[#list + 1] = p end
        m.functions[#m.functions + 1] = { owner = cls, name = fname, method = sep == ":", params = list,
                                          docs = docs, line = n }
        if m.classes[cls] then
          m.classes[cls].members[fname] = { method = true, line = n }
        else
          m.errors[#m.errors + 1] = ("line %d: function %s%s%s on no declared class"):format(n, owner, sep, fname)
        end
        docs = {}
      elseif #docs > 0 then
        m.errors[#m.errors + 1] = ("line %d: ---@param not followed by a function"):format(docs[1].line)
        docs = {}
      end
      class, alias, bind = nil, nil, nil
    end
  end
  return m
end

-- The type a class gives field `name` (the class name it refers to), read
-- from the line itself: `---@field name? nyx.x.Y ...`.
local function field_type(text, member)
  local l = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    l = l + 1
    if l == member.line then return line:match("^%-%-%-@field%s+[%w_]+%??%s+([%w_%.]+)") end
  end
  return nil
end

-- ---- what the binary has -----------------------------------------------------

local function keys_of(t)
  local out = {}
  for k in pairs(t) do
    if type(k) == "string" and not k:match("^__") then out[k] = true end
  end
  return out
end

local function has_string_keys(t)
  for k in pairs(t) do if type(k) == "string" then return true end end
  return false
end

-- Only the file's names must exist there (a library of its own).
local PARTIAL = { ["nyx.json"] = true }

-- Compares the names of one table (or object) of the binary with a class.
-- `mode`: "table" (both ways), "methods" (a metatable: its functions against
-- the class's methods), "partial" (the file's names must exist), "probe"
-- (an __index function: each of the file's names must answer).
local function compare(problems, where, class, names, mode, obj)
  if not class then
    problems[#problems + 1] = ("%s: registered by nyx, no ---@class for it in types/nyx.lua"):format(where)
    return
  end
  if mode == "probe" then
    for name, mem in pairs(class.members) do
      if not mem.optional and obj[name] == nil then
        problems[#problems + 1] = ("%s.%s: in types/nyx.lua, not registered by nyx"):format(where, name)
      end
    end
    return
  end
  for name in pairs(names) do
    if mode ~= "partial" and not class.members[name] then
      problems[#problems + 1] = ("%s.%s: registered by nyx, missing from types/nyx.lua"):format(where, name)
    end
  end
  for name, mem in pairs(class.members) do
    local wanted = mem.method or (mode ~= "methods" and not mem.optional)
    if wanted and not names[name] then
      problems[#problems + 1] = ("%s.%s: in types/nyx.lua, not registered by nyx"):format(where, name)
    end
  end
end

-- Walks the nyx table: every table with string keys (but arrays) is a
-- class, found through the type its parent's field gives it.
local function walk(problems, text, m, t, path, cname, seen)
  if seen[t] then return end
  seen[t] = true
  local class = m.classes[cname]
  local mode = PARTIAL[path] and "partial" or (rawget(t, "__index") == t and "methods") or "table"
  compare(problems, path .. (cname ~= path and (" (" .. cname .. ")") or ""), class, keys_of(t), mode)
  if not class or mode == "partial" then return end
  for k, v in pairs(t) do
    local member = type(k) == "string" and class.members[k]
    if member and type(v) == "table" and has_string_keys(v) and not k:match("^__") then
      local ftype = field_type(text, member)
      if not (ftype and m.classes[ftype]) then
        problems[#problems + 1] = ("%s.%s: a table of names in nyx; types/nyx.lua gives it no class (%s)")
          :format(path, k, tostring(ftype))
      else
        walk(problems, text, m, v, path .. "." .. k, ftype, seen)
      end
    end
  end
end

-- Objects the binary makes, each to be compared with its class.
local samples = {}

local function sample(class, obj, mode)
  samples[#samples + 1] = { class = class, obj = obj, mode = mode }
end

-- A table object as it is now (the runtime lets go of some fields once an
-- agent or orchestrator is done): its fields copied, its metatable kept.
local function snapshot(obj)
  local copy = {}
  for k, v in pairs(obj) do copy[k] = v end
  return setmetatable(copy, getmetatable(obj))
end

local function instance_names(obj)
  local names = type(obj) == "table" and keys_of(obj) or {}
  local mt = getmetatable(obj)
  local index = type(mt) == "table" and rawget(mt, "__index")
  if type(index) == "table" then
    for k in pairs(keys_of(index)) do names[k] = true end
  end
  return names, type(index) == "function"
end

local function check(text)
  local m = parse(text)
  local problems = {}
  for _, e in ipairs(m.errors) do problems[#problems + 1] = e end
  walk(problems, text, m, nyx, "nyx", "nyx", {})
  for _, s in ipairs(samples) do
    local names, probe = instance_names(s.obj)
    compare(problems, s.class, m.classes[s.class], names, probe and "probe" or s.mode or "table", s.obj)
  end
  -- the string enums the binary lists
  local enums = {
    ["nyx.tree.Status"] = nyx.tree.STATUSES, ["nyx.tree.Importance"] = nyx.tree.IMPORTANCE,
    ["nyx.tree.Score"] = nyx.tree.SCORES, ["nyx.runtime.AgentType"] = nyx.runtime.AGENT_TYPES,
    ["nyx.strategy.Role"] = (function()
      local l = {}
      for k in pairs(nyx.strategy.ROLES) do l[#l + 1] = k end
      return l
    end)(),
  }
  for name, list in pairs(enums) do
    local alias = m.aliases[name]
    if not alias then
      problems[#problems + 1] = ("%s: no ---@alias in types/nyx.lua"):format(name)
    else
      local set = {}
      for _, v in ipairs(alias) do set[v] = true end
      for _, v in ipairs(list) do
        if not set[v] then problems[#problems + 1] = ("%s: \"%s\" missing from types/nyx.lua"):format(name, v) end
        set[v] = nil
      end
      for v in pairs(set) do problems[#problems + 1] = ("%s: \"%s\" in types/nyx.lua, not in nyx"):format(name, v) end
    end
  end
  local unique, seen = {}, {}
  for _, p in ipairs(problems) do
    if not seen[p] then seen[p] = true; unique[#unique + 1] = p end
  end
  table.sort(unique)
  return unique, m
end

-- ---- .luacheckrc's std "nyx" ------------------------------------------------

-- The paths a luacheck field definition names ("nyx.tree.create", ...);
-- a field listed in the array part is a name alone.
local function std_paths(def, path, out)
  for k, v in pairs(def.fields or {}) do
    if type(k) == "number" then
      out[path .. "." .. v] = true
    else
      out[path .. "." .. k] = true
      std_paths(v, path .. "." .. k, out)
    end
  end
  return out
end

local function binary_paths(t, path, out)
  for k, v in pairs(t) do
    if type(k) == "string" and not k:match("^__") then
      out[path .. "." .. k] = true
      if type(v) == "table" and has_string_keys(v) and path .. "." .. k ~= "nyx.json" then
        binary_paths(v, path .. "." .. k, out)
      end
    end
  end
  return out
end

-- The std read from a .luacheckrc's text (it is Lua).
local function luacheck_std(rc)
  local env = { stds = {}, files = {} }
  local chunk = assert(load(rc, "=.luacheckrc", "t", env))
  chunk()
  local std = env.stds.nyx
  return std and std.read_globals and std.read_globals.nyx
end

local function std_problems(rc)
  local def = luacheck_std(rc)
  if not def then return { ".luacheckrc: no stds.nyx with read_globals.nyx" } end
  local declared, registered, problems = std_paths(def, "nyx", {}), binary_paths(nyx, "nyx", {}), {}
  for p in pairs(registered) do
    if not declared[p] then problems[#problems + 1] = p .. ": registered by nyx, missing from .luacheckrc" end
  end
  for p in pairs(declared) do
    if not registered[p] then problems[#problems + 1] = p .. ": in .luacheckrc, not registered by nyx" end
  end
  table.sort(problems)
  return problems
end

-- ---- the specs -------------------------------------------------------------

describe("types/nyx.lua", function()
  local dbname, text, message_types_ok

  setup(function()
    dbname = H.fresh_db()
    text = read(TYPES)
    -- a node with every column set
    local root = nyx.tree.create{ goal = "types: a root", metadata = { k = 1 } }
    local node = nyx.tree.create{ goal = "types: a child", parent = root }
    node:update{ success_score = 1, quality_score = 0.5, speed_score = 0.5, usefulness_score = 0.5,
                 overall_weight = 0.6, importance_level = "medium" }
    node:set_status("completed")
    sample("nyx.tree.Node", node)
    sample("nyx.tree.Node", root)
    sample("nyx.limits.Pool", nyx.limits.pool(2))
    sample("nyx.limits.Event", nyx.limits.event())
    local conn = nyx.db.open(H.url_for(dbname))
    sample("nyx.db.Connection", conn)
    sample("nyx.db.Info", conn:info())
    sample("nyx.db.Info", nyx.db.info())
    local th = nyx.task.spawn(function() return 1 end)
    sample("nyx.task.Handle", th)
    th:wait()
    local ok, err = pcall(nyx.db.query, "SELECT no_such_column FROM thought_trees")
    assert(not ok and type(err) == "table", "expected a structured error")
    sample("nyx.Error", err)
    sample("nyx.llm.Response", nyx.llm.complete{ tree = root, max_tokens = 50,
                                                  messages = {{ role = "user", content = "Say hello" }} })
    sample("nyx.proc.Result", nyx.proc.run{ argv = { "true" } })
    -- an orchestration with an inline strategy: ctx, an agent, a handle
    local got = {}
    package.preload["strategies.types_probe"] = function()
      return { run = function(n, ctx)
        got.ctx = snapshot(ctx)
        local h = ctx:spawn{ type = "task", node = n, run = function(agent)
          got.agent = snapshot(agent)
          local accepted = 0
          local alias = parse(text).aliases["nyx.runtime.MessageType"] or {}
          for _, mt in ipairs(alias) do
            if pcall(agent.broadcast, agent, mt, "probe") then accepted = accepted + 1 end
          end
          local refuses_others = not pcall(agent.broadcast, agent, "no_such_type", "probe")
          message_types_ok = #alias > 0 and accepted == #alias and refuses_others
          return n.goal
        end }
        got.handle = snapshot(h)
        return (select(2, h:wait()))
      end }
    end
    local okr, res, o = nyx.orchestrate("types: an orchestration", { strategy = "types_probe" })
    assert(okr, tostring(res))
    assert(got.ctx.id == o.id)
    sample("nyx.runtime.Orchestrator", got.ctx)
    sample("nyx.runtime.Agent", got.agent)
    sample("nyx.runtime.Handle", got.handle)
    conn:close()
  end)

  teardown(function()
    package.preload["strategies.types_probe"] = nil
    H.drop_db(dbname)
  end)

  it("names everything the binary registers, and nothing it does not", function()
    local problems = check(text)
    assert(#problems == 0, "types/nyx.lua and the binary differ:\n  " .. table.concat(problems, "\n  "))
  end)

  it("reports each drift, both ways (the check can fail)", function()
    local function drifted(edit)
      local new, n = edit(text)
      assert(n == 1, "the edit did not apply")
      return (check(new))
    end
    local function plain(s) return (s:gsub("%p", "%%%0")) end
    local function remove(line)
      return function(t) return t:gsub("\n" .. plain(line) .. "\n", "\n", 1) end
    end
    -- removes a function, and the doc comment right above it
    local function remove_fn(line)
      return function(t)
        local out, n = t:gsub("\n[%-][%-][%-][^\n]*\n" .. plain(line) .. "\n", "\n" .. line .. "\n", 1)
        while n == 1 do
          t = out
          out, n = t:gsub("\n[%-][%-][%-][^\n]*\n" .. plain(line) .. "\n", "\n" .. line .. "\n", 1)
        end
        return t:gsub("\n" .. plain(line) .. "\n", "\n", 1)
      end
    end
    local function list(p) return table.concat(p, "\n") end
    -- a module function removed from the file
    local p = drifted(remove_fn("function nyx.tree.create(spec) end"))
    assert.are.same({ "nyx.tree.create: registered by nyx, missing from types/nyx.lua" }, p, list(p))
    -- a method of a class's metatable
    p = drifted(remove_fn("function Node:children() end"))
    assert.are.same({ "nyx.tree.Node.children: registered by nyx, missing from types/nyx.lua" }, p, list(p))
    -- a method of a userdata class, known only from a real object
    p = drifted(remove_fn("function Pool:try_acquire() end"))
    assert.are.same({ "nyx.limits.Pool.try_acquire: registered by nyx, missing from types/nyx.lua" }, p, list(p))
    -- a field of an instance
    p = drifted(remove("---@field max_depth integer its max_recursion_depth"))
    assert.are.same({ "nyx.runtime.Agent.max_depth: registered by nyx, missing from types/nyx.lua" }, p, list(p))
    -- the file names what nyx does not have: a module's field, a method, a handle's field
    p = drifted(function(t) return t:gsub("\nnyx%.proc = {}\n", "\n---@field shell fun()\nnyx.proc = {}\n", 1) end)
    assert.are.same({ "nyx.proc.shell: in types/nyx.lua, not registered by nyx" }, p, list(p))
    p = drifted(function(t) return t:gsub("\nfunction Handle:done%(%) end\n",
                                         "\nfunction Handle:done() end\nfunction Handle:cancel() end\n", 1) end)
    assert.are.same({ "nyx.runtime.Handle.cancel: in types/nyx.lua, not registered by nyx" }, p, list(p))
    p = drifted(function(t) return t:gsub("\n%-%-%-@field status nyx%.task%.Status\n",
                                         "\n---@field status nyx.task.Status\n---@field name string\n", 1) end)
    assert.are.same({ "nyx.task.Handle.name: in types/nyx.lua, not registered by nyx" }, p, list(p))
    -- an enum value missing, or one too many
    p = drifted(remove('---| "cancelled"'))
    assert.are.same({ 'nyx.tree.Status: "cancelled" missing from types/nyx.lua' }, p, list(p))
    p = drifted(function(t) return t:gsub('\n%-%-%-| "memory"\n', '\n---| "memory"\n---| "oracle"\n', 1) end)
    assert.are.same({ 'nyx.runtime.AgentType: "oracle" in types/nyx.lua, not in nyx' }, p, list(p))
  end)

  it("gives each message type an agent accepts, and only those", function()
    assert.is_true(message_types_ok)
  end)

  it("has .luacheckrc's std nyx list what the binary registers, both ways", function()
    local rc = read(H.source .. "/.luacheckrc")
    local problems = std_problems(rc)
    assert(#problems == 0, ".luacheckrc and the binary differ:\n  " .. table.concat(problems, "\n  "))
    -- and the check can fail: a name dropped, a name too many
    local dropped = rc:gsub('"sleep", ', "", 1)
    assert.are.same({ "nyx.task.sleep: registered by nyx, missing from .luacheckrc" }, std_problems(dropped))
    local extra = rc:gsub('"cancel_all", ', '"cancel_all", "kill", ', 1)
    assert.are.same({ "nyx.proc.kill: in .luacheckrc, not registered by nyx" }, std_problems(extra))
  end)

  it("loads as Lua", function()
    local chunk, err = loadfile(TYPES)
    assert(chunk, err)
  end)

  it("documents each function's parameters, by their names", function()
    local m = parse(text)
    assert.are.same({}, m.errors)
    local problems = {}
    for _, f in ipairs(m.functions) do
      local params, documented = {}, {}
      for _, p in ipairs(f.params) do params[p] = true end
      for _, d in ipairs(f.docs) do
        local name = d.name and d.name:gsub("%?$", "")
        documented[name or "?"] = true
        if not (name and params[name]) then
          problems[#problems + 1] = ("line %d: ---@param %s does not name a parameter of %s.%s"):format(
            d.line, tostring(name), f.owner, f.name)
        end
      end
      for _, p in ipairs(f.params) do
        if not documented[p] then
          problems[#problems + 1] = ("line %d: %s.%s: parameter %s has no ---@param"):format(f.line, f.owner, f.name, p)
        end
      end
    end
    assert(#m.functions > 100, "too few functions parsed: " .. #m.functions)
    assert(#problems == 0, table.concat(problems, "\n"))
  end)

  it("refers only to declared classes and aliases", function()
    local m = parse(text)
    local builtin = { ["nyx"] = true }
    local missing = {}
    for ref in text:gmatch("nyx%.[%w_%.]*[%w_]") do
      if not (m.classes[ref] or m.aliases[ref] or builtin[ref]) then
        -- a path such as nyx.tree.create (a function), not a type
        local owner, name = ref:match("^(.*)%.([%w_]+)$")
        if not (m.classes[owner] and m.classes[owner].members[name]) then missing[ref] = true end
      end
    end
    local list = {}
    for r in pairs(missing) do list[#list + 1] = r end
    table.sort(list)
    assert.are.same({}, list)
  end)
end)
