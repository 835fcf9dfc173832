-- examples/hello.lua: a first thought tree, in the embedded database.
--
--   nyx examples/hello.lua ["a goal"]
--
-- Makes a small tree (a goal, its subtasks, one of them split again),
-- marks progress and scores as the engine would, and prints the tree.
-- Everything stays in PostgreSQL: run it twice and `nyx -e` can find both.
local goal = arg[1] or "Plan a weekend hiking trip"

local root = nyx.tree.create{ goal = goal, metadata = { example = "hello" } }
root:set_status("in_progress")

local plan = {
  { "Choose a trail", { "Compare distance and elevation", "Read recent trail reports" } },
  { "Check the weather forecast" },
  { "Pack food, water and layers" },
}
for i, step in ipairs(plan) do
  local node = nyx.tree.create{ goal = step[1], parent = root, metadata = { step = i } }
  for _, sub in ipairs(step[2] or {}) do
    nyx.tree.create{ goal = sub, parent = node }:set_status("completed")
      :update{ success_score = 1, quality_score = 0.8, overall_weight = 0.7 }
  end
  node:set_status(i < #plan and "completed" or "in_progress")
end

local MARK = { pending = " ", in_progress = "~", completed = "x", failed = "!", cancelled = "-" }
local nodes = root:subtree()
for _, n in ipairs(nodes) do
  print(("%s[%s] %s%s"):format(("    "):rep(n.depth), MARK[n.status], n.goal,
    n.success_score > 0 and (" (success %.2f, weight %.2f)"):format(n.success_score, n.overall_weight) or ""))
end
print(("\n%d nodes, root %s, in %s"):format(#nodes, root.id, nyx.db.info().database))
