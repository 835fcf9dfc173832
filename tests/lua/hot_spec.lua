-- nyx.hot and nyx.config: what a running engine picks up without a
-- restart.
local H = require "tests.lua.helper"

describe("nyx.hot", function()
  local tmp, saved_path, saved_interval
  setup(function()
    tmp = H.tmpdir()
    saved_path, saved_interval = package.path, nyx.hot.interval
    package.path = tmp .. "/?.lua;" .. package.path
    nyx.hot.interval = 0
  end)
  teardown(function()
    package.path, nyx.hot.interval = saved_path, saved_interval
    H.rmdir(tmp)
  end)

  local function write(text)
    -- a new mtime even within one clock tick: set it explicitly
    H.write(tmp .. "/hotmod.lua", text)
    os.execute(("touch -d '@%d' %s/hotmod.lua"):format(os.time() + math.random(1, 100000), tmp))
  end

  local check = function(m) return type(m.value) == "number", "value must be a number" end

  it("reloads a module when its file changes, all or nothing", function()
    write("return { value = 1 }")
    assert.are.equal(1, nyx.hot.require("hotmod", check).value)
    assert.are.equal(1, nyx.hot.require("hotmod", check).value) -- unchanged: the same
    write("return { value = 2 }")
    assert.are.equal(2, nyx.hot.require("hotmod", check).value)
    assert.are.equal(2, package.loaded.hotmod.value)
    write("return { value = = 3 }") -- a syntax error: keep 2
    assert.are.equal(2, nyx.hot.require("hotmod", check).value)
    write("return { value = 'four' }") -- loads, but fails its check: keep 2
    assert.are.equal(2, nyx.hot.require("hotmod", check).value)
    write("error('boom')") -- raises while loading: keep 2
    assert.are.equal(2, nyx.hot.require("hotmod", check).value)
    write("return { value = 5 }")
    assert.are.equal(5, nyx.hot.require("hotmod", check).value)
  end)

  it("says what it reloaded and what it kept", function()
    local script = H.write(tmp .. "/run.lua", ([[
      package.path = %q .. "/?.lua;" .. package.path
      nyx.hot.interval = 0
      local f = io.open(%q, "w") f:write("return { value = 1 }") f:close()
      print(nyx.hot.require("hotmod").value)
      os.execute("touch -d '@1' %s")
      f = io.open(%q, "w") f:write("return {") f:close()
      os.execute("touch -d '@2' %s")
      print(nyx.hot.require("hotmod").value)
    ]]):format(tmp, tmp .. "/hotmod.lua", tmp .. "/hotmod.lua", tmp .. "/hotmod.lua", tmp .. "/hotmod.lua"))
    local r = H.nyx({ script }, { env = { NYX_DATABASE_URL = "host=/nonexistent dbname=x" } })
    assert.are.equal("1\n1\n", r.out)
    assert.matches("^nyx: kept the previous hotmod: .*hotmod.lua:1: unexpected symbol near <eof>\n$", r.err)
  end)
end)

describe("nyx.config", function()
  local dbname
  setup(function() dbname = H.fresh_db() end)
  teardown(function() H.drop_db(dbname) end)

  it("reads the initial configuration", function()
    assert.are.equal(10, nyx.config.get("max_recursion_depth"))
    assert.are.equal(60, nyx.config.get("llm_timeout_seconds"))
    assert.are.equal("fallback", nyx.config.get("no_such_key", "fallback"))
  end)

  it("sets values, and sees changes made by another process", function()
    nyx.config.set("llm_timeout_seconds", 5)
    assert.are.equal(5, nyx.config.get("llm_timeout_seconds"))
    nyx.config.set("my_setting", { a = 1 }, "setting", "a test")
    assert.are.same({ a = 1 }, nyx.config.get("my_setting"))
    assert.has_error(function() nyx.config.set("other_new", 1) end)
    local other = nyx.db.open(H.url_for(dbname))
    other:exec("UPDATE system_config SET config_value = '{\"value\": 77}' WHERE config_key = 'llm_timeout_seconds'")
    other:close()
    local saved = nyx.config.ttl
    nyx.config.ttl = 0.05
    nyx.task.sleep(0.1)
    assert.are.equal(77, nyx.config.get("llm_timeout_seconds"))
    nyx.config.ttl = saved
  end)
end)
