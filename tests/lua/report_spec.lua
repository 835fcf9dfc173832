-- `nyx report ID`: one self-contained HTML page, loaded in headless
-- Chromium (Debian's chromium; scripts/setup-debian installs it): the DOM
-- its script builds has every node, toggles to expand and collapse, the
-- subtree totals SQL sums, the timeline's bars; a goal holding </script>
-- does not break the page; a screenshot is kept as a test artifact
-- (build/test-artifacts/report.png).
local H = require "tests.lua.helper"
local db = nyx.db

local dbname, dir, root, nodes, html, dom
local GOAL = [[Brew tea </script><script>document.title="pwned"</script> & "more"]]

local CHROMIUM = { "chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-extensions", "--disable-background-networking", "--disable-sync",
                   "--metrics-recording-only", "--no-default-browser-check" }

local function chromium(args)
  local words = { "timeout", "-k", "5", "90" }
  for _, w in ipairs(CHROMIUM) do words[#words + 1] = w end
  words[#words + 1] = "--user-data-dir=" .. dir .. "/profile"
  for _, w in ipairs(args) do words[#words + 1] = H.quote(w) end
  return H.sh(table.concat(words, " "), { env = { HOME = dir } })
end

local function attrs(tag)
  local t = {}
  for k, v in tag:gmatch('([%w%-]+)="([^"]*)"') do t[k] = v end
  return t
end

describe("report", function()
  setup(function()
    dbname = H.fresh_db()
    dir = H.tmpdir()
    nyx.config.set("max_concurrent_agents", 50)
    assert.is_true((nyx.orchestrate(GOAL, { strategy = "decompose" })))
    root = nyx.tree.latest()
    nodes = root:subtree()
    local system = ("Stable instructions for the tea guide. "):rep(400)
    for _ = 1, 2 do
      nyx.llm.complete { tree = nodes[3], model = "claude-haiku-5-5", system = system, cache = true,
                         messages = { { role = "user", content = "Which tea?" } } }
    end
    db.flush()
    local r = H.nyx({ "report", root.id, "-o", dir .. "/run.html" }, { env = H.env_for(dbname) })
    assert.equal(0, r.code, r.err)
    local f = assert(io.open(dir .. "/run.html"))
    html = f:read("a")
    f:close()
    local d = chromium { "--dump-dom", "file://" .. dir .. "/run.html" }
    assert.equal(0, d.code, d.err)
    dom = d.out
  end)
  teardown(function()
    H.rmdir(dir)
    H.drop_db(dbname)
  end)

  it("is one file with everything inline: no external asset, no network", function()
    assert.truthy(html:find("^<!DOCTYPE html>"))
    assert.is_nil(html:find("<link", 1, true))
    assert.is_nil(html:find("%ssrc="))
    assert.is_nil(html:find("%shref="))
    assert.is_nil(html:find("@import", 1, true))
    assert.is_nil(html:find("url%("))
    assert.is_nil(html:find("fetch%("))
    -- the data: one JSON script element, and the goal's </script> escaped in it
    assert.equal(1, select(2, html:gsub('<script type="application/json" id="nyx%-data">', "")))
    assert.equal(2, select(2, html:gsub("</script>", "")))
    assert.truthy(html:gsub("\\/", "/"):find("\\u003c/script\\u003e", 1, true))
  end)

  it("renders: the script built a node per tree node, with toggles, and ran to the end", function()
    assert.truthy(dom:find('<body data%-rendered="yes">'), dom:sub(1, 2000))
    local seen, toggles = {}, 0
    for tag in dom:gmatch('<li class="node[^>]*>') do
      local a = attrs(tag)
      seen[a["data-id"]] = a
    end
    for tag in dom:gmatch('<button class="toggle[^"]*"[^>]*>') do
      if not tag:find("leaf") then
        toggles = toggles + 1
        assert.truthy(tag:find('aria%-expanded="true"'), tag)
      end
    end
    local parents = 0
    for _, n in ipairs(nodes) do
      assert.truthy(seen[n.id], n.id)
      assert.equal(n.status, seen[n.id]["data-status"])
      if #n:children() > 0 then parents = parents + 1 end
      assert.equal(tostring(#n:children()), seen[n.id]["data-children"])
    end
    assert.equal(#nodes, (function() local c = 0; for _ in pairs(seen) do c = c + 1 end; return c end)())
    assert.equal(parents, toggles)
    assert.truthy(dom:find('id="expand-all"', 1, true) and dom:find('id="collapse-all"', 1, true))
    -- the hostile goal is text, not markup: the page's title is not "pwned"
    assert.truthy(dom:find("Brew tea &lt;/script&gt;&lt;script&gt;document.title=", 1, true))
    assert.is_nil(dom:find("<title>pwned</title>", 1, true))
  end)

  it("shows each node's own and subtree figures as SQL sums them", function()
    for _, n in ipairs(nodes) do
      local want = db.query([[
        WITH RECURSIVE t AS (SELECT id FROM thought_trees WHERE id = $1
                             UNION ALL SELECT c.id FROM thought_trees c JOIN t ON c.parent_id = t.id)
        SELECT count(i.id) AS calls,
               coalesce(sum(i.token_count_input + i.token_count_output + i.cache_creation_input_tokens
                            + i.cache_read_input_tokens), 0) AS tokens,
               round(coalesce(sum(i.cost_usd), 0) * 1000000)::bigint AS cost,
               round(coalesce(sum(i.cost_without_cache_usd - i.cost_usd), 0) * 1000000)::bigint AS saved
        FROM llm_interactions i WHERE i.thought_tree_id IN (SELECT id FROM t)]], n.id)[1]
      local at = dom:find('data-id="' .. n.id .. '"', 1, true)
      local sub = attrs(dom:match('<span class="fig sub"[^>]*>', at))
      local own = attrs(dom:match('<span class="fig own"[^>]*>', at))
      assert.equal(want.calls, tonumber(sub["data-calls"]), n.goal)
      assert.equal(want.tokens, tonumber(sub["data-tokens"]))
      assert.equal(want.cost, math.floor(tonumber(sub["data-cost"]) * 1e6 + 0.5))
      assert.equal(want.saved, math.floor(tonumber(sub["data-saved"]) * 1e6 + 0.5))
      local mine = db.query("SELECT count(*) AS n FROM llm_interactions WHERE thought_tree_id = $1", n.id)[1].n
      assert.equal(mine, tonumber(own["data-calls"]))
    end
    local root_saved = tonumber(attrs(dom:match('<span class="fig sub"[^>]*>', dom:find('data-id="' .. root.id .. '"', 1, true)))["data-saved"])
    assert.truthy(root_saved > 0) -- the cached call's savings reach the root
  end)

  it("draws a timeline: a bar per agent and per LLM call", function()
    local svg = dom:match('<svg[^>]*id="timeline".-</svg>')
    assert.truthy(svg)
    local agents = db.query([[SELECT count(*) AS n FROM agents a JOIN thought_trees t ON t.id = a.thought_tree_id
                              WHERE t.root_id = $1]], root.id)[1].n
    local calls = db.query([[SELECT count(*) AS n FROM llm_interactions i JOIN thought_trees t ON t.id = i.thought_tree_id
                             WHERE t.root_id = $1]], root.id)[1].n
    assert.equal(agents, select(2, svg:gsub('class="bar agent"', "")))
    assert.equal(calls, select(2, svg:gsub('class="bar call"', "")))
  end)

  it("looks like something: a screenshot kept under the build folder", function()
    local out = (os.getenv("NYX_BUILD_DIR") or ".") .. "/test-artifacts"
    os.execute("mkdir -p " .. H.quote(out))
    local png = out .. "/report.png"
    os.remove(png)
    local r = chromium { "--screenshot=" .. png, "--window-size=1280,900", "file://" .. dir .. "/run.html" }
    assert.equal(0, r.code, r.err)
    local f = assert(io.open(png, "rb"))
    local data = f:read("a")
    f:close()
    assert.equal("\137PNG\r\n\26\n", data:sub(1, 8))
    assert.truthy(#data > 20000, #data)
  end)
end)
