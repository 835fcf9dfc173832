--- strategies.decompose: the node's goal goes to a planner agent, which
-- answers it or splits it into subtasks; each subtask gets a
-- sub-orchestrator running this same strategy; the children's results are
-- gathered upward (options.synthesize = true: by one more LLM call, else
-- as a numbered list). A child refused for depth is answered here, by an
-- answer agent on this node; other failed children are reported in the
-- result and do not fail the node unless all of them failed.
local M = {}

M.system = [[You plan work. If the goal can be answered well in one reply, answer it. ]] ..
  [[Otherwise split it into 2 to 5 independent subtasks that together achieve it. ]] ..
  [[Reply with JSON only: {"subtasks": [{"goal": "..."}]} to split, or {"answer": "..."} to answer.]]

local function prompt(node, limit)
  local lines = { "Goal: " .. node.goal }
  if node.depth >= limit then
    lines[#lines + 1] = "This goal is at the depth limit: answer it directly."
  end
  lines[#lines + 1] = ("DEPTH: %d"):format(node.depth)
  return table.concat(lines, "\n")
end

function M.run(node, ctx)
  local limit = math.tointeger(nyx.config.get("max_recursion_depth", 10)) or 10
  local ok, plan = ctx:spawn{
    type = "task", class = "planner", node = node,
    input = { system = M.system, prompt = prompt(node, limit), cache = "5m" },
  }:wait()
  if not ok then error(plan, 0) end
  if plan.answer then return plan.answer end

  local kids = ctx:children(plan.subtasks)
  local handles = {}
  for i, kid in ipairs(kids) do handles[i] = ctx:orchestrate(kid) end
  local results, failed = {}, 0
  for i, r in ipairs(ctx:wait_all(handles)) do
    local e = r.error
    if not r.ok and type(e) == "table" and e.type == "recursion_limit" then
      r.ok, r.result = ctx:spawn{ type = "task", class = "answer", node = node,
                                  input = { goal = kids[i].goal } }:wait()
    end
    if r.ok then
      results[i] = tostring(r.result)
    else
      failed = failed + 1
      results[i] = "(failed: " .. tostring(type(r.error) == "table" and r.error.message or r.error) .. ")"
    end
  end
  if failed == #kids then error(("all %d subtasks failed; the first: %s"):format(failed, results[1]), 0) end
  local parts = {}
  for i, kid in ipairs(kids) do parts[i] = ("%d. %s\n%s"):format(i, kid.goal, results[i]) end
  local gathered = table.concat(parts, "\n\n")
  if not ctx.options.synthesize then return gathered end
  local okc, answer = ctx:spawn{ type = "task", class = "answer", node = node, input = {
    goal = node.goal, context = "Results of the subtasks:\n\n" .. gathered,
    system = "Combine the results of the subtasks into one answer to the goal.",
  } }:wait()
  if not okc then error(answer, 0) end
  return answer
end

return M
