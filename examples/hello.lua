-- examples/hello.lua: a first thought tree, worked by the model.
--
--   nyx examples/hello.lua ["a goal"]
--
-- Asks the model to split the goal into subtasks, answers every subtask at
-- once (each call yields while it is in flight), and prints the tree with
-- what each node cost. Everything is kept in PostgreSQL. With no
-- ANTHROPIC_API_KEY the offline model answers (a fake Claude that nyx
-- starts on loopback), so this runs anywhere; with a key, Claude does.
local goal = arg[1] or "Plan a weekend hiking trip"

local root = nyx.tree.create{ goal = goal, metadata = { example = "hello" } }
root:set_status("in_progress")

local plan = nyx.llm.complete{
  tree = root, max_tokens = 1024,
  system = 'Split the goal into 2 to 4 subtasks. Answer with JSON only: {"subtasks": [{"goal": "..."}]}',
  messages = { { role = "user", content = goal } },
}
local parsed = nyx.json.decode(plan.text:match("%b{}") or "{}")
local subtasks = type(parsed.subtasks) == "table" and #parsed.subtasks > 0 and parsed.subtasks or { { goal = goal } }

local handles = {}
for i, s in ipairs(subtasks) do
  local child = nyx.tree.create{ goal = tostring(s.goal), parent = root, metadata = { step = i } }
  handles[i] = nyx.task.spawn(function()
    child:set_status("in_progress")
    local r = nyx.llm.complete{ tree = child, max_tokens = 512, messages = { { role = "user", content = child.goal } } }
    child:update{ metadata = { answer = r.text }, success_score = 1 }
    child:set_status("completed")
  end)
end
for i, r in ipairs(nyx.task.wait_all(handles)) do
  if not r.ok then io.stderr:write(("subtask %d failed: %s\n"):format(i, tostring(r.error))) end
end
root:set_status("completed")

local MARK = { pending = " ", in_progress = "~", completed = "x", failed = "!", cancelled = "-" }
for _, n in ipairs(root:subtree()) do
  local c = nyx.db.query([[SELECT count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost
                           FROM llm_interactions WHERE thought_tree_id = $1]], n.id)[1]
  print(("%s[%s] %s  (%d call%s, $%.6f)"):format(("    "):rep(n.depth), MARK[n.status], n.goal,
                                              c.calls, c.calls == 1 and "" or "s", c.cost))
end
local total = nyx.db.query([[SELECT count(*) AS calls, sum(token_count_input + token_count_output) AS tokens,
                                    sum(cost_usd) AS cost
                             FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
                             WHERE t.root_id = $1]], root.id)[1]
print(("\n%d nodes, %d calls, %d tokens, $%.6f; model at %s; data in %s"):format(
  #root:subtree(), total.calls, total.tokens, total.cost, nyx.llm.endpoint().base_url, nyx.db.info().database))
