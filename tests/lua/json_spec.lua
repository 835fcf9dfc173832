-- nyx's own JSON codec (src/lua_json.c), used for responses, log rows and
-- query parameters: exact integers, shortest floats that read back the
-- same, strings with every escape, and clear refusals.
local core = require "nyx.core"
local enc, dec = core.json_encode, core.json_decode

describe("nyx's JSON codec", function()
  it("round-trips values, keeping integers integers", function()
    local v = { a = 1, b = -2.5, c = { 1, 2, { d = true, e = false } }, s = "x\n\"é😀\\", big = math.maxinteger,
                small = math.mininteger, f = 0.1, third = 1 / 3, zero = 0.0 }
    local back = dec(enc(v))
    assert.are.same(v, back)
    assert.are.equal("integer", math.type(back.a))
    assert.are.equal("integer", math.type(back.big))
    assert.are.equal("float", math.type(back.f))
    assert.are.equal(1 / 3, back.third)
  end)

  it("writes arrays as arrays and empty tables as objects", function()
    assert.are.equal("[1,2,3]", enc{ 1, 2, 3 })
    assert.are.equal("{}", enc{})
    assert.are.equal('{"1":1,"3":3}', enc{ [1] = 1, [3] = 3 }:gsub('"3":3,"1":1', '"1":1,"3":3'))
    assert.are.equal('["a",null]', enc{ "a", nyx.json.null })
    assert.are.equal("0.1", enc(0.1))
    assert.are.equal("3", enc(3))
    assert.are.equal("-7", enc(-7))
    assert.are.equal('"\\u0001\\t"', enc("\1\t"))
  end)

  it("reads what lua-cjson writes, and JSON with every escape", function()
    local t = dec(nyx.json.encode{ list = { 1, 2 }, name = "n" })
    assert.are.same({ list = { 1, 2 }, name = "n" }, t)
    assert.are.equal("a/b\"\\\b\f\n\r\té😀", dec('"a\\/b\\"\\\\\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"'))
    assert.are.same({ 1.5e3, -0.25, 12345678901234567890 }, dec("[1.5e3, -0.25, 12345678901234567890]"))
    assert.are.same({ a = 1 }, dec(' { "a" : 1 , "b" : null } ')) -- null: absent
  end)

  it("refuses what JSON cannot say, and says where text is wrong", function()
    assert.has_error(function() enc{ f = print } end, "cannot encode JSON: a function value")
    assert.has_error(function() enc(0 / 0) end)
    local cycle = {}
    cycle.self = cycle
    assert.has_error(function() enc(cycle) end)
    for _, bad in ipairs{ "", "{", "[1,]", '{"a" 1}', "tru", '"open', "[1] 2", '"\\x"', "nul" } do
      local v, err = dec(bad)
      assert.is_nil(v, bad)
      assert.matches("^invalid JSON at byte %d+: ", err)
    end
    assert.is_nil((dec(("["):rep(300))))
  end)
end)
