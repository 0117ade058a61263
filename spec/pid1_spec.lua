-- luka as a container's entrypoint: PID 1 in a fresh PID namespace
-- (`unshare --fork --pid --mount-proc`, as root), where it must drain and
-- exit 0 on SIGTERM and reap the orphans the kernel hands it.
local H = require "support.helper"

local broker

setup(function()
  local r = H.run("unshare --fork --pid --mount-proc true")
  assert(r.code == 0, "unshare cannot make a PID namespace here (it needs root or " ..
    "CAP_SYS_ADMIN): " .. r.stderr)
  broker = H.broker_start { topics = { "pid1_drain:2", "pid1_orphans:1" } }
end)

teardown(function() broker.stop() end)

-- Processes as the host sees them: { pid, ppid, state, args }.
local function processes()
  local list = {}
  local r = H.run("ps -e -o pid=,ppid=,stat=,args=")
  for line in r.stdout:gmatch("[^\n]+") do
    local pid, ppid, stat, args = line:match("^%s*(%d+)%s+(%d+)%s+(%S+)%s+(.*)$")
    if pid then
      list[#list + 1] = { pid = tonumber(pid), ppid = tonumber(ppid), state = stat:sub(1, 1), args = args }
    end
  end
  return list
end

local function children(pid, pattern)
  local found = {}
  for _, p in ipairs(processes()) do
    if p.ppid == pid and (not pattern or p.args:find(pattern)) then found[#found + 1] = p end
  end
  return found
end

local function zombies(pid)
  local found = {}
  for _, p in ipairs(children(pid)) do
    if p.state == "Z" then found[#found + 1] = p end
  end
  return found
end

-- Runs cmd as PID 1 of a new PID namespace; returns the unshare process
-- and the host's pid of the namespace's PID 1.
local function as_pid1(cmd, env)
  local p = H.spawn("unshare --fork --pid --mount-proc --kill-child " .. cmd, { env = env })
  local init = H.wait_until(function()
    local c = children(p.pid)[1]
    return c and c.pid
  end, 10, "the namespace's PID 1")
  return p, init
end

describe("luka as PID 1", function()
  it("detects a zombie left by a PID 1 that does not reap (the check itself works)", function()
    local _, init = as_pid1([[lua5.4 -e 'os.execute("sh -c \"sleep 0.2 & exit 0\"") os.execute("sleep 3")']])
    local z = H.wait_until(function() return zombies(init)[1] end, 5, "a zombie under a non-reaping PID 1")
    assert.equal("Z", z.state)
  end)

  it("adopts orphaned processes and reaps every one", function()
    local out = H.tmpdir() .. "/out"
    local p, luka = as_pid1(("%s run spec/fixtures/ops_pid1.lua --brokers %s"):format(H.luka, broker.bootstrap),
      { OUT = out, ORPHANS = "5", TOPIC = "pid1_orphans", GROUP = "pid1_orphans" })
    H.wait_until(function() return H.read_lines(out)[1] end, 10, "the app's pid line")
    assert.equal("pid 1", H.read_lines(out)[1], "luka is PID 1 in its namespace")
    -- The orphans (sleep 1.5) appear as luka's children...
    H.wait_until(function() return #children(luka, "^sleep 1%.5") >= 2 end, 10, "orphans adopted by luka")
    -- ...and once the last has ended (5 orphans, 200 ms apart, 1.5 s each),
    -- none is left as a zombie.
    H.wait_until(function() return #children(luka, "sleep") == 0 end, 10, "every orphan gone")
    local left = zombies(luka)
    assert.equal(0, #left, "zombies: " .. H.json_encode(left))
    assert.is_true(p.alive())
  end)

  it("drains on SIGTERM: finishes, commits what it handled, exits 0 within the grace period", function()
    local out = H.tmpdir() .. "/out"
    local msgs = {}
    for n = 1, 60 do msgs[n] = { key = "k" .. n, value = ('{"n":%d}'):format(n) } end
    H.kcat_produce(broker.bootstrap, "pid1_drain", msgs)
    local p, luka = as_pid1(("%s run spec/fixtures/ops_pid1.lua --brokers %s"):format(H.luka, broker.bootstrap),
      { OUT = out, TOPIC = "pid1_drain", GROUP = "pid1_drain" })
    H.wait_until(function() return #H.read_lines(out) >= 11 end, 20, "10 messages handled")
    local start = H.now()
    -- From the host, as a container runtime would; unshare itself ignores it.
    assert.is_true(os.execute("kill -TERM " .. luka) == true)
    local code = p.wait(10)
    assert.equal(0, code, "exit code after SIGTERM; output:\n" .. p.output())
    assert.is_true(H.now() - start < 10, "exited within the grace period")
    assert.truthy(p.output():find("stopped", 1, true))

    -- Every message it handled is committed, and nothing more.
    local handled = {}
    for _, line in ipairs(H.read_lines(out)) do
      local part = line:match("^handled (%d+) %d+$")
      if part then handled[tonumber(part)] = (handled[tonumber(part)] or 0) + 1 end
    end
    local r = H.run(("OUT=/dev/null TOPIC=pid1_drain GROUP=pid1_drain %s lag spec/fixtures/ops_pid1.lua --brokers %s"):format(
      H.luka, H.q(broker.bootstrap)))
    assert.equal(0, r.code, r.stderr)
    local committed = {}
    for part, current in r.stdout:gmatch("\npid1_drain%s+pid1_drain%s+(%d+)%s+(%S+)") do
      committed[tonumber(part)] = tonumber(current) or 0
    end
    assert.same({ [0] = handled[0] or 0, [1] = handled[1] or 0 }, committed, r.stdout)
  end)
end)
