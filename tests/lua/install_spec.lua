-- cmake --install: the binary, lua/, prompts/ and sql/ under a prefix, and
-- an installed nyx that works outside the source tree (and after the
-- prefix is moved); the Lua library compiled into the binary as a fallback.
local H = require "tests.lua.helper"

describe("an installed nyx", function()
  local tmp, prefix, dbname
  setup(function()
    tmp = H.tmpdir()
    prefix = tmp .. "/prefix"
    dbname = H.fresh_db{ connect = false }
    local r = H.sh(("cmake --install %s --prefix %s"):format(H.quote(os.getenv("NYX_BUILD_DIR")), H.quote(prefix)))
    assert(r.code == 0, r.out .. r.err)
  end)
  teardown(function()
    H.drop_db(dbname)
    H.rmdir(tmp)
  end)

  local function run(bin, code)
    return H.sh("sh -c " .. H.quote(("cd / && %s -e %s"):format(H.quote(bin), H.quote(code))),
                { env = H.env_for(dbname, { NYX_HOME = false, NYX_LUA_PATH = false }) })
  end

  it("has its files under the prefix", function()
    for _, f in ipairs{ "bin/nyx", "share/nyx/lua/nyx/init.lua", "share/nyx/lua/nyx/tree.lua",
                        "share/nyx/sql/0001_tables.sql", "share/nyx/prompts" } do
      assert.is_true(os.execute("test -e " .. H.quote(prefix .. "/" .. f)) or false, f)
    end
  end)

  it("finds its library and migrations there, from any folder", function()
    -- a marker in the installed copy proves that copy is the one loaded
    local f = assert(io.open(prefix .. "/share/nyx/lua/nyx/init.lua", "a"))
    f:write("\n-- installed\n")
    f:close()
    local r = run(prefix .. "/bin/nyx", [[
      print(nyx.home)
      print(select(2, package.searchers[2]("nyx")))
      print(#nyx.db.status(), nyx.tree.create{ goal = "installed" }.depth)
    ]])
    assert.are.equal(0, r.code, r.err)
    local nsql = #H.sh("ls " .. H.quote(H.source .. "/sql") .. "/*.sql").out:gsub("[^\n]", "")
    assert.are.equal(("%s/share/nyx\n%s/share/nyx/lua/nyx/init.lua\n%d\t0\n"):format(prefix, prefix, nsql), r.out)

    local moved = tmp .. "/moved"
    assert.is_true(os.execute(("mv %s %s"):format(H.quote(prefix), H.quote(moved))))
    r = run(moved .. "/bin/nyx", "print(nyx.home)")
    os.execute(("mv %s %s"):format(H.quote(moved), H.quote(prefix)))
    assert.are.equal(moved .. "/share/nyx\n", r.out)
  end)

  it("falls back to the library compiled into it", function()
    local r = run(prefix .. "/bin/nyx", [[
      package.path = ""
      package.loaded["nyx.tree"] = nil
      local tree, where = require "nyx.tree"
      print(where, type(tree.create))
    ]])
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("(embedded)/lua/nyx/tree.lua\tfunction\n", r.out)
  end)
end)
