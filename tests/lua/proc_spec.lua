-- nyx.proc: child processes on the event loop. The spec runs inside a task
-- (nyx runs every script as one), so runs yield and can run side by side.
-- Timing bounds are generous on purpose: the machine may be busy.
local H = require "tests.lua.helper"
local proc, task = nyx.proc, nyx.task
local now = require("nyx.core").now

local MiB = 1024 * 1024

local function run(opts) -- not a tail call, so errors name 'run'
  local r = proc.run(opts)
  return r
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function my_pid()
  return tonumber(read("/proc/self/stat"):match("^(%d+)"))
end

--- Is pid a live process named comm (not a zombie)? A name check guards
-- against the pid having been reused meanwhile.
local function alive(pid, comm)
  local stat = read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local name, state = stat:match("^%d+ %((.-)%) (%S)")
  return name == comm and state ~= "Z"
end

--- Waits up to 5 s for pid to stop being a live comm.
local function gone(pid, comm)
  local t0 = now()
  while alive(pid, comm) and now() - t0 < 5 do task.sleep(0.02) end
  return not alive(pid, comm)
end

--- nyx's children (of every thread) that are zombies.
local function zombies()
  local me = my_pid()
  local found = {}
  local tasks = run{ argv = { "ls", "/proc/" .. me .. "/task" } }.stdout
  for tid in tasks:gmatch("%d+") do
    for child in (read(("/proc/%d/task/%s/children"):format(me, tid)) or ""):gmatch("%d+") do
      local stat = read("/proc/" .. child .. "/stat")
      if stat and stat:match("^%d+ %(.-%) Z") then found[#found + 1] = child end
    end
  end
  return found
end

-- The same bytes in the child (via load) and here: 64 KiB chunks, each
-- telling its stream and number, so a lost or misplaced chunk shows.
local CHUNK = [[
local tag, i = ...
return (tag .. ("%06d"):format(i) .. "|"):rep(8192)
]]
local chunk = load(CHUNK)

--- A nyx child writing n chunks to stdout and to stderr, interleaved.
local function writer(n)
  return { H.bin, "-e", ([[
    local chunk = load(%q)
    io.stdout:setvbuf("no"); io.stderr:setvbuf("no")
    for i = 1, %d do io.stdout:write(chunk("o", i)); io.stderr:write(chunk("e", i)) end
  ]]):format(CHUNK, n) }
end

local function expected(tag, n)
  local t = {}
  for i = 1, n do t[i] = chunk(tag, i) end
  return table.concat(t)
end

describe("nyx.proc.run", function()
  it("returns exit codes as data", function()
    local r = run{ argv = { "true" } }
    assert.are.equal(0, r.exit_code)
    assert.is_nil(r.signal)
    assert.is_false(r.timed_out)
    assert.is_false(r.cancelled)
    assert.is_true(math.type(r.pid) == "integer" and r.pid > 0)
    assert.is_true(math.type(r.duration_ms) == "float" and r.duration_ms > 0)
    r = run{ argv = { "sh", "-c", "exit 3" } }
    assert.are.equal(3, r.exit_code)
    assert.is_nil(r.signal)
  end)

  it("keeps stdout and stderr apart", function()
    local r = run{ argv = { "sh", "-c", "echo out; echo err >&2; printf 'no newline'" } }
    assert.are.equal("out\nno newline", r.stdout)
    assert.are.equal("err\n", r.stderr)
    assert.is_false(r.stdout_truncated)
    assert.is_false(r.stderr_truncated)
  end)

  it("reads both streams at once: 3 MiB each, interleaved, truncated at 1 MiB", function()
    local r = run{ argv = writer(48), timeout = 60 }
    assert.is_false(r.timed_out) -- a deadlock would end here
    assert.are.equal(0, r.exit_code, r.stderr:sub(1, 200))
    assert.are.equal(MiB, #r.stdout)
    assert.are.equal(MiB, #r.stderr)
    assert.is_true(r.stdout_truncated)
    assert.is_true(r.stderr_truncated)
    assert.is_true(r.stdout == expected("o", 16), "stdout is not the first MiB written")
    assert.is_true(r.stderr == expected("e", 16), "stderr is not the first MiB written")
  end)

  it("keeps all of both streams, byte for byte, with max_output raised", function()
    local r = run{ argv = writer(48), max_output = 4 * MiB, timeout = 60 }
    assert.are.equal(0, r.exit_code)
    assert.are.equal(3 * MiB, #r.stdout)
    assert.are.equal(3 * MiB, #r.stderr)
    assert.is_false(r.stdout_truncated)
    assert.is_false(r.stderr_truncated)
    assert.is_true(r.stdout == expected("o", 48), "stdout differs")
    assert.is_true(r.stderr == expected("e", 48), "stderr differs")
  end)

  it("keeps nothing with max_output = 0, but says there was output", function()
    local r = run{ argv = { "sh", "-c", "echo hidden" }, max_output = 0 }
    assert.are.equal("", r.stdout)
    assert.is_true(r.stdout_truncated)
    assert.is_false(r.stderr_truncated)
  end)

  it("feeds stdin while reading stdout: 2 MiB through cat", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local block = table.concat(bytes) -- every byte value, NUL included
    local parts = {}
    for i = 1, 2 * MiB / 256 do parts[i] = i % 7 == 0 and block:reverse() or block end
    local input = table.concat(parts)
    local r = run{ argv = { "cat" }, stdin = input, max_output = 4 * MiB, timeout = 60 }
    assert.is_false(r.timed_out)
    assert.are.equal(0, r.exit_code)
    assert.are.equal(#input, #r.stdout)
    assert.is_true(r.stdout == input, "cat gave back different bytes")
  end)

  it("tolerates a child that does not read its stdin", function()
    local r = run{ argv = { "true" }, stdin = ("x"):rep(4 * MiB) }
    assert.are.equal(0, r.exit_code)
    r = run{ argv = { "sh", "-c", "exec 0<&-; sleep 0.1; echo alive" }, stdin = ("y"):rep(MiB) }
    assert.are.equal("alive\n", r.stdout)
  end)

  it("gives a child /dev/null as stdin when there is none", function()
    local r = run{ argv = { "cat" }, timeout = 30 }
    assert.is_false(r.timed_out)
    assert.are.equal("", r.stdout)
    r = run{ argv = { "cat" }, stdin = "" }
    assert.are.equal("", r.stdout)
  end)

  it("runs in cwd", function()
    local dir = H.tmpdir()
    local r = run{ argv = { "sh", "-c", "echo here > made.txt; pwd -P" }, cwd = dir }
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.are.equal("here\n", read(dir .. "/made.txt"))
    local real = run{ argv = { "sh", "-c", "cd \"$1\" && pwd -P", "sh", dir } }.stdout
    assert.are.equal(real, r.stdout)
    H.rmdir(dir)
  end)

  it("adds env over nyx's environment, and false removes a variable", function()
    assert.is_not_nil(os.getenv("NYX_BIN"))
    local r = run{
      argv = { "sh", "-c", 'printf "%s|%s|%s|%s" "$NYX_PROC_A" "${NYX_BIN-unset}" "$HOME" "${NYX_NEVER_SET-unset}"' },
      env = { NYX_PROC_A = "a b=c", NYX_BIN = false, NYX_NEVER_SET = false },
    }
    assert.are.equal("a b=c|unset|" .. (os.getenv("HOME") or "") .. "|unset", r.stdout)
    -- without env, nyx's own
    r = run{ argv = { "sh", "-c", 'printf "%s" "$NYX_BIN"' } }
    assert.are.equal(os.getenv("NYX_BIN"), r.stdout)
  end)

  it("kills the whole group on timeout, grandchildren too", function()
    local t0 = now()
    local r = run{ argv = { "sh", "-c", "sleep 30 & echo $!; wait" }, timeout = 1 }
    assert.is_true(now() - t0 < 10, "the timeout did not stop it")
    assert.is_true(r.timed_out)
    assert.are.equal(15, r.signal) -- SIGTERM was enough
    assert.is_nil(r.exit_code)
    local grandchild = tonumber(r.stdout:match("^(%d+)"))
    assert.is_not_nil(grandchild, r.stdout)
    assert.is_true(gone(grandchild, "sleep"), "the background sleep survived")
  end)

  it("follows SIGTERM with SIGKILL for a group that ignores it", function()
    local t0 = now()
    local r = run{ argv = { "sh", "-c", "trap '' TERM; sleep 30 & echo $!; wait" }, timeout = 1 }
    assert.is_true(now() - t0 < 10, "SIGKILL did not follow")
    assert.is_true(r.timed_out)
    assert.are.equal(9, r.signal)
    local grandchild = tonumber(r.stdout:match("^(%d+)"))
    assert.is_true(gone(grandchild, "sleep"), "the background sleep survived")
  end)

  it("reports a child killed by a signal", function()
    local r = run{ argv = { "sh", "-c", "kill -9 $$" } }
    assert.is_nil(r.exit_code)
    assert.are.equal(9, r.signal)
    assert.is_false(r.timed_out)
  end)

  it("does not wait for a background process that keeps stdout open", function()
    local t0 = now()
    local r = run{ argv = { "sh", "-c", "sleep 30 & echo $!; echo done" } }
    assert.is_true(now() - t0 < 10, "it waited for the background sleep")
    assert.are.equal(0, r.exit_code)
    local bg = tonumber(r.stdout:match("^(%d+)"))
    assert.matches("done\n$", r.stdout)
    os.execute("kill " .. bg) -- not ours to kill by default; tidy up
  end)

  it("raises a clear error for a program that cannot start", function()
    local ok, err = pcall(run, { argv = { "nyx-no-such-program", "x" } })
    assert.is_false(ok)
    assert.are.equal("spawn", err.type)
    assert.are.equal("nyx-no-such-program", err.program)
    assert.are.equal("cannot run 'nyx-no-such-program': No such file or directory", tostring(err))

    ok, err = pcall(run, { argv = { "true" }, cwd = "/nonexistent/nyx" })
    assert.is_false(ok)
    assert.are.equal("cannot run 'true': cwd '/nonexistent/nyx': No such file or directory", tostring(err))

    local dir = H.tmpdir()
    H.write(dir .. "/not-executable", "#!/bin/sh\necho no\n")
    ok, err = pcall(run, { argv = { dir .. "/not-executable" } })
    assert.is_false(ok)
    assert.are.equal("cannot run '" .. dir .. "/not-executable': Permission denied", tostring(err))
    ok, err = pcall(run, { argv = { "true" }, cwd = dir .. "/not-executable" })
    assert.is_false(ok)
    assert.are.equal("cannot run 'true': cwd '" .. dir .. "/not-executable': Not a directory", tostring(err))
    H.rmdir(dir)
    assert.are.equal(0, proc.running())
  end)

  it("refuses bad options", function()
    local cases = {
      { nil, "table expected, got nil" },
      { {}, "argv must be a non%-empty list of strings" },
      { { argv = {} }, "argv must be a non%-empty list of strings" },
      { { argv = "ls" }, "argv must be a non%-empty list of strings" },
      { { argv = { "ls", 3 } }, "argv%[2%] must be a string without NUL bytes, got number" },
      { { argv = { "ls", "a\0b" } }, "argv%[2%] must be a string without NUL bytes, got string" },
      { { argv = { "true" }, timeout = -1 }, "timeout must be a non%-negative number of seconds" },
      { { argv = { "true" }, timeout = "1" }, "timeout must be a non%-negative number of seconds" },
      { { argv = { "true" }, max_output = 1.5 }, "max_output must be a non%-negative integer" },
      { { argv = { "true" }, max_output = -1 }, "max_output must be a non%-negative integer" },
      { { argv = { "true" }, env = { A = 1 } }, "env value for 'A' must be a string or false" },
      { { argv = { "true" }, env = { A = true } }, "env value for 'A' must be a string or false" },
      { { argv = { "true" }, env = { ["A=B"] = "x" } }, "env names must be non%-empty strings without '='" },
      { { argv = { "true" }, env = "A=1" }, "env must be a table" },
      { { argv = { "true" }, cwd = 3 }, "cwd must be a string" },
      { { argv = { "true" }, stdin = {} }, "stdin must be a string" },
      { { argv = { "true" }, timout = 1 }, "unknown option 'timout'" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(run, c[1])
      assert.is_false(ok)
      assert.matches("^.-bad argument #1 to 'run' %(" .. c[2], err)
    end
  end)

  it("runs many at once in tasks", function()
    local t0 = now()
    local hs = {}
    for i = 1, 20 do
      hs[i] = task.spawn(function() return run{ argv = { "sleep", "0.3" } } end)
    end
    local peak, finished = 0, false
    local monitor = task.spawn(function()
      while not finished do
        peak = math.max(peak, proc.running())
        task.sleep(0.01)
      end
    end)
    local rs = task.wait_all(hs)
    local elapsed = now() - t0
    finished = true
    monitor:wait()
    assert.is_true(peak > 1, "never more than one child at a time")
    for _, r in ipairs(rs) do
      assert.is_true(r.ok)
      assert.are.equal(0, r[1].exit_code)
    end
    assert.are.equal(0, proc.running())
    assert.is_true(elapsed < 3, ("20 sleeps of 0.3 s took %.2f s"):format(elapsed)) -- not 6 s
  end)

  it("waits in place where it cannot yield", function()
    local s = ("ab"):gsub("%w", function(c) return run{ argv = { "echo", c } }.stdout:upper() end)
    assert.are.equal("A\nB\n", s)
  end)

  it("cancels every run in flight with cancel_all", function()
    assert.are.equal(0, proc.cancel_all())
    local dir = H.tmpdir()
    local hs = {}
    for i = 1, 5 do
      hs[i] = task.spawn(function()
        return run{ argv = { "sh", "-c", "echo started; touch " .. dir .. "/" .. i .. "; sleep 30" } }
      end)
    end
    local function all_started()
      for i = 1, 5 do
        if not read(dir .. "/" .. i) then return false end
      end
      return true
    end
    local t_start = now()
    while not all_started() and now() - t_start < 20 do task.sleep(0.02) end
    H.rmdir(dir)
    assert.are.equal(5, proc.running())
    local t0 = now()
    assert.are.equal(5, proc.cancel_all())
    local rs = task.wait_all(hs)
    assert.is_true(now() - t0 < 10)
    for _, r in ipairs(rs) do
      assert.is_true(r.ok)
      assert.is_true(r[1].cancelled)
      assert.is_false(r[1].timed_out)
      assert.is_not_nil(r[1].signal)
      assert.are.equal("started\n", r[1].stdout)
    end
    assert.are.equal(0, proc.running())
  end)

  it("gives children no fd of nyx's beyond 0, 1 and 2", function()
    local f = assert(io.open(H.source .. "/README.md")) -- fopen: not close-on-exec
    local db = H.fresh_db() -- and a PostgreSQL socket
    local r = run{ argv = { "ls", "/proc/self/fd" } }
    f:close()
    H.drop_db(db)
    local fds = {}
    for fd in r.stdout:gmatch("%d+") do fds[#fds + 1] = tonumber(fd) end
    table.sort(fds)
    -- 3 is ls's own handle on the folder
    assert.is_true(#fds <= 4, "the child has fds " .. table.concat(fds, " "))
    assert.are.same({ 0, 1, 2 }, { fds[1], fds[2], fds[3] })
  end)

  it("gives children default signal dispositions and an empty mask", function()
    local status = run{ argv = { "cat", "/proc/self/status" } }.stdout
    assert.are.equal(("0"):rep(16), status:match("SigBlk:%s*(%x+)"))
    -- glibc's posix_spawn leaves its two internal signals (32, 33) ignored
    local ign = tonumber(status:match("SigIgn:%s*(%x+)"), 16)
    assert.are.equal(0, ign & 0x7fffffff, "signals 1-31 ignored: " .. ign)
  end)

  it("leaves no zombie behind, and no fd of its own open", function()
    -- nyx's fds, listed by a child once stdin reached EOF: by then nyx has
    -- closed its copies of the child's ends and its end of stdin, and holds
    -- the same three for this run each time (stdout, stderr, pidfd)
    local function my_fds()
      local list = ("cat >/dev/null; ls /proc/%d/fd"):format(my_pid())
      return run{ argv = { "sh", "-c", list }, stdin = "go" }.stdout
    end
    local fds_before = my_fds()
    local hs = {}
    for i = 1, 30 do hs[i] = task.spawn(function() return run{ argv = { "true" }, stdin = "x" } end) end
    hs[31] = task.spawn(function() return run{ argv = { "sleep", "30" }, timeout = 0.05 } end)
    hs[32] = task.spawn(function() return pcall(run, { argv = { "nyx-no-such-program" } }) end)
    local pids = {}
    for i, r in ipairs(task.wait_all(hs)) do pids[i] = i <= 30 and r[1].pid or nil end
    for _, pid in ipairs(pids) do
      assert.is_false(alive(pid, "true"))
    end
    assert.are.same({}, zombies())
    assert.are.equal(0, proc.running())
    assert.are.equal(fds_before, my_fds())
  end)
end)

describe("a run whose Lua side goes away", function()
  it("is killed and reaped when the state closes", function()
    local dir = H.tmpdir()
    local file = dir .. "/pid"
    local t0 = now()
    local r = H.nyx({ "-e", ([[
      nyx.task.spawn(function()
        nyx.proc.run{ argv = { "sh", "-c", "echo $$ > %s.tmp && mv %s.tmp %s; exec sleep 30" } }
      end)
      local t0 = require("nyx.core").now()
      while not io.open(%q) do
        assert(require("nyx.core").now() - t0 < 20, "the child did not start")
        nyx.task.sleep(0.02)
      end
      os.exit(0, true) -- closes the state with the run in flight
    ]]):format(file, file, file, file) })
    assert.are.equal(0, r.code, r.err)
    assert.is_true(now() - t0 < 20, "nyx waited for the child")
    local pid = tonumber(read(file))
    assert.is_not_nil(pid)
    assert.is_true(gone(pid, "sleep"), "the child outlived nyx")
    H.rmdir(dir)
  end)
end)
