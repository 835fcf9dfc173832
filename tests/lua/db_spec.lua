-- nyx.db: parameters in, typed values out, structured errors, transactions.
local H = require "tests.lua.helper"

describe("nyx.db", function()
  local dbname
  setup(function() dbname = H.fresh_db() end)
  teardown(function() H.drop_db(dbname) end)

  before_each(function()
    nyx.db.exec("DROP TABLE IF EXISTS t")
    nyx.db.exec("CREATE TABLE t (id serial PRIMARY KEY, n int, x numeric, b boolean, s text, j jsonb)")
  end)

  it("connects to the database it was given, migrated", function()
    local info = nyx.db.info()
    assert.matches('database "' .. dbname .. '"', info.database, 1, true)
    assert.is_true(info.server_version >= 130000)
    assert.is_false(info.in_transaction)
    -- where it is, enough for a conninfo to a sibling database on the server
    assert.are.equal(dbname, info.dbname)
    local where = nyx.db.query("SELECT current_user AS u, current_setting('port') AS p")[1]
    assert.are.equal(where.u, info.user)
    assert.are.equal(where.p, info.port)
    assert.is_string(info.host)
    local other <close> = nyx.db.open(("host='%s' port=%s user=%s dbname=%s"):format(info.host, info.port, info.user, info.dbname))
    assert.are.equal(info.database, other:info().database)
    assert.are.equal(12, nyx.db.query("SELECT count(*) AS n FROM system_config")[1].n) -- 6 founding, 6 models by role
    for _, m in ipairs(nyx.db.status()) do assert.are.equal("applied", m.state, m.name) end
    assert.are.equal(0, nyx.db.migrate())
  end)

  it("passes values as parameters and returns them typed", function()
    local meta = { name = "x", list = { 1, 2.5, "three" }, nested = { deep = true } }
    nyx.db.exec("INSERT INTO t (n, x, b, s, j) VALUES ($1, $2, $3, $4, $5)", 42, 0.125, true, "it's; -- not SQL", meta)
    local row = nyx.db.query("SELECT * FROM t")[1]
    assert.are.equal(42, row.n)
    assert.are.equal("integer", math.type(row.n))
    assert.are.equal(0.125, row.x)
    assert.is_true(row.b)
    assert.are.equal("it's; -- not SQL", row.s)
    assert.are.same({ name = "x", list = { 1, 2.5, "three" }, nested = { deep = true } }, row.j)
    assert.are.equal("integer", math.type(row.j.list[1]))
    assert.are.equal("float", math.type(row.j.list[2]))
  end)

  it("maps nil to NULL and NULL to nil", function()
    nyx.db.exec("INSERT INTO t (n, s) VALUES ($1, $2)", nil, "only s")
    local row = nyx.db.query("SELECT n, s, j FROM t")[1]
    assert.is_nil(row.n)
    assert.is_nil(row.j)
    assert.are.equal("only s", row.s)
    assert.are.same({ { a = 1 } }, nyx.db.query("SELECT $1::int AS a", 1))
    assert.is_nil(nyx.db.query("SELECT $1::int AS a, $2::text AS b", nil, nil)[1].a)
  end)

  it("round-trips large integers and exact floats", function()
    local r = nyx.db.query("SELECT $1::bigint AS big, $2::float8 AS f, $3::float8 AS third",
                           math.maxinteger, 0.1, 1 / 3)[1]
    assert.are.equal(math.maxinteger, r.big)
    assert.are.equal(0.1, r.f)
    assert.are.equal(1 / 3, r.third)
  end)

  it("returns rows in order and counts affected rows", function()
    for i = 1, 5 do nyx.db.exec("INSERT INTO t (n) VALUES ($1)", i) end
    local rows = nyx.db.query("SELECT n FROM t ORDER BY n DESC")
    assert.are.equal(5, #rows)
    assert.are.equal(5, rows[1].n)
    assert.are.equal(1, rows[5].n)
    assert.are.equal(3, nyx.db.exec("UPDATE t SET s = 'big' WHERE n > $1", 2))
    assert.are.equal(0, nyx.db.exec("UPDATE t SET s = 'none' WHERE n > 100"))
    assert.are.same({}, nyx.db.query("SELECT * FROM t WHERE false"))
  end)

  it("raises structured SQL errors", function()
    nyx.db.exec("CREATE UNIQUE INDEX t_s_unique ON t (s)")
    nyx.db.exec("INSERT INTO t (s) VALUES ($1)", "dup")
    local ok, e = pcall(nyx.db.exec, "INSERT INTO t (s) VALUES ($1)", "dup")
    assert.is_false(ok)
    assert.are.equal("sql", e.type)
    assert.are.equal("23505", e.sqlstate)
    assert.are.equal("t_s_unique", e.constraint)
    assert.are.equal("t", e.table)
    assert.matches("(s)=(dup)", e.detail, 1, true)
    assert.matches("duplicate key value violates unique constraint", tostring(e), 1, true)
    ok, e = pcall(nyx.db.query, "SELECT nope FROM t")
    assert.is_false(ok)
    assert.are.equal("42703", e.sqlstate)
    assert.are.equal(8, e.position)
    ok, e = pcall(nyx.db.query, "SELECT $1::int", "not a number")
    assert.is_false(ok)
    assert.are.equal("22P02", e.sqlstate)
  end)

  it("refuses values that cannot go into SQL", function()
    local ok, e = pcall(nyx.db.query, "SELECT $1", print)
    assert.is_false(ok)
    assert.matches("bad query parameter $1 (function cannot go into SQL", e, 1, true)
    ok, e = pcall(nyx.db.query)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'nyx.db.query' (string expected, got no value)", e, 1, true)
  end)

  it("commits a transaction and rolls it back on error", function()
    local a, b = nyx.db.transaction(function(x, y)
      nyx.db.exec("INSERT INTO t (n) VALUES (1)")
      assert.is_true(nyx.db.info().in_transaction)
      return x + y, "second"
    end, 2, 3)
    assert.are.equal(5, a)
    assert.are.equal("second", b)
    local sentinel = { why = "changed my mind" }
    local ok, e = pcall(nyx.db.transaction, function()
      nyx.db.exec("INSERT INTO t (n) VALUES (2)")
      error(sentinel)
    end)
    assert.is_false(ok)
    assert.are.equal(sentinel, e) -- the error comes back unchanged
    assert.is_false(nyx.db.info().in_transaction)
    assert.are.same({ { n = 1 } }, nyx.db.query("SELECT n FROM t"))
  end)

  it("nests transactions as savepoints", function()
    nyx.db.transaction(function()
      nyx.db.exec("INSERT INTO t (n) VALUES (1)")
      pcall(nyx.db.transaction, function()
        nyx.db.exec("INSERT INTO t (n) VALUES (2)")
        nyx.db.query("SELECT 1/0")
      end)
      nyx.db.transaction(function() nyx.db.exec("INSERT INTO t (n) VALUES (3)") end)
    end)
    assert.are.same({ { n = 1 }, { n = 3 } }, nyx.db.query("SELECT n FROM t ORDER BY n"))
  end)

  it("opens separate connections that close", function()
    local other = nyx.db.open(H.url_for(dbname))
    assert.matches("nyx.db.conn %(database \"" .. dbname, tostring(other))
    other:exec("INSERT INTO t (n) VALUES (9)")
    assert.are.equal(9, nyx.db.query("SELECT n FROM t")[1].n)
    other:close()
    other:close() -- twice is fine
    local ok, e = pcall(other.query, other, "SELECT 1")
    assert.is_false(ok)
    assert.are.equal("connection", e.type)
    assert.matches("closed", e.message)
    do
      local scoped <close> = nyx.db.open(H.url_for(dbname))
      assert.are.equal(1, scoped:query("SELECT 1 AS x")[1].x)
    end
  end)

  it("keeps the database unchanged when a statement fails", function()
    nyx.db.exec("INSERT INTO t (n) VALUES (1)")
    pcall(nyx.db.exec, "INSERT INTO t (n) VALUES (2), ('x')")
    assert.are.same({ { c = 1 } }, nyx.db.query("SELECT count(*) AS c FROM t"))
  end)
end)

describe("nyx.db.log", function()
  local dbname, root
  setup(function()
    dbname = H.fresh_db()
    root = nyx.tree.create{ goal = "log spec" }
  end)
  teardown(function() H.drop_db(dbname) end)

  local COLS = { "thought_tree_id", "agent_type", "agent_class", "status" }
  local function row(tree, class) return { table = "agents", columns = COLS, values = { tree, "task", class, "active" } } end
  local function count(class) return nyx.db.query("SELECT count(*) AS n FROM agents WHERE agent_class = $1", class)[1].n end

  it("commits the rows of many callers, before each returns", function()
    local hs = {}
    for i = 1, 40 do
      hs[i] = nyx.task.spawn(function()
        assert(nyx.db.log{ row(root.id, "batch"), row(root.id, "batch") })
        return count("batch") >= 2 -- its own rows are there already
      end)
    end
    for _, r in ipairs(nyx.task.wait_all(hs)) do
      assert.is_true(r.ok, tostring(r.error))
      assert.is_true(r[1])
    end
    assert.are.equal(80, count("batch"))
  end)

  it("fails only the caller whose row is bad", function()
    local good = nyx.task.spawn(function() return nyx.db.log{ row(root.id, "good") } end)
    local bad = nyx.task.spawn(function() return nyx.db.log{ row(root.id, "bad-first"), row(nyx.uuid(), "bad") } end)
    local also = nyx.task.spawn(function() return nyx.db.log{ row(root.id, "good") } end)
    local rs = nyx.task.wait_all{ good, bad, also }
    assert.is_true(rs[1].ok)
    assert.is_true(rs[3].ok)
    assert.is_false(rs[2].ok)
    assert.are.equal("log", rs[2].error.type)
    assert.matches("violates foreign key constraint", rs[2].error.message)
    assert.are.equal(2, count("good"))
    assert.are.equal(0, count("bad-first")) -- a caller's rows go in together or not at all
  end)

  it("writes every kind of value exactly, and keeps the columns' limits", function()
    local odd = { 'say "hi"', "back\\slash", "{braces},commas", "NULL", "", "  spaced  ", "é ✓\nline" }
    local hs = {}
    for i, class in ipairs(odd) do
      hs[i] = nyx.task.spawn(function()
        return nyx.db.log{ { table = "agents", columns = { "thought_tree_id", "agent_type", "agent_class", "status",
          "max_recursion_depth", "context", "state" },
          values = { root.id, "task", class, "active", i, { quote = '"', list = { 1, 2.5, true } },
                     nyx.core.json_raw('{"raw": "json \\" text"}') } } }
      end)
    end
    hs[#hs + 1] = nyx.task.spawn(function()
      return nyx.db.log{ { table = "agents", columns = { "thought_tree_id", "agent_type", "agent_class", "status", "context" },
        values = { root.id, "task", "nulls", "active", nyx.json.null } } }
    end)
    for _, r in ipairs(nyx.task.wait_all(hs)) do assert.is_true(r.ok, tostring(r.error)) end
    for i, class in ipairs(odd) do
      local got = nyx.db.query("SELECT max_recursion_depth AS d, context, state FROM agents WHERE agent_class = $1", class)
      assert.are.equal(1, #got)
      assert.are.equal(i, got[1].d)
      assert.are.same({ quote = '"', list = { 1, 2.5, true } }, got[1].context)
      assert.are.same({ raw = 'json " text' }, got[1].state)
    end
    local nulls = nyx.db.query("SELECT context IS NULL AS n FROM agents WHERE agent_class = 'nulls'")
    assert.is_true(nulls[1].n)
    local ok, err = pcall(nyx.db.log, { { table = "agents", columns = COLS, values = { root.id, "task", ("x"):rep(101), "active" } } })
    assert.is_false(ok)
    assert.are.equal("log", err.type)
    assert.matches("too long", err.message)
  end)

  it("updates rows, folding an update into an insert of the same batch, and need not wait", function()
    local id = nyx.uuid()
    local cols = { "id", "thought_tree_id", "agent_type", "agent_class", "status" }
    -- all queued in one turn: one batch, where the insert and both updates fold
    assert.is_true(nyx.db.log({ { table = "agents", columns = cols, values = { id, root.id, "task", "folded", "spawned" } } }, { wait = false }))
    nyx.db.log({ { table = "agents", update = true, columns = { "id", "status", "state" }, values = { id, "active", { step = 1 } } } }, { wait = false })
    local h = nyx.task.spawn(function()
      return nyx.db.log({ { table = "agents", update = true, columns = { "id", "completed_at" }, values = { id, "2026-01-02T03:04:05Z" } } })
    end)
    assert.is_true(select(2, h:wait()))
    local r = nyx.db.query("SELECT status, state, completed_at FROM agents WHERE id = $1", id)[1]
    assert.are.same({ "active", { step = 1 } }, { r.status, r.state })
    assert.matches("^2026%-01%-02", r.completed_at)
    -- an update of a committed row, then a flush
    nyx.db.log({ { table = "agents", update = true, columns = { "id", "status", "completed_at" }, values = { id, "completed" } } }, { wait = false })
    nyx.db.flush()
    r = nyx.db.query("SELECT status, completed_at FROM agents WHERE id = $1", id)[1]
    assert.are.equal("completed", r.status)
    assert.is_nil(r.completed_at) -- a hole sets NULL
    -- a failing row nobody waits for: one line, and nyx goes on
    local res = H.nyx({ "-e", ([[nyx.db.connect(%q)
      nyx.db.log({ { table = "agents", update = true, columns = { "id", "status" }, values = { %q, "bogus" } } }, { wait = false })
      print("went on")]]):format(H.url_for(dbname), id) }, { env = { NYX_OFFLINE = "1" } })
    assert.are.equal(0, res.code, res.err)
    assert.are.equal("went on\n", res.out)
    assert.matches("nyx: log rows were not written: .*agents_status_check", res.err)
  end)

  it("folds many rows widened alike, each with its own values", function()
    local cols, ucols = { "id", "thought_tree_id", "agent_type", "agent_class", "status" }, { "id", "status", "state" }
    local ids = {}
    for i = 1, 5 do
      ids[i] = nyx.uuid()
      nyx.db.log({ { table = "agents", columns = cols, values = { ids[i], root.id, "task", "alike", "spawned" } } }, { wait = false })
    end
    for i = 1, 5 do
      nyx.db.log({ { table = "agents", update = true, columns = ucols, values = { ids[i], "active", { n = i } } } }, { wait = false })
    end
    nyx.db.flush()
    for i = 1, 5 do
      local r = nyx.db.query("SELECT status, state FROM agents WHERE id = $1", ids[i])[1]
      assert.are.same({ "active", { n = i } }, { r.status, r.state })
    end
  end)

  it("takes one caller's rows beyond a batch's 60,000 values, alone and atomically, between other callers", function()
    local big = {}
    for i = 1, 20000 do big[i] = row(root.id, "big") end -- 80,000 values
    local hs = {}
    hs[1] = nyx.task.spawn(function() return nyx.db.log{ row(root.id, "around") } end)
    hs[2] = nyx.task.spawn(function() return nyx.db.log(big) end)
    hs[3] = nyx.task.spawn(function() return nyx.db.log{ row(root.id, "around") } end)
    local bad = {}
    for i = 1, 20000 do bad[i] = row(root.id, "big-bad") end
    bad[20001] = row(nyx.uuid(), "big-bad") -- one bad row: none of the caller's rows go in
    hs[4] = nyx.task.spawn(function() return nyx.db.log(bad) end)
    local rs = nyx.task.wait_all(hs)
    for i = 1, 3 do assert.is_true(rs[i].ok, tostring(rs[i].error)) end
    assert.is_false(rs[4].ok)
    assert.matches("violates foreign key constraint", rs[4].error.message)
    assert.are.equal(20000, count("big"))
    assert.are.equal(2, count("around"))
    assert.are.equal(0, count("big-bad"))
  end)

  it("works outside a task too, and refuses empty rows", function()
    local ok = nyx.task.spawn(function() return true end) -- keep the scheduler honest
    assert.is_true(nyx.db.log{ row(root.id, "direct") })
    assert.are.equal(1, count("direct"))
    assert.has_error(function() nyx.db.log{} end)
    ok:wait()
  end)

  describe("with a slow batch on lane 0", function()
    setup(function()
      -- a table whose inserts take 2 s holds lane 0 in its batch
      nyx.db.exec("CREATE TABLE slow_rows (id uuid PRIMARY KEY)")
      nyx.db.exec([[CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN PERFORM pg_sleep(2); RETURN NEW; END$$]])
      nyx.db.exec("CREATE TRIGGER slow_rows_insert BEFORE INSERT ON slow_rows FOR EACH ROW EXECUTE FUNCTION slow_insert()")
    end)
    local function slow_row() return { table = "slow_rows", columns = { "id" }, values = { nyx.uuid() } } end
    local function slow_count() return nyx.db.query("SELECT count(*) AS n FROM slow_rows")[1].n end

    it("commits append rows on lane 1 meanwhile, and flush waits for both lanes", function()
      local before = slow_count()
      local slow = nyx.task.spawn(function() return nyx.db.log({ slow_row() }, { append = true }) end)
      nyx.task.sleep(0.05) -- its batch is sent
      local committed = {}
      local hs = {}
      for i = 1, 10 do
        hs[i] = nyx.task.spawn(function()
          assert(nyx.db.log({ row(root.id, "append") }, { append = true }))
          committed[i] = slow_count() -- committed, while lane 0 still sleeps in its trigger
        end)
      end
      local lane1 = nyx.db.log_stats().lane1_batches
      for _, r in ipairs(nyx.task.wait_all(hs)) do assert.is_true(r.ok, tostring(r.error)) end
      assert.is_true(nyx.db.log_stats().lane1_batches > lane1)
      assert.are.equal(10, count("append"))
      for i = 1, 10 do assert.are.equal(before, committed[i]) end
      -- a flush returns once lane 0 is done too
      nyx.db.log({ row(root.id, "append-last") }, { wait = false, append = true })
      nyx.db.flush()
      assert.are.equal(before + 1, slow_count())
      assert.are.equal(1, count("append-last"))
      assert.is_true(slow:wait())
    end)

    it("log_drain waits while more values than asked wait for a batch, and goes on once the writer takes them", function()
      local before = slow_count()
      local slow = { nyx.task.spawn(function() return nyx.db.log({ slow_row() }) end) }
      nyx.task.sleep(0.05) -- lane 0 is in a slow batch
      slow[2] = nyx.task.spawn(function() return nyx.db.log({ slow_row() }) end)
      nyx.task.sleep(0.05) -- and lane 1, beside it
      assert.are.equal(0, nyx.db.log_backlog())
      for _ = 1, 5 do nyx.db.log({ row(root.id, "backlog") }, { wait = false }) end
      local backlog = nyx.db.log_backlog()
      assert.are.equal(20, backlog) -- 5 rows of 4 values wait
      local t0 = nyx.core.now()
      nyx.db.log_drain(backlog) -- no more than that waits: at once
      assert.is_true(nyx.core.now() - t0 < 0.5)
      local d = nyx.task.spawn(function()
        nyx.db.log_drain(0)
        return nyx.core.now() - t0, nyx.db.log_backlog(), slow_count()
      end)
      local ok, waited, left, slow_then = d:wait()
      assert.is_true(ok)
      assert.is_true(waited > 1.5, "log_drain returned after " .. waited .. " s") -- when a slow batch was done
      assert.are.equal(0, left)
      assert.is_true(slow_then > before)
      for _, h in ipairs(slow) do assert.is_true(h:wait()) end
      nyx.db.flush()
      assert.are.equal(5, count("backlog"))
    end)

    it("writes rows beside lane 0's batch when they touch nothing it writes; an update of a row it inserts waits", function()
      local before, x = slow_count(), nyx.uuid()
      local with_id = { "id", "thought_tree_id", "agent_type", "agent_class", "status" }
      local slow = nyx.task.spawn(function()
        return nyx.db.log{ slow_row(), { table = "agents", columns = with_id, values = { x, root.id, "task", "held", "active" } } }
      end)
      nyx.task.sleep(0.05) -- lane 0 sleeps in its batch
      -- refers to the same node as lane 0's agent, writes its own row: beside it
      assert.is_true(nyx.db.log{ { table = "agents", columns = with_id, values = { nyx.uuid(), root.id, "task", "beside", "active" } } })
      assert.are.equal(before, slow_count()) -- lane 0 has not committed yet
      assert.are.equal(1, count("beside"))
      -- x is lane 0's, not committed: an update beside it would find no row
      assert.is_true(nyx.db.log{ { table = "agents", update = true, columns = { "id", "status" }, values = { x, "completed" } } })
      assert.are.equal(before + 1, slow_count())
      assert.are.equal("completed", nyx.db.query("SELECT status FROM agents WHERE id = $1", x)[1].status)
      assert.is_true(slow:wait())
    end)

    it("keeps append rows off lane 1 while lane 0 writes other rows: their keys may point there", function()
      -- lane 0's slow batch inserts an agent; an append row naming it as
      -- its spawner is logged meanwhile: on lane 1 its foreign key check
      -- would not see the uncommitted agent and fail
      local parent = nyx.uuid()
      local slow = nyx.task.spawn(function()
        return nyx.db.log{ slow_row(), { table = "agents", columns = { "id", "thought_tree_id", "agent_type", "agent_class", "status" },
                                         values = { parent, root.id, "task", "parent", "active" } } }
      end)
      nyx.task.sleep(0.05)
      local ok, err = pcall(nyx.db.log, { { table = "agents", columns = { "thought_tree_id", "agent_type", "agent_class", "status", "spawned_by" },
                                            values = { root.id, "task", "child", "active", parent } } }, { append = true })
      assert.is_true(ok, tostring(type(err) == "table" and err.message or err))
      assert.is_true(slow:wait())
      assert.are.equal(1, count("child"))
    end)
  end)

  it("shares a long queue between the two lanes, keeping rows that depend on each other on one", function()
    nyx.db.flush()
    local s0 = nyx.db.log_stats()
    local parents = {}
    local with_id = { "id", "thought_tree_id", "agent_type", "agent_class", "status" }
    -- queued in one turn, more values than one lane takes alone: each
    -- child names its parent, and each parent is updated after its child
    for i = 1, 200 do
      parents[i] = nyx.uuid()
      nyx.db.log({ { table = "agents", columns = with_id, values = { parents[i], root.id, "task", "split-parent", "active" } } }, { wait = false })
      nyx.db.log({ { table = "agents", columns = { "id", "thought_tree_id", "agent_type", "agent_class", "status", "spawned_by" },
                     values = { nyx.uuid(), root.id, "task", "split-child", "active", parents[i] } } }, { wait = false })
      nyx.db.log({ { table = "agents", update = true, columns = { "id", "status" }, values = { parents[i], "completed" } } }, { wait = false })
    end
    nyx.db.flush()
    local s1 = nyx.db.log_stats()
    assert.is_true(s1.lane1_batches > s0.lane1_batches)
    assert.are.equal(200, count("split-child"))
    assert.are.equal(200, nyx.db.query([[SELECT count(*) AS n FROM agents
      WHERE agent_class = 'split-parent' AND status = 'completed']])[1].n)
  end)

  it("ends with every row as last logged, whatever the lanes did with a random mix of dependent rows", function()
    nyx.db.flush()
    math.randomseed(5)
    local s0 = nyx.db.log_stats()
    local with_id = { "id", "thought_tree_id", "agent_type", "agent_class", "status", "spawned_by" }
    local statuses = { "spawned", "active", "completed", "failed", "terminated" }
    local ids, expect = {}, {}
    for round = 1, 60 do
      -- one loop turn's worth: new agents (each naming an earlier one as its
      -- spawner), and updates of agents new or old, queued in order
      for _ = 1, math.random(5, 120) do
        if #ids < 600 and (#ids < 5 or math.random() < 0.4) then
          local id, parent = nyx.uuid(), ids[math.random(math.max(1, #ids))]
          ids[#ids + 1] = id
          expect[id] = { "spawned", nil }
          nyx.db.log({ { table = "agents", columns = with_id, values = { id, root.id, "task", "stress", "spawned", parent } } }, { wait = false })
        else
          local id = ids[math.random(#ids)]
          local st = statuses[math.random(#statuses)]
          expect[id] = { st, round }
          nyx.db.log({ { table = "agents", update = true, columns = { "id", "status", "state" }, values = { id, st, { round = round } } } }, { wait = false })
        end
      end
      nyx.task.sleep(0) -- a batch goes; what comes next may depend on it
    end
    nyx.db.flush()
    local got = {}
    for _, r in ipairs(nyx.db.query("SELECT id, status, state FROM agents WHERE agent_class = 'stress'")) do got[r.id] = r end
    local n = 0
    for id, e in pairs(expect) do
      n = n + 1
      local r = got[id]
      assert.is_not_nil(r, "missing agent " .. id)
      assert.are.equal(e[1], r.status, id)
      assert.are.equal(e[2], r.state and r.state.round, id)
    end
    assert.are.equal(#ids, n)
    assert.is_true(nyx.db.log_stats().lane1_batches > s0.lane1_batches)
  end)

  it("counts what it wrote: batches, lane 1's, and row versions, folded rows once", function()
    nyx.db.flush()
    local s0 = nyx.db.log_stats()
    local id = nyx.uuid()
    -- inserted, then updated twice in the same batch: one row version
    nyx.db.log({ { table = "agents", columns = { "id", "thought_tree_id", "agent_type", "agent_class", "status" },
                   values = { id, root.id, "task", "counted", "spawned" } } }, { wait = false })
    nyx.db.log({ { table = "agents", update = true, columns = { "id", "status" }, values = { id, "active" } } }, { wait = false })
    nyx.db.log{ { table = "agents", update = true, columns = { "id", "status" }, values = { id, "completed" } } }
    local s1 = nyx.db.log_stats()
    assert.are.same({ 1, 0, 1, 0 }, { s1.batches - s0.batches, s1.lane1_batches - s0.lane1_batches,
                                      s1.inserted - s0.inserted, s1.updated - s0.updated })
    -- an update in a later batch is a version of its own
    nyx.db.log{ { table = "agents", update = true, columns = { "id", "status" }, values = { id, "failed" } } }
    local s2 = nyx.db.log_stats()
    assert.are.same({ 1, 0, 1 }, { s2.batches - s1.batches, s2.inserted - s1.inserted, s2.updated - s1.updated })
    assert.are.equal("failed", nyx.db.query("SELECT status FROM agents WHERE id = $1", id)[1].status)
  end)

  it("prepares a batch's statement the second time its text comes, and recovers from one that cannot be prepared", function()
    local function agent(class)
      -- columns in an order no other test uses: a text new to the writer
      return { table = "agents", columns = { "agent_class", "status", "agent_type", "thought_tree_id" },
               values = { class, "active", "task", root.id } }
    end
    local s0 = nyx.db.log_stats()
    for i = 1, 3 do assert.is_true(nyx.db.log{ agent("prep-" .. i) }) end
    local s1 = nyx.db.log_stats()
    -- the first goes as text, the second prepares it, the third reuses it
    assert.are.same({ 3, 2 }, { s1.batches - s0.batches, s1.prepared_batches - s0.prepared_batches })
    assert.are.equal(3, nyx.db.query("SELECT count(*) AS n FROM agents WHERE agent_class LIKE 'prep-%'")[1].n)
    -- a text that cannot be prepared (no such column) fails its caller
    -- every time, and the statements after it still go
    local bad = { table = "agents", columns = { "thought_tree_id", "no_such_column" }, values = { root.id, 1 } }
    for _ = 1, 3 do
      local ok, err = pcall(nyx.db.log, { bad })
      assert.is_false(ok)
      assert.matches("no_such_column", tostring(type(err) == "table" and err.message or err))
    end
    assert.is_true(nyx.db.log{ agent("prep-4") })
    -- a prepared statement whose rows break a constraint fails its caller
    -- alone, and stays usable
    local wrong = agent("prep-5")
    wrong.values[4] = nyx.uuid() -- no such node
    local hs = {
      nyx.task.spawn(function() return nyx.db.log{ agent("prep-6") } end),
      nyx.task.spawn(function() return nyx.db.log{ wrong } end),
    }
    local rs = nyx.task.wait_all(hs)
    assert.is_true(rs[1].ok and rs[1][1], tostring(rs[1].error))
    assert.is_false(rs[2].ok)
    assert.is_true(nyx.db.log{ agent("prep-7") })
    assert.are.equal(6, nyx.db.query("SELECT count(*) AS n FROM agents WHERE agent_class LIKE 'prep-%'")[1].n)
  end)

  it("sends a known table's rows as one array per column, and a table made since as JSON", function()
    assert.is_true(nyx.db.log{ { table = "agents", columns = COLS, values = { root.id, "task", "arrays", "active" } } })
    local id = nyx.uuid()
    local sql, params = nyx.db.log_statement{ { table = "agents", columns = { "id", "context", "agent_class" },
                                                values = { id, { a = 'say "hi"' }, "x,y" } } }
    assert.matches("FROM unnest%(%$1::uuid%[%], %$2::jsonb%[%], %$3::character varying%[%]%) v%(id,context,agent_class%)", sql)
    assert.are.same({ "{\"" .. id .. "\"}", [[{"{\"a\":\"say \\\"hi\\\"\"}"}]], [[{"x,y"}]] }, params)
    nyx.db.exec("CREATE TABLE made_later (id uuid PRIMARY KEY, note text, tags jsonb, n float8, ok boolean)")
    sql, params = nyx.db.log_statement{ { table = "made_later", columns = { "id", "note", "n" }, values = { id, "x" } } }
    assert.matches("json_populate_recordset%(NULL::made_later, %$1%)", sql)
    assert.are.same({ ('[{"id":"%s","note":"x"}]'):format(id) }, params) -- a hole is left out: NULL
    assert.is_true(nyx.db.log{ { table = "made_later", columns = { "id", "note", "tags", "n", "ok" },
                                 values = { id, 'say "hi"\n', { "a" }, 0 / 0, false } } })
    local got = nyx.db.query("SELECT note, tags, n::text AS n, ok FROM made_later WHERE id = $1", id)[1]
    assert.are.same({ 'say "hi"\n', { "a" }, "NaN", false }, { got.note, got.tags, got.n, got.ok })
    -- NaN and Infinity in a JSONB column: JSON has no such numbers, so
    -- they go as strings (on both paths, arrays and JSON rows)
    local aid = nyx.uuid()
    assert.is_true(nyx.db.log{
      { table = "agents", columns = { "id", "thought_tree_id", "agent_type", "agent_class", "status", "context", "state" },
        values = { aid, root.id, "task", "not-numbers", "active", 1 / 0, 0 / 0 } },
      { table = "made_later", columns = { "id", "tags" }, values = { nyx.uuid(), -1 / 0 } },
    })
    local a = nyx.db.query("SELECT context, state FROM agents WHERE id = $1", aid)[1]
    assert.are.same({ "Infinity", "NaN" }, { a.context, a.state })
  end)

  it("writes values as PostgreSQL array elements, every quote and backslash escaped, JSON as JSON", function()
    -- a reference quoting, against random text dense in what needs escaping
    -- (runs of every length around the eight-byte steps of the scan)
    local function quoted(s) return '"' .. s:gsub('[\\"]', function(c) return "\\" .. c end) .. '"' end
    local alphabet = { "a", '"', "\\", " ", "{", ",", "\n", "é", "12345678" }
    math.randomseed(11)
    for _ = 1, 3000 do
      local t = {}
      for i = 1, math.random(0, 30) do t[i] = alphabet[math.random(#alphabet)] end
      local s = table.concat(t)
      local _, params = nyx.db.log_statement{ { table = "agents", columns = { "agent_class" }, values = { s } } }
      assert.are.equal("{" .. quoted(s) .. "}", params[1])
    end
    -- a JSONB column: a table as its JSON, a string as a JSON string, a
    -- boolean as JSON's; holes and nyx.json.null are NULL
    local _, params = nyx.db.log_statement{
      { table = "agents", columns = { "agent_class", "context", "max_recursion_depth" }, values = { "x", { k = 'v"' }, 2 } },
      { table = "agents", columns = { "agent_class", "context", "max_recursion_depth" }, values = { nil, 'a "b"', nyx.json.null } },
      { table = "agents", columns = { "agent_class", "context", "max_recursion_depth" }, values = { true, false, 2.5 } },
    }
    assert.are.same({ '{"x",NULL,t}', [[{"{\"k\":\"v\\\"\"}","\"a \\\"b\\\"\"",false}]], "{2,NULL,2.5}" }, params)
    -- a table the writer's catalog does not know: JSON rows, holes left out
    nyx.db.exec("CREATE TABLE json_rows_made_later (id text, note text, obj jsonb, n float8)")
    _, params = nyx.db.log_statement{
      { table = "json_rows_made_later", columns = { "id", "note", "n", "obj" }, values = { "a", 'x"', 1, { k = true } } },
      { table = "json_rows_made_later", columns = { "id", "note", "n", "obj" }, values = { "b", nil, 2.5 } },
      { table = "json_rows_made_later", columns = { "id", "note", "n", "obj" }, values = {} },
    }
    -- made since the writer read its catalog: it goes as JSON
    assert.are.same({ { id = "a", note = 'x"', n = 1, obj = { k = true } }, { id = "b", n = 2.5 }, {} },
                    nyx.core.json_decode(params[1]))
  end)

  it("folds an update into the insert before it in one statement, widening its columns", function()
    local id = nyx.uuid()
    local sql, params = nyx.db.log_statement{
      { table = "agents", columns = { "id", "thought_tree_id", "status" }, values = { id, root.id, "spawned" } },
      { table = "agents", update = true, columns = { "id", "status", "state" }, values = { id, "active", { n = 1 } } },
      { table = "agents", update = true, columns = { "id", "completed_at" }, values = { nyx.uuid(), "2026-01-01T00:00:00Z" } },
    }
    assert.matches("^WITH g1 AS %(INSERT INTO agents %(id,thought_tree_id,status,state%) SELECT", sql)
    assert.matches("RETURNING 1%) UPDATE agents t SET completed_at = v.completed_at FROM unnest", sql)
    assert.are.equal([[{"active"}]], params[3])
    assert.are.equal([[{"{\"n\":1}"}]], params[4])
    assert.are.equal(6, #params)
  end)

  it("takes the rows as they are when logged: changing their tables after does not change what is written", function()
    local id = nyx.uuid()
    local state = { step = 1 }
    local logged = { table = "agents", columns = { "id", "thought_tree_id", "agent_type", "agent_class", "status", "state" },
                     values = { id, root.id, "task", "as-logged", "active", state } }
    nyx.db.log({ logged }, { wait = false })
    state.step, logged.values[5] = 2, "completed"
    nyx.db.flush()
    local r = nyx.db.query("SELECT status, state FROM agents WHERE id = $1", id)[1]
    assert.are.same({ "active", { step = 1 } }, { r.status, r.state })
  end)

  it("refuses a row that is not well made at the call, saying which, and queues none of the caller's rows", function()
    local function refused(rows, pattern)
      local ok, err = pcall(nyx.db.log, rows, { wait = false })
      assert.is_false(ok)
      assert.matches(pattern, tostring(err))
    end
    local good = row(root.id, "never")
    refused({ good, { table = "Agents; DROP", columns = COLS, values = {} } }, "row 2: its table is not a lowercase SQL name")
    refused({ good, { table = "agents", columns = { "id", "bad name" }, values = {} } }, "row 2: column 2 is not a lowercase SQL name")
    refused({ { table = "agents", columns = COLS } }, "row 1 has no values")
    refused({ { table = "agents", columns = {}, values = {} } }, "row 1 has no columns")
    refused({ good, { table = "agents", columns = COLS, values = { root.id, "task", print } } },
            "row 2, column agent_class: a function cannot be logged")
    refused({ { table = "agents", update = true, columns = { "id" }, values = { nyx.uuid() } } }, "an update names its key column")
    refused({ { table = "agents", columns = { "id", "context" }, values = { nyx.uuid(), { f = print } } } }, "cannot encode JSON")
    refused({ good, { table = "agents", columns = COLS, values = { root.id, "task", "nul\0byte" } } },
            "row 2, column agent_class: a string with a NUL byte")
    refused({ good, false, good }, "row 2 is not a table")
    local wide = {}
    for i = 1, 1601 do wide[i] = "c" .. i end
    refused({ { table = "agents", columns = wide, values = {} } }, "row 1 has more than 1600 columns")
    nyx.db.flush()
    assert.are.equal(0, count("never"))
  end)

  it("reads a columns list again when it has grown or shrunk since it was logged with", function()
    local cols = { "id", "thought_tree_id", "agent_type", "agent_class", "status", "max_recursion_depth" }
    local ids = { nyx.uuid(), nyx.uuid(), nyx.uuid() }
    assert.is_true(nyx.db.log{ { table = "agents", columns = cols, values = { ids[1], root.id, "task", "regrown", "active", 7 } } })
    cols[7] = "current_recursion_depth"
    assert.is_true(nyx.db.log{ { table = "agents", columns = cols, values = { ids[2], root.id, "task", "regrown", "active", 7, 3 } } })
    cols[7], cols[6] = nil, nil -- max_recursion_depth takes its default
    assert.is_true(nyx.db.log{ { table = "agents", columns = cols, values = { ids[3], root.id, "task", "regrown", "active" } } })
    local got = {}
    for i, id in ipairs(ids) do
      local r = nyx.db.query("SELECT max_recursion_depth AS m, current_recursion_depth AS c FROM agents WHERE id = $1", id)[1]
      got[i] = { r.m, r.c }
    end
    assert.are.same({ { 7, 0 }, { 7, 3 }, { 5, 0 } }, got)
  end)

  it("refuses update rows as append rows", function()
    local err = select(2, pcall(nyx.db.log, { { table = "agents", update = true, columns = { "id", "status" },
      values = { nyx.uuid(), "completed" } } }, { append = true }))
    assert.matches("append rows are inserts only", tostring(err))
  end)
end)
