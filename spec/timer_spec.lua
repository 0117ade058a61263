-- Timer callbacks (luka.every, luka.after) run as tasks: they may wait on
-- I/O (luka.sleep, a publish with wait = true), a tick that comes while the
-- last call of the same timer still runs is skipped, the runtime timeout
-- ends a call that waits too long, and shutdown lets a running call end.
-- The test kit's virtual clock runs each call to its end, answering the
-- publishes it waits for.
local H = require "support.helper"

describe("a timer callback in luka run", function()
  local broker

  setup(function()
    broker = H.broker_start { topics = { "timer_out:1" } }
  end)

  teardown(function() broker.stop() end)

  -- Runs app (a script's text) with env; returns the process and the path
  -- its records go to ($OUT, one JSON line each).
  local function run(app, env)
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", app)
    env = env or {}
    env.OUT = dir .. "/out.jsonl"
    local p = H.spawn(("%s run %s/app.lua --brokers %s"):format(H.luka, dir, broker.bootstrap),
      { env = env })
    return p, env.OUT
  end

  local HEAD = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local function write(r) out:write(luka.json.encode(r), "\n") end
luka.publisher "out" { topic = "timer_out" }
]]

  it("waits on luka.sleep and on an acknowledged publish, and never overlaps its own calls", function()
    local p, out = run(HEAD .. [[
local calls = 0
luka.every("50ms", function()
  calls = calls + 1
  local n = calls
  local started = luka.now()
  write({ call = n, at = "start", t = started })
  assert(luka.sleep(200))
  local id, err = luka.publish("out", { call = n }, { key = "k", wait = true })
  write({ call = n, at = "end", t = luka.now(), id = id, err = err })
end)
]], { LUKA_LOG_LEVEL = "debug" })
    local recs = H.wait_jsonl(out, 8, "four calls' start and end records", 20)
    assert.equal(0, p.stop())
    -- Every call starts after the one before ended: ticks in between are skipped.
    local last_end, ends = nil, {}
    for _, r in ipairs(recs) do
      if r.at == "start" then
        if last_end then assert.is_true(r.t >= last_end, "a call started before the last ended") end
        last_end = nil
      else
        assert.is_nil(r.err)
        assert.is_string(r.id)
        last_end = r.t
        ends[#ends + 1] = r
      end
    end
    assert.is_true(#ends >= 3)
    -- The ids it was given are those of the messages on the topic.
    local got = H.kcat_consume(broker.bootstrap, "timer_out", #ends)
    local ids = {}
    for _, m in ipairs(got) do ids[m.headers.id] = true end
    for i = 1, 3 do assert.is_true(ids[ends[i].id], "message of call " .. ends[i].call) end
    assert.truthy(p.output():find("stopped", 1, true))
    assert.truthy(p.output():find("a tick of a timer every 50 ms is skipped: its last call still runs", 1, true),
      p.output())
  end)

  it("is ended by the runtime timeout while it waits, and the timer goes on", function()
    local p, out = run(HEAD .. [[
luka.runtime { timeout = "300ms" }
local calls = 0
luka.every("100ms", function()
  calls = calls + 1
  write({ call = calls })
  if calls == 1 then luka.sleep(5000) end
end)
]])
    H.wait_jsonl(out, 3, "the calls after the one that timed out", 15)
    assert.equal(0, p.stop())
    assert.truthy(p.output():find("timed out after 300 ms waiting for luka.sleep(5000 ms)", 1, true),
      p.output())
  end)

  it("that still waits at shutdown is let finish before luka exits", function()
    local p, out = run(HEAD .. [[
luka.after("10ms", function()
  write({ at = "start" })
  luka.sleep(800)
  local id, err = luka.publish("out", { late = true }, { wait = true })
  write({ at = "end", id = id, err = err })
end)
]])
    H.wait_jsonl(out, 1, "the call's start")
    assert.equal(0, p.stop())
    local recs = H.jsonl(out)
    assert.equal(2, #recs, p.output())
    assert.equal("end", recs[2].at)
    assert.is_string(recs[2].id)
    assert.truthy(p.output():find("timer callback(s) still running", 1, true), p.output())
  end)
end)

describe("a timer callback in the test kit", function()
  it("waits on luka.sleep and its publishes with wait, answered by the pretend broker", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.publisher "results" {}
luka.every("1s", function()
  assert(luka.sleep(20))
  local id, err = luka.publish("out", { x = 1 }, { wait = true })
  luka.publish("results", { id = id, err = err })
end)
]], [[
local test = require "luka.test"
it("waits, and hears of a failed publish", function()
  local app = test.load("app.lua")
  local r = app:advance("2s")
  assert.equal(2, r.fired)
  assert.same({}, r.errors)
  assert.equal(4, #r.published)
  assert.equal("results", r.published[2].target)
  assert.equal(r.published[1].headers.id, r.published[2].payload.id)
  app:fail_publishes(1)
  r = app:advance("1s")
  assert.equal(1, r.fired)
  assert.is_nil(r.published[2].payload.id)
  assert.matches("not delivered", r.published[2].payload.err)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("reports a callback that fails after it waited, and runs the next one after it", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.after("1s", function()
  luka.sleep(10)
  error("after the wait")
end)
luka.after("1s", function() luka.publish("out", { second = true }) end)
]], [[
local test = require "luka.test"
it("has the error and the second call's publish", function()
  local app = test.load("app.lua")
  local r = app:advance("1s")
  assert.equal(2, r.fired)
  assert.equal(1, #r.errors)
  assert.matches("after the wait", r.errors[1])
  assert.is_true(r.published[1].payload.second)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)
end)
