-- nyx.tree: creating, reading and changing thought-tree nodes, and bad
-- input refused with a clear error and the database unchanged.
local H = require "tests.lua.helper"

local function snapshot()
  return nyx.db.query("SELECT * FROM thought_trees ORDER BY id")
end

-- asserts that fn raises an error matching msg and leaves the table as it was
local function refused(msg, fn, ...)
  local before = snapshot()
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error: " .. msg)
  assert.matches(msg, tostring(e), 1, true)
  assert.are.same(before, snapshot())
end

describe("nyx.tree", function()
  local dbname
  setup(function() dbname = H.fresh_db() end)
  teardown(function() H.drop_db(dbname) end)

  it("creates a root: pending, depth 0, its own root", function()
    local root = nyx.tree.create{ goal = "Write a migration plan", metadata = { owner = "ops", n = 2 } }
    assert.are.equal("Write a migration plan", root.goal)
    assert.are.equal("pending", root.status)
    assert.are.equal(0, root.depth)
    assert.are.equal(root.id, root.root_id)
    assert.is_nil(root.parent_id)
    assert.are.same({ owner = "ops", n = 2 }, root.metadata)
    assert.are.equal(0.5, root.overall_weight)
    assert.are.equal("medium", root.importance_level)
    assert.is_nil(root.completed_at)
    assert.are.equal("node " .. root.id .. " [pending] Write a migration plan", tostring(root))
    assert.are.same({}, nyx.tree.create{ goal = "no metadata" }.metadata)
  end)

  it("derives a child's root and depth from its parent", function()
    local root = nyx.tree.create{ goal = "root" }
    local a = nyx.tree.create{ goal = "a", parent = root }
    local a1 = nyx.tree.create{ goal = "a1", parent = a.id }
    assert.are.equal(root.id, a.parent_id)
    assert.are.equal(root.id, a1.root_id)
    assert.are.equal(a.id, a1.parent_id)
    assert.are.equal(1, a.depth)
    assert.are.equal(2, a1.depth)
    assert.are.equal(root.id, a1:root().id)
    assert.are.equal(a.id, a1:parent().id)
    assert.is_nil(root:parent())
    assert.are.equal(root, root:root())
  end)

  it("gets and finds nodes by id", function()
    local n = nyx.tree.create{ goal = "findable" }
    local got = nyx.tree.get(n.id)
    assert.are.same(n, got)
    assert.are.equal(getmetatable(n), getmetatable(got))
    assert.are.same(n, nyx.tree.get(n.id:upper()))
    assert.are.same(n, nyx.tree.find(n.id))
    assert.is_nil(nyx.tree.find(nyx.uuid()))
  end)

  it("lists children in creation order and the subtree depth first", function()
    local root = nyx.tree.create{ goal = "r" }
    local names = { "a", "b", "c" }
    local kids = {}
    for _, g in ipairs(names) do kids[g] = nyx.tree.create{ goal = g, parent = root } end
    nyx.tree.create{ goal = "b1", parent = kids.b }
    local b2 = nyx.tree.create{ goal = "b2", parent = kids.b }
    nyx.tree.create{ goal = "b2x", parent = b2 }
    nyx.tree.create{ goal = "a1", parent = kids.a }
    nyx.tree.create{ goal = "c1", parent = kids.c }
    local got = {}
    for _, n in ipairs(root:children()) do got[#got + 1] = n.goal end
    assert.are.same(names, got)
    got = {}
    for _, n in ipairs(root:subtree()) do got[#got + 1] = ("  "):rep(n.depth) .. n.goal end
    assert.are.same({ "r", "  a", "    a1", "  b", "    b1", "    b2", "      b2x", "  c", "    c1" }, got)
    assert.are.same({}, nyx.tree.get(b2.id):children()[1]:children())
    assert.are.equal(2, #b2:subtree())
  end)

  it("builds a wide, deep tree and reads it back in one query", function()
    local root = nyx.tree.create{ goal = "big" }
    local level, total = { root }, 1
    for depth = 1, 4 do
      local next_level = {}
      for _, p in ipairs(level) do
        for i = 1, 3 do
          next_level[#next_level + 1] = nyx.tree.create{ goal = ("d%d-%d"):format(depth, i), parent = p }
        end
      end
      total = total + #next_level
      level = next_level
    end
    local sub = root:subtree()
    assert.are.equal(total, #sub)
    assert.are.equal(121, total)
    -- depth first: every node's parent comes before it, and right before its first child
    local seen = { [root.id] = true }
    for i = 2, #sub do
      assert.is_true(seen[sub[i].parent_id] or false)
      assert.is_true(sub[i].depth <= sub[i - 1].depth + 1)
      seen[sub[i].id] = true
    end
  end)

  it("sets a status, with completed_at on the terminal ones", function()
    local n = nyx.tree.create{ goal = "s" }
    assert.are.equal(n, n:set_status("in_progress"))
    assert.are.equal("in_progress", n.status)
    assert.is_nil(n.completed_at)
    for _, s in ipairs{ "completed", "failed", "cancelled" } do
      n:set_status(s)
      assert.are.equal(s, n.status)
      assert.is_string(n.completed_at)
      assert.are.equal(s, nyx.tree.get(n.id).status)
    end
    n:set_status("pending") -- a retry starts over
    assert.is_nil(n.completed_at)
    assert.is_nil(nyx.tree.get(n.id).completed_at)
  end)

  it("updates scores, importance and metadata (merged)", function()
    local n = nyx.tree.create{ goal = "u", metadata = { keep = 1, replace = "old" } }
    n:update{ success_score = 1, quality_score = 0.75, speed_score = 0, usefulness_score = 0.3333,
              overall_weight = 0.9, importance_level = "high", metadata = { replace = "new", added = { x = true } } }
    local fresh = nyx.tree.get(n.id)
    assert.are.same(fresh, n)
    assert.are.equal(1, n.success_score)
    assert.are.equal(0.75, n.quality_score)
    assert.are.equal(0, n.speed_score)
    assert.are.equal(0.3333, n.usefulness_score)
    assert.are.equal(0.9, n.overall_weight)
    assert.are.equal("high", n.importance_level)
    assert.are.same({ keep = 1, replace = "new", added = { x = true } }, n.metadata)
    assert.are.equal(n, n:update{})
  end)

  it("sees changes made elsewhere after refresh", function()
    local n = nyx.tree.create{ goal = "r" }
    nyx.db.exec("UPDATE thought_trees SET status = 'completed' WHERE id = $1", n.id)
    assert.are.equal("pending", n.status)
    n:refresh()
    assert.are.equal("completed", n.status)
  end)

  it("lists roots newest first", function()
    local newest = nyx.tree.create{ goal = "the newest root" }
    nyx.tree.create{ goal = "a child", parent = newest }
    assert.are.same(newest, nyx.tree.latest())
    local roots = nyx.tree.roots{ limit = 2 }
    assert.are.equal(2, #roots)
    assert.are.same(newest, roots[1])
    for _, r in ipairs(nyx.tree.roots{}) do assert.is_nil(r.parent_id) end
  end)

  describe("refuses bad input with the database unchanged", function()
    local node
    before_each(function() node = nyx.tree.create{ goal = "victim" } end)

    it("for create", function()
      refused("bad argument #1 to 'create' (goal must be a non-empty string)", nyx.tree.create, { goal = "" })
      refused("goal must be a non-empty string", nyx.tree.create, { goal = " \n\t" })
      refused("goal must be a non-empty string", nyx.tree.create, { goal = 42 })
      refused("goal must be a non-empty string", nyx.tree.create, {})
      refused("expected a table {goal = ..., parent = ..., metadata = ...}", nyx.tree.create, "a goal")
      refused("unknown field 'gaol' (fields: goal, metadata, parent)", nyx.tree.create, { gaol = "typo" })
      refused("metadata must be a plain table", nyx.tree.create, { goal = "g", metadata = "x" })
      refused("metadata keys must be strings", nyx.tree.create, { goal = "g", metadata = { 1, 2 } })
      refused("not a UUID: 'nope'", nyx.tree.create, { goal = "g", parent = "nope" })
      local missing = nyx.uuid()
      refused("nyx.tree.create: parent " .. missing .. " does not exist", nyx.tree.create, { goal = "g", parent = missing })
    end)

    it("for get, find and roots", function()
      refused("bad argument #1 to 'get' (not a UUID: 'nope')", nyx.tree.get, "nope")
      refused("bad argument #1 to 'get' (id must be a UUID string, got nil)", nyx.tree.get)
      refused("bad argument #1 to 'find' (id must be a UUID string, got number)", nyx.tree.find, 7)
      refused("not a UUID: '" .. node.id .. "x'", nyx.tree.get, node.id .. "x")
      local missing = nyx.uuid()
      refused("nyx.tree.get: no thought-tree node with id " .. missing, nyx.tree.get, missing)
      refused("limit must be a positive integer", nyx.tree.roots, { limit = 0 })
    end)

    it("for set_status and update", function()
      refused("bad argument #1 to 'set_status' (unknown status 'done' (statuses: pending, in_progress, completed, failed, cancelled))",
              node.set_status, node, "done")
      refused("unknown status 'nil'", node.set_status, node)
      refused("success_score must be a number from 0 to 1, got 1.5", node.update, node, { success_score = 1.5 })
      refused("overall_weight must be a number from 0 to 1, got -0.1", node.update, node, { overall_weight = -0.1 })
      refused("quality_score must be a number from 0 to 1, got high", node.update, node, { quality_score = "high" })
      refused("importance_level must be low, medium or high, got urgent", node.update, node, { importance_level = "urgent" })
      refused("unknown field 'goal'", node.update, node, { goal = "rewrite history" })
      refused("metadata must be a plain table", node.update, node, { metadata = 3 })
      refused("expected a table of fields", node.update, node, "x")
      -- nothing half-applied: a bad field next to good ones changes nothing
      refused("must be a number from 0 to 1", node.update, node, { success_score = 0.5, speed_score = 2 })
      assert.are.equal("pending", node.status)
    end)

    it("points the error at the script's line", function()
      local ok, e = pcall(function() nyx.tree.create{ goal = "" } end)
      assert.is_false(ok)
      assert.matches("tree_spec%.lua:%d+: bad argument #1 to 'create'", e)
    end)
  end)
end)
