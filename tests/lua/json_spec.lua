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

  it("writes floats as the shortest of %.15g and %.17g that reads back (costs take a faster path)", function()
    local function printf(d)
      local s = ("%.15g"):format(d)
      return tonumber(s) == d and s or ("%.17g"):format(d)
    end
    local list = { 0.0, -0.0, 1e-4, 9.99e-5, 1e-5, 0.5, -5.5, 123.0, 1e14, 1e15, 1e15 - 0.5, 999999999999999.0,
                   2 ^ 53 + 0.0, 0.1 + 0.2, 1 / 3, -2 / 3, 0.000123, 12.345, 3e-6 * 17, 4096.001, 1e300, -1e-300 }
    math.randomseed(7)
    for _ = 1, 2000 do
      local d = (math.random() - 0.5) * 10.0 ^ math.random(-8, 17)
      list[#list + 1] = d
      list[#list + 1] = math.floor(d * 1000 + 0.5) / 1000 + 0.0
      list[#list + 1] = math.random(1, 100000) * 3e-6 + math.random(1, 1000) * 15e-6
    end
    for _, d in ipairs(list) do assert.are.equal(printf(d), enc(d)) end
  end)

  it("reads what lua-cjson writes, and JSON with every escape", function()
    local t = dec(nyx.json.encode{ list = { 1, 2 }, name = "n" })
    assert.are.same({ list = { 1, 2 }, name = "n" }, t)
    assert.are.equal("a/b\"\\\b\f\n\r\té😀", dec('"a\\/b\\"\\\\\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"'))
    assert.are.same({ 1.5e3, -0.25, 12345678901234567890 }, dec("[1.5e3, -0.25, 12345678901234567890]"))
    assert.are.same({ a = 1 }, dec(' { "a" : 1 , "b" : null } ')) -- null: absent
  end)

  it("reads containers of every size (tables made at their size once they close)", function()
    for _, n in ipairs{ 1, 31, 32, 33, 64, 65, 1000 } do
      local arr, obj = {}, {}
      for i = 1, n do arr[i] = i; obj["k" .. i] = { i } end
      assert.are.same(arr, dec(enc(arr)))
      assert.are.same(obj, dec(enc(obj)))
    end
    assert.are.same({ 1, nil, 3 }, dec("[1,null,3]"))
    assert.are.same({ a = 2 }, dec('{"a":1,"b":null,"a":2}')) -- the last of a repeated key wins
    local long = {}
    for i = 1, 40 do long[i] = i == 35 and "null" or tostring(i) end
    local back = dec("[" .. table.concat(long, ",") .. "]")
    assert.are.equal(40, back[40])
    assert.is_nil(back[35])
  end)

  it("decodes on a thread of its own: a coroutine deep in its calls keeps its stack", function()
    -- each level of nesting takes a slice of the stack while it is read;
    -- Lua's generational collector never shrinks a stack again, so on an
    -- agent's coroutine that was memory kept while it waited
    local doc = enc{ a = { b = { c = { d = { e = { 1, 2, 3 } } } } }, f = "x" }
    local function deep(n, f)
      if n == 0 then return f() end
      local r = deep(n - 1, f)
      return r
    end
    local function per_coroutine(decode)
      local cos = {}
      collectgarbage(); collectgarbage()
      local before = collectgarbage("count")
      for i = 1, 200 do
        cos[i] = coroutine.create(function()
          return deep(30, function()
            if decode then assert(dec(doc).a.b.c.d.e[3] == 3) end
            coroutine.yield()
          end)
        end)
        assert(coroutine.resume(cos[i]))
      end
      collectgarbage(); collectgarbage()
      return (collectgarbage("count") - before) * 1024 / #cos
    end
    local plain, decoding = per_coroutine(false), per_coroutine(true)
    assert.is_true(decoding - plain < 256,
      ("decoding grew each suspended coroutine by %.0f bytes"):format(decoding - plain))
    -- and it still says where text is wrong, from inside a coroutine
    local co = coroutine.wrap(function() return dec('{"a": [1, 2,, 3]}') end)
    local v, err = co()
    assert.is_nil(v)
    assert.matches("invalid JSON at byte %d+", err)
  end)

  it("escapes strings as a reference escaping does, at every length around its sixteen-byte steps", function()
    local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
    local function quoted(str)
      return '"' .. str:gsub('[%c"\\]', function(c)
        return named[c] or (c:byte() < 32 and ("\\u%04x"):format(c:byte())) or c
      end) .. '"'
    end
    local alphabet = { "a", '"', "\\", "\n", "\1", "\31", "\127", "é", "😀", "0123456789abcdef", " " }
    math.randomseed(13)
    for _ = 1, 3000 do
      local t = {}
      for i = 1, math.random(0, 40) do t[i] = alphabet[math.random(#alphabet)] end
      local str = table.concat(t)
      assert.are.equal(quoted(str), enc(str))
      assert.are.equal(str, dec(enc(str)))
    end
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
