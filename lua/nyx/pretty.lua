--- nyx.pretty(v [, opts]): a value as readable text, for the REPL and for
-- people: tables nested and indented, to a depth; cycles marked; long
-- strings cut; keys sorted; arrays without their indices; and the values of
-- credentials (system_config rows of config_type 'credential') shown as
-- "<redacted: credential>" unless opts.reveal (docs/lua-api.md).
local M = {}

M.defaults = {
  depth = 4,        -- tables nested deeper show as {...}
  string = 200,     -- characters of a string shown before it is cut
  items = 100,      -- entries shown per table
  width = 78,       -- a table fits on one line up to this width
  indent = "  ",
  reveal = false,   -- true: credentials in clear
}

M.REDACTED = "<redacted: credential>"

-- A value config.reveal gave: printed in clear, once asked for.
local Revealed = { __name = "nyx.pretty.revealed" }
Revealed.__index = Revealed
Revealed.__tostring = function(r) return tostring(r.value) end

--- revealed(v): v wrapped so that pretty prints it in clear.
function M.revealed(v) return setmetatable({ value = v }, Revealed) end

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k]
end

local ESC = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return ESC[c] or ("\\%03d"):format(c:byte()) end) .. '"'
end

-- The credentials' values nyx.config knows of: a set, or nil.
local function secrets(opts)
  if opts.reveal then return nil end
  if opts.secrets then return opts.secrets end
  local config = package.loaded["nyx.config"]
  if not (config and config.secrets) then return nil end
  local ok, set = pcall(config.secrets)
  return ok and set or nil
end

local function redact(s, st)
  local set = st.secrets
  if not set or s == "" then return s end
  if set[s] then return M.REDACTED end
  for secret in pairs(set) do
    if #secret >= 8 then
      local i, j = s:find(secret, 1, true)
      while i do
        s = s:sub(1, i - 1) .. M.REDACTED .. s:sub(j + 1)
        i, j = s:find(secret, i + #M.REDACTED, true)
      end
    end
  end
  return s
end

local function string_text(s, st)
  s = redact(s, st)
  if s == M.REDACTED then return s end
  local max = st.opts.string
  if #s > max then
    return quote(s:sub(1, max)) .. ("...(%d more bytes)"):format(#s - max)
  end
  return quote(s)
end

local function function_text(f)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then return "<function: builtin>" end
  return ("<function %s:%d>"):format(info.short_src, info.linedefined)
end

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = TYPE_ORDER[type(a)] or 4, TYPE_ORDER[type(b)] or 4
  if ta ~= tb then return ta < tb end
  if ta == 4 then return tostring(a) < tostring(b) end
  if ta == 3 then return (not a) and b end
  return a < b
end

-- The table's entries: the array part 1..n, then the other keys sorted.
local function entries(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  return n, keys
end

-- Pass one: the tables that contain themselves (on a path from the root)
-- get a label, <1>, that their cycle refers back to.
local function find_cycles(v, st, path, depth)
  if type(v) ~= "table" or getmetatable(v) == Revealed or depth > st.opts.depth then return end
  if path[v] then
    if not st.labels[v] then st.nlabels = st.nlabels + 1; st.labels[v] = st.nlabels end
    return
  end
  path[v] = true
  for k, x in next, v do
    find_cycles(k, st, path, depth + 1)
    find_cycles(x, st, path, depth + 1)
  end
  path[v] = nil
end

local render

local function key_text(k, st, depth)
  if is_identifier(k) then return k end
  return "[" .. render(k, st, depth, "") .. "]"
end

local function table_text(t, st, depth, pad)
  if st.path[t] then return ("<cycle %d>"):format(st.labels[t] or 0) end
  local n, keys = entries(t)
  local label = st.labels[t] and ("<%d>"):format(st.labels[t]) or ""
  if n == 0 and #keys == 0 then
    return label .. (getmetatable(t) and "{} <with a metatable>" or "{}")
  end
  if depth >= st.opts.depth then return label .. "{...}" end
  st.path[t] = true
  local inner = pad .. st.opts.indent
  local parts, shown = {}, 0
  local function add(text)
    shown = shown + 1
    parts[#parts + 1] = text
  end
  for i = 1, n do
    if shown >= st.opts.items then break end
    add(render(t[i], st, depth + 1, inner))
  end
  for _, k in ipairs(keys) do
    if shown >= st.opts.items then break end
    add(key_text(k, st, depth + 1) .. " = " .. render(rawget(t, k), st, depth + 1, inner))
  end
  local more = n + #keys - shown
  if more > 0 then parts[#parts + 1] = ("...(%d more)"):format(more) end
  st.path[t] = nil
  local line = label .. "{" .. table.concat(parts, ", ") .. "}"
  if #line + #pad <= st.opts.width and not line:find("\n", 1, true) then return line end
  return label .. "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. pad .. "}"
end

function render(v, st, depth, pad)
  local t = type(v)
  if t == "string" then return string_text(v, st) end
  if t == "table" then
    if getmetatable(v) == Revealed then
      local x = v.value
      return type(x) == "string" and quote(x) or render(x, { opts = st.opts, path = st.path, labels = st.labels }, depth, pad)
    end
    return table_text(v, st, depth, pad)
  end
  if t == "function" then return function_text(v) end
  if t == "number" then
    if math.type(v) == "float" and v == math.floor(v) and v > -1e15 and v < 1e15 then
      return ("%.1f"):format(v)
    end
    return tostring(v)
  end
  if t == "userdata" or t == "thread" then
    local ok, s = pcall(tostring, v)
    return ok and ("<" .. s .. ">") or ("<" .. t .. ">")
  end
  return tostring(v)
end

--- pretty(v [, opts]): the text. opts: depth, string, items, width,
-- indent (M.defaults), reveal (credentials in clear), secrets (a set of
-- strings to redact instead of nyx.config's credentials).
local function pretty(v, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'pretty' (options must be a table)", 3)
  end
  local o = {}
  for k, d in pairs(M.defaults) do
    local x = opts and opts[k]
    if x == nil then x = d end
    if type(x) ~= type(d) then
      error(("bad argument #2 to 'pretty' (option '%s' must be a %s)"):format(k, type(d)), 3)
    end
    o[k] = x
  end
  for k in pairs(opts or {}) do
    if M.defaults[k] == nil and k ~= "secrets" then
      error(("bad argument #2 to 'pretty' (unknown option '%s')"):format(tostring(k)), 3)
    end
  end
  o.secrets = opts and opts.secrets
  local st = { opts = o, path = {}, labels = {}, nlabels = 0 }
  st.secrets = secrets(o)
  find_cycles(v, st, {}, 0)
  return render(v, st, 0, "")
end

function M.pretty(v, opts) return pretty(v, opts) end

return setmetatable(M, { __call = function(_, v, opts) return pretty(v, opts) end })
