-- nyx.prompts: template files synced into prompt_templates with versions,
-- variants, rendering, outcomes; sync from two processes at once.
local H = require "tests.lua.helper"

local clock = os.time() - 100000
-- writes a template file with a new mtime (hot checks compare mtimes, and
-- two writes can fall in one clock tick)
local function put(path, text)
  H.write(path, text)
  clock = clock + 1
  assert(os.execute(("touch -d '@%d' %s"):format(clock, H.quote(path))))
  return path
end

local function tpl(name, ttype, vars, content, extra)
  return ("name: %s\ntype: %s\nvariables: %s\n%s---\n%s\n"):format(name, ttype, vars, extra or "", content)
end

local function count(name)
  return nyx.db.query("SELECT count(*) AS n FROM prompt_templates WHERE split_part(name, '@', 1) = $1", name)[1].n
end

local function active_versions(name)
  local out = {}
  for _, v in ipairs(nyx.prompts.versions(name)) do
    if v.is_active then out[#out + 1] = v.version end
  end
  return out
end

describe("nyx.prompts", function()
  local dbname, tmp, saved_interval
  setup(function()
    dbname = H.fresh_db()
    tmp = H.tmpdir()
    table.insert(nyx.prompts.path, tmp)
    saved_interval = nyx.hot.interval
    nyx.hot.interval = 0
  end)
  teardown(function()
    nyx.hot.interval = saved_interval
    for i, d in ipairs(nyx.prompts.path) do
      if d == tmp then table.remove(nyx.prompts.path, i) end
    end
    H.drop_db(dbname)
    H.rmdir(tmp)
  end)

  -- the summary's entries for files in tmp, by file name
  local function mine(summary)
    local out = {}
    for _, f in ipairs(summary.files) do
      local base = f.file:match("^" .. tmp:gsub("%p", "%%%0") .. "/(.*)$")
      if base then out[base] = f end
    end
    return out
  end

  it("ships the templates the strategies use, all valid", function()
    local s = nyx.prompts.sync()
    for _, e in ipairs(s.errors) do assert.is_nil(e:match("^prompts/"), e) end
    local want = {
      decompose = { "system", {} }, decompose_task = { "user", { "goal", "depth", "limit_note" } },
      answer = { "system", {} }, answer_task = { "user", { "goal", "context" } },
      validate = { "system", {} }, validate_task = { "user", { "goal", "result" } },
      council_vote = { "system", {} }, council_vote_task = { "user", { "goal", "proposals" } },
      synthesize = { "system", {} }, synthesize_task = { "user", { "goal", "results" } },
      repair = { "user", { "error", "text" } },
    }
    for name, w in pairs(want) do
      local v = assert(nyx.prompts.get(name))
      assert.are.same({ w[1], w[2], "prompts/" .. name .. ".prompt" }, { v.type, v.variables, v.file })
    end
    local r = nyx.prompts.render("decompose_task", { goal = "Plan a trip", depth = 3, limit_note = "" })
    assert.matches("\nDEPTH: 3$", r.text)
    assert.matches("subtask", r.text)
    assert.matches("JSON", r.text)
    local validate = nyx.prompts.get("validate").content
    assert.matches("verdict", validate)
    assert.matches("JSON", validate)
    local vote = nyx.prompts.get("council_vote").content
    assert.matches("vote", vote)
    assert.matches("JSON", vote)
    assert.matches("JSON", nyx.prompts.get("decompose").content)
  end)

  it("compiles the shipped templates into the binary", function()
    local saved = nyx.prompts.home
    nyx.prompts.home = nil
    local ok, files = pcall(nyx.prompts.files)
    -- the compiled-in copies sync as the same files as those on disk
    local ok2, summary = pcall(nyx.prompts.sync)
    nyx.prompts.home = saved
    assert(ok, files)
    assert(ok2, summary)
    local builtin = 0
    for _, f in ipairs(summary.files) do
      if f.file:match("^prompts/") then
        builtin = builtin + 1
        assert.are.equal("unchanged", f.action, f.file)
      end
    end
    local shipped = select(2, H.sh("ls " .. H.quote(H.source .. "/prompts") .. "/*.prompt").out:gsub("\n", ""))
    assert.are.equal(shipped, builtin)
    local n = 0
    for _, f in ipairs(files) do
      if f.data then
        n = n + 1
        local disk = assert(io.open(H.source .. "/" .. f.origin)):read("a")
        assert.are.equal(disk, f.data, f.origin)
      end
    end
    assert.are.equal(shipped, n)
  end)

  it("reports a bad file in one line naming file and line, and syncs the others", function()
    local function bad(text) return nyx.prompts.parse(text, "x.prompt") end
    local cases = {
      { "name: a\nnmae: b\ntype: user\n---\nhi", "x.prompt:2: unknown key 'nmae' (keys: name, type, variables, cache)" },
      { "name: a\ntype: user\nhi", "x.prompt:3: expected 'key: value' or '---', got 'hi'" },
      { "name: a\ntype: user\n", "x.prompt:3: no '---' line ends the header" },
      { "name: A@1\ntype: user\n---\nhi", "x.prompt:1: name 'A@1' must be 1 to 90 of a-z, 0-9, '_', '.', '-'" },
      { "type: user\n---\nhi", "x.prompt:2: no 'name:' in the header" },
      { "name: a\ntype: robot\n---\nhi", "x.prompt:2: type 'robot' is not system, user or assistant" },
      { "name: a\ntype: user\ncache: 2h\n---\nhi", "x.prompt:3: cache '2h' is not 5m or 1h" },
      { "name: a\ntype: user\nvariables: goal\n---\nhi\n{{goal}} {{gaol}}",
        "x.prompt:6: {{gaol}} is not declared in 'variables' (declared: goal)" },
      { "name: a\ntype: user\nvariables: goal, depth\n---\n{{goal}}",
        "x.prompt:3: variable 'depth' is declared but the content never uses {{depth}}" },
      { "name: a\ntype: user\nvariables: goal, goal\n---\n{{goal}}", "x.prompt:3: variable 'goal' is declared twice" },
      { "name: a\ntype: user\n---\n\n  \n", "x.prompt:3: no content after '---'" },
      { "name: a\ntype: user\n---\nx {{stable}}", "x.prompt:4: {{stable}} must be a line of its own" },
      { "name: a\ntype: user\nname: b\n---\nx", "x.prompt:3: 'name' is given twice" },
    }
    for _, c in ipairs(cases) do
      local t, err = bad(c[1])
      assert.is_nil(t, c[2])
      assert.are.equal(c[2], err)
    end

    put(tmp .. "/err_good.prompt", tpl("spec_err_good", "user", "", "fine"))
    put(tmp .. "/err_bad.prompt", "name: spec_err_bad\ntype: usr\n---\nx\n")
    local s = nyx.prompts.sync()
    assert.are.equal("added", mine(s)["err_good.prompt"].action)
    assert.is_nil(mine(s)["err_bad.prompt"])
    assert.are.same({ tmp .. "/err_bad.prompt:2: type 'usr' is not system, user or assistant" }, s.errors)
    assert.are.equal(0, count("spec_err_bad"))
    os.remove(tmp .. "/err_bad.prompt")
  end)

  it("says so on stderr once per bad version of a file, never crashing", function()
    local dir = H.tmpdir()
    put(dir .. "/ok.prompt", tpl("spec_stderr_ok", "user", "", "fine"))
    put(dir .. "/bad.prompt", "name: spec_stderr_bad\ntype: user\nvariables: x\n---\nno x here\n")
    local script = H.write(dir .. "/run.lua", ([[
      nyx.hot.interval = 0
      table.insert(nyx.prompts.path, %q)
      nyx.prompts.sync()
      nyx.prompts.sync()
      print(nyx.prompts.get("spec_stderr_ok").version, (nyx.prompts.get("spec_stderr_bad")))
    ]]):format(dir))
    local r = H.nyx({ script }, { env = H.env_for(dbname) })
    H.rmdir(dir)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("1\tnil\n", r.out)
    assert.are.equal(("nyx: prompt template skipped: %s/bad.prompt:3: variable 'x' is declared but the content never uses {{x}}\n")
                     :format(dir), r.err)
  end)

  it("keys versions NAME@N: new, unchanged, changed, reverted", function()
    local f = tmp .. "/ver.prompt"
    put(f, tpl("spec_ver", "user", "goal", "First: {{goal}}"))
    local s = nyx.prompts.sync()
    assert.are.same({ file = f, name = "spec_ver", version = 1, action = "added" }, mine(s)["ver.prompt"])
    local row = nyx.db.query("SELECT * FROM prompt_templates WHERE name = 'spec_ver@1'")[1]
    assert.are.same({ 1, true, "user", { "goal" }, "First: {{goal}}", "file:" .. f },
                    { row.version, row.is_active, row.template_type, row.variables, row.content, row.created_by })

    s = nyx.prompts.sync() -- unchanged: nothing
    assert.are.equal("unchanged", mine(s)["ver.prompt"].action)
    put(f, tpl("spec_ver", "user", "goal", "First: {{goal}}")) -- touched, same content
    s = nyx.prompts.sync()
    assert.are.equal("unchanged", mine(s)["ver.prompt"].action)
    assert.are.equal(1, count("spec_ver"))

    put(f, tpl("spec_ver", "user", "goal", "Second: {{goal}}"))
    s = nyx.prompts.sync()
    assert.are.same({ file = f, name = "spec_ver", version = 2, action = "changed" }, mine(s)["ver.prompt"])
    assert.are.same({ 2 }, active_versions("spec_ver"))
    assert.are.equal("First: {{goal}}", nyx.prompts.get("spec_ver", 1).content) -- kept
    assert.is_false(nyx.prompts.get("spec_ver", 1).is_active)
    assert.are.equal(2, nyx.prompts.get("spec_ver").version)

    put(f, tpl("spec_ver", "user", "goal", "First: {{goal}}")) -- reverted: version 1 again
    s = nyx.prompts.sync()
    assert.are.same({ file = f, name = "spec_ver", version = 1, action = "changed" }, mine(s)["ver.prompt"])
    assert.are.same({ 1 }, active_versions("spec_ver"))
    assert.are.equal(2, count("spec_ver"))

    put(f, tpl("spec_ver", "user", "goal", "First: {{goal}}", "cache: 1h\n")) -- the header counts
    s = nyx.prompts.sync()
    assert.are.equal(3, mine(s)["ver.prompt"].version)
    assert.are.equal("1h", nyx.prompts.get("spec_ver").cache)
  end)

  it("picks up an edit while running, without a sync call", function()
    local f = tmp .. "/live.prompt"
    put(f, tpl("spec_live", "system", "", "one"))
    assert.are.equal("one", nyx.prompts.get("spec_live").content)
    put(f, tpl("spec_live", "system", "", "two"))
    assert.are.equal("two", nyx.prompts.get("spec_live").content)
    assert.are.equal("two", nyx.prompts.render("spec_live").text)
    assert.are.equal(2, nyx.prompts.get("spec_live").version)
  end)

  it("makes variant files of one name active versions that compete", function()
    put(tmp .. "/var_a.prompt", tpl("spec_var", "system", "", "Variant A"))
    put(tmp .. "/var_b.prompt", tpl("spec_var", "system", "", "Variant B"))
    nyx.prompts.sync()
    assert.are.same({ 1, 2 }, active_versions("spec_var"))
    local seen = {}
    for _ = 1, 40 do seen[nyx.prompts.choose("spec_var").content] = true end
    assert.are.same({ ["Variant A"] = true, ["Variant B"] = true }, seen)

    -- B changes: B's old version retires, A's stays
    put(tmp .. "/var_b.prompt", tpl("spec_var", "system", "", "Variant B2"))
    nyx.prompts.sync()
    local a = assert(nyx.prompts.versions("spec_var"))
    assert.are.same({ { 1, true, "Variant A" }, { 2, false, "Variant B" }, { 3, true, "Variant B2" } },
                    { { a[1].version, a[1].is_active, a[1].content }, { a[2].version, a[2].is_active, a[2].content },
                      { a[3].version, a[3].is_active, a[3].content } })

    -- B becomes A's twin: no new row, B's version retires, A's is shared
    put(tmp .. "/var_b.prompt", tpl("spec_var", "system", "", "Variant A"))
    nyx.prompts.sync()
    assert.are.same({ 1 }, active_versions("spec_var"))
    assert.are.equal(3, count("spec_var"))
    -- and B moves on again: the shared version 1 stays active for A
    put(tmp .. "/var_b.prompt", tpl("spec_var", "system", "", "Variant B3"))
    nyx.prompts.sync()
    assert.are.same({ 1, 4 }, active_versions("spec_var"))

    -- by hand
    nyx.prompts.activate("spec_var", 4, false)
    assert.are.same({ 1 }, active_versions("spec_var"))
    nyx.prompts.sync() -- a sync does not undo it: the file has not changed
    assert.are.same({ 1 }, active_versions("spec_var"))
    nyx.prompts.activate("spec_var", 2)
    assert.are.same({ 1, 2 }, active_versions("spec_var"))
    assert.has_error(function() nyx.prompts.activate("spec_var", 99) end, "no prompt 'spec_var' version 99")
    for _ = 1, 20 do assert.are_not.equal(4, nyx.prompts.choose("spec_var").version) end
  end)

  it("says which name has no active version, and where it looked", function()
    local ok, err = pcall(nyx.prompts.choose, "spec_nothing")
    assert.is_false(ok)
    assert.matches("prompt 'spec_nothing' has no active version %(templates are read from: .*" ..
                   tmp:gsub("%p", "%%%0") .. "%)", err)
    local v, why = nyx.prompts.get("spec_nothing")
    assert.is_nil(v)
    assert.matches("^prompt 'spec_nothing' has no active version", why)
  end)

  it("renders: substitution, exact errors, braces in values, the stable prefix", function()
    put(tmp .. "/render.prompt", tpl("spec_render", "user", "goal, depth",
        "You are careful.\nRules apply.\n{{stable}}\nGoal: {{goal}}\nDEPTH: {{depth}}", "cache: 1h\n"))
    local v = nyx.prompts.choose("spec_render")
    local r = nyx.prompts.render(v, { goal = "a {{depth}} %1 goal", depth = 2 })
    assert.are.equal("You are careful.\nRules apply.\nGoal: a {{depth}} %1 goal\nDEPTH: 2", r.text)
    assert.are.equal("You are careful.\nRules apply.\n", r.prefix)
    assert.are.equal("Goal: a {{depth}} %1 goal\nDEPTH: 2", r.rest)
    assert.are.same({ { type = "text", text = r.prefix, cache_control = { type = "ephemeral", ttl = "1h" } },
                      { type = "text", text = r.rest } }, r.blocks)
    assert.is_nil(r.system)
    assert.are.same({ id = v.id, name = "spec_render", version = v.version }, r.template)

    local label = ("prompt 'spec_render@%d' (%s/render.prompt)"):format(v.version, tmp)
    local function err_of(vars)
      local ok, e = pcall(nyx.prompts.render, v, vars)
      assert.is_false(ok)
      return e:gsub("^[^:]*:%d+: ", "")
    end
    assert.are.equal(label .. " needs variable 'goal', not given", err_of{ depth = 1 })
    assert.are.equal(label .. " needs variable 'depth', not given", err_of{ goal = "g" })
    assert.are.equal(label .. " does not declare variable 'x' (it declares: goal, depth)",
                     err_of{ goal = "g", depth = 1, x = 1 })
    assert.are.equal(label .. ": variable 'goal' must be a string or a number, not a table",
                     err_of{ goal = {}, depth = 1 })

    -- a system template without the marker is stable in full; by name
    put(tmp .. "/render_sys.prompt", tpl("spec_render_sys", "system", "", "Be brief."))
    r = nyx.prompts.render("spec_render_sys")
    assert.are.same({ { type = "text", text = "Be brief.", cache_control = { type = "ephemeral" } } }, r.system)
    assert.are.same(r.system, r.blocks)
    assert.are.same({ "Be brief.", "Be brief.", "" }, { r.text, r.prefix, r.rest })
    local ok, e = pcall(nyx.prompts.render, "spec_render_sys", { goal = 1 })
    assert.is_false(ok)
    assert.are.equal(("prompt 'spec_render_sys@1' (%s/render_sys.prompt) does not declare variable 'goal' (it declares: none)")
                     :format(tmp), (e:gsub("^[^:]*:%d+: ", "")))

    -- a user template without it has no cached prefix
    put(tmp .. "/render_user.prompt", tpl("spec_render_user", "user", "q", "Q: {{q}}"))
    r = nyx.prompts.render("spec_render_user", { q = 42 })
    assert.are.same({ { type = "text", text = "Q: 42" } }, r.blocks)
    assert.is_nil(r.prefix)
    assert.is_nil(r.system)
  end)

  it("records outcomes: usage_count and the mean score, rounded once", function()
    put(tmp .. "/rec.prompt", tpl("spec_rec", "user", "", "x"))
    local v = nyx.prompts.get("spec_rec")
    local scores, sum = { 1, 0, 0.5, 1 / 3, 1 / 3, 2, -1, true, false, 0.123456 }, 0
    for i, s in ipairs(scores) do
      local c = s == true and 1 or s == false and 0 or math.min(math.max(s, 0), 1)
      sum = sum + c
      local n, rate = nyx.prompts.record(i % 2 == 0 and v or v.id, s)
      assert.are.equal(i, n)
      assert.are.equal(math.floor(sum / i * 10000 + 0.5) / 10000, rate)
    end
    local g = nyx.prompts.get("spec_rec")
    assert.are.equal(#scores, g.usage_count)
    assert.are.equal(math.floor(sum / #scores * 10000 + 0.5) / 10000, g.success_rate)
    local st = nyx.db.query("SELECT uses, success_sum FROM prompt_template_stats WHERE template_id = $1", v.id)[1]
    assert.are.equal(#scores, st.uses)
    assert.is_true(math.abs(st.success_sum - sum) < 1e-12)
    -- a render result names its version
    nyx.prompts.record(nyx.prompts.render("spec_rec"), 1)
    assert.are.equal(#scores + 1, nyx.prompts.get("spec_rec").usage_count)
    assert.has_error(function() nyx.prompts.record(v.id, 0 / 0) end)
    assert.has_error(function() nyx.prompts.record("nope", 1) end)
    assert.has_error(function() nyx.prompts.record(nyx.uuid(), 1) end)
  end)

  it("syncs and records from two processes at once without duplicates or lost updates", function()
    local dir = H.tmpdir()
    local n = 25
    for i = 1, n do put(("%s/c%02d.prompt"):format(dir, i), tpl("spec_conc_" .. i, "user", "", "text " .. i)) end
    put(dir .. "/rec.prompt", tpl("spec_conc_rec", "user", "", "r"))
    local script = H.write(dir .. "/run.lua", ([[
      table.insert(nyx.prompts.path, %q)
      local s = nyx.prompts.sync()
      local added = 0
      for _, f in ipairs(s.files) do
        if f.name:match("^spec_conc_") and f.action == "added" then added = added + 1 end
      end
      local v = nyx.prompts.get("spec_conc_rec")
      for _ = 1, 60 do nyx.prompts.record(v.id, 0.5) end
      print(added, #s.errors)
    ]]):format(dir))
    local nyxcmd = H.quote(H.bin) .. " " .. H.quote(script)
    local r = H.sh(("sh -c %s"):format(H.quote(("%s > %s/a.out 2>&1 & %s > %s/b.out 2>&1 & wait"):format(
      nyxcmd, dir, nyxcmd, dir))), { env = H.env_for(dbname) })
    assert.are.equal(0, r.code, r.err)
    local a = assert(io.open(dir .. "/a.out")):read("a")
    local b = assert(io.open(dir .. "/b.out")):read("a")
    local added_a, err_a = a:match("^(%d+)\t(%d+)\n$")
    local added_b, err_b = b:match("^(%d+)\t(%d+)\n$")
    assert.is_not_nil(added_a, a)
    assert.is_not_nil(added_b, b)
    assert.are.same({ "0", "0" }, { err_a, err_b })
    assert.are.equal(n + 1, tonumber(added_a) + tonumber(added_b)) -- each file added once
    local rows = nyx.db.query([[SELECT count(*) AS n, count(DISTINCT split_part(name, '@', 1)) AS names, max(version) AS v
                                FROM prompt_templates WHERE name LIKE 'spec\_conc\_%']])[1]
    assert.are.same({ n = n + 1, names = n + 1, v = 1 }, rows)
    local files = nyx.db.query("SELECT count(*) AS n FROM prompt_template_files WHERE origin LIKE $1", dir .. "/%")[1].n
    assert.are.equal(n + 1, files)
    local rec = nyx.prompts.get("spec_conc_rec")
    assert.are.same({ 120, 0.5 }, { rec.usage_count, rec.success_rate })
    H.rmdir(dir)
  end)
end)
