-- nyx.pretty: how values print in the REPL: nesting to a depth, cycles,
-- long strings, key order, compact arrays, and credentials redacted unless
-- revealed (against a fresh database for the system_config part).
local H = require "tests.lua.helper"
local pretty = nyx.pretty

describe("nyx.pretty", function()
  it("prints scalars as Lua would write them", function()
    assert.are.equal('"a\\nb\\t\\"q\\"\\\\"', pretty('a\nb\t"q"\\'))
    assert.are.equal("42", pretty(42))
    assert.are.equal("2.0", pretty(2.0))
    assert.are.equal("0.5", pretty(0.5))
    assert.are.equal("nil", pretty(nil))
    assert.are.equal("true", pretty(true))
    assert.are.equal('"\\001x"', pretty("\1x"))
    assert.are.equal("<function: builtin>", pretty(print))
    local f = function() end
    assert.matches("^<function .*pretty_spec%.lua:%d+>$", pretty(f))
    assert.matches("^<nyx%.task %d+ %(ready%)>$", pretty(nyx.task.spawn(function() end)))
  end)

  it("writes arrays without indices, then the other keys sorted", function()
    assert.are.equal("{}", pretty({}))
    assert.are.equal("{1, 2, 3}", pretty({ 1, 2, 3 }))
    assert.are.equal('{"x", "y", [4] = "z", [10] = 0, a = 1, b = 2, ["end"] = 4, ["not an id"] = 3, [true] = 5}',
      pretty({ "x", "y", nil, "z", b = 2, a = 1, ["not an id"] = 3, ["end"] = 4, [true] = 5, [10] = 0 },
             { width = 200 }))
    assert.are.equal("{[1.5] = 1, [2] = 2}", pretty({ [1.5] = 1, [2] = 2 }))
  end)

  it("breaks a table that does not fit on a line, indented", function()
    local t = { name = ("n"):rep(40), steps = { "boil the water", "steep for three minutes" } }
    assert.are.equal(table.concat({
      "{",
      '  name = "' .. ("n"):rep(40) .. '",',
      '  steps = {"boil the water", "steep for three minutes"}',
      "}" }, "\n"), pretty(t))
    assert.are.equal('{\n    name = "' .. ("n"):rep(40) .. '",\n    steps = {\n        "boil the water",\n        "steep for three minutes"\n    }\n}',
      pretty(t, { width = 40, indent = "    " }))
  end)

  it("stops at a depth", function()
    local t = { a = { b = { c = { d = { e = 1 } } } } }
    assert.are.equal("{a = {b = {c = {d = {...}}}}}", pretty(t)) -- 4 levels below the top
    assert.are.equal("{a = {...}}", pretty(t, { depth = 1 }))
    assert.are.equal("{a = {b = {c = {d = {e = 1}}}}}", pretty(t, { depth = 10 }))
    assert.are.equal("{...}", pretty(t, { depth = 0 }))
  end)

  it("marks cycles instead of following them", function()
    local t = { name = "root" }
    t.self = t
    t.child = { parent = t }
    assert.are.equal('<1>{child = {parent = <cycle 1>}, name = "root", self = <cycle 1>}', pretty(t))
    local a, b = {}, {}
    a.b, b.a = b, a
    assert.are.equal("<1>{b = {a = <cycle 1>}}", pretty(a))
    assert.are.equal("<1>{a = {b = <cycle 1>}}", pretty(b))
    -- shared but not cyclic: printed where it appears, no label
    local shared = { 1 }
    assert.are.equal("{x = {1}, y = {1}}", pretty({ x = shared, y = shared }))
  end)

  it("cuts long strings and long tables", function()
    local s = ("abc"):rep(100)
    assert.are.equal('"' .. s:sub(1, 200) .. '"...(100 more bytes)', pretty(s))
    assert.are.equal('"abcab"...(295 more bytes)', pretty(s, { string = 5 }))
    local many = {}
    for i = 1, 150 do many[i] = i end
    local text = pretty(many, { width = 10000 })
    assert.matches(", 100, %.%.%.%(50 more%)}$", text)
    assert.are.equal("{1, 2, ...(148 more)}", pretty(many, { items = 2 }))
  end)

  it("refuses bad options with a clear error", function()
    assert.has_error(function() pretty({}, 3) end, "bad argument #2 to 'pretty' (options must be a table)")
    assert.has_error(function() pretty({}, { depht = 2 }) end, "bad argument #2 to 'pretty' (unknown option 'depht')")
    assert.has_error(function() pretty({}, { depth = "2" }) end, "bad argument #2 to 'pretty' (option 'depth' must be a number)")
  end)

  it("redacts the strings it is given as secrets, whole or inside a string", function()
    local secrets = { ["sk-live-0123456789"] = true }
    assert.are.equal('{key = <redacted: credential>, url = "https://x:<redacted: credential>@host"}',
      pretty({ key = "sk-live-0123456789", url = "https://x:sk-live-0123456789@host" }, { secrets = secrets }))
    assert.are.equal('"sk-live-0123456789"', pretty("sk-live-0123456789", { secrets = secrets, reveal = true }))
  end)

  describe("with system_config credentials", function()
    local dbname
    setup(function() dbname = H.fresh_db() end)
    teardown(function() H.drop_db(dbname) end)

    it("prints a credential redacted; code still gets the value; reveal shows it", function()
      local key = "sk-ant-spec-" .. nyx.uuid()
      nyx.config.set("spec_api_key", key, "credential", "a key for the spec")
      nyx.config.set("spec_setting", "plain-value", "setting")
      assert.are.equal(key, nyx.config.get("spec_api_key")) -- code keeps working
      assert.are.equal("<redacted: credential>", pretty(nyx.config.get("spec_api_key")))
      assert.are.equal('"plain-value"', pretty(nyx.config.get("spec_setting")))
      -- wherever the value turns up: a row read by hand, an error message
      local row = nyx.db.query("SELECT config_value FROM system_config WHERE config_key = 'spec_api_key'")[1]
      assert.are.equal("{config_value = {value = <redacted: credential>}}", pretty(row))
      assert.are.equal('"bad key <redacted: credential>"', pretty("bad key " .. key))
      -- asked for explicitly
      local r = nyx.config.reveal("spec_api_key")
      assert.are.equal(key, r.value)
      assert.are.equal(key, tostring(r))
      assert.are.equal('"' .. key .. '"', pretty(r))
      assert.are.equal('"' .. key .. '"', pretty(nyx.config.get("spec_api_key"), { reveal = true }))
      -- a changed credential is redacted as soon as the cache is read again
      local key2 = "sk-ant-spec-" .. nyx.uuid()
      nyx.config.set("spec_api_key", key2)
      nyx.config.get("spec_api_key")
      assert.are.equal("<redacted: credential>", pretty(key2))
    end)
  end)
end)
