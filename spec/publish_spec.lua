-- luka.publish and its delivery reports: every report settles the publish
-- it belongs to, in the stage that made it, once; a report served while
-- Lua runs waits for the loop; a refused option leaks nothing.
local H = require "support.helper"

local luka_test, assert_passes = H.luka_test, H.assert_luka_test_passed

describe("delivery reports", function()
  it("match the stage that published: a handler output failing after the dead letter was sent does not fail the error channel", function()
    local r = luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, error_channel = "dlt",
  handle = function(msg) luka.publish("out", { n = 1 }); luka.publish("out", { n = 2 }) end }
]], [[
local test = require "luka.test"
it("dead-letters once and commits", function()
  local app = test.load("app.lua")
  app:fail_publishes(2) -- the request carrying both outputs fails
  local r = app:deliver("c", { id = 1 })
  assert.equal("dead_lettered", r.outcome)
  assert.is_true(r.committed)
  assert.truthy(r.dead_letter, "the dead letter was published")
  local c = app:counters("c")
  assert.equal(1, c.failed)
  assert.equal(1, c.dead_lettered)
  assert.equal(0, c.stopped)
  app:close()
end)
]])
    assert_passes(r, 1)
    assert.falsy(r.stdout:find("error channel failed", 1, true), r.stdout)
    assert.falsy((r.stdout .. r.stderr):find("final failure: stop", 1, true), r.stdout .. r.stderr)
  end)

  it("count and log a message's outcome once when several of its publishes fail", function()
    local r = luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, final_failure = "ignore",
  handle = function(msg) for i = 1, 3 do luka.publish("out", { n = i }) end end }
]], [[
local test = require "luka.test"
it("ignores it once", function()
  local app = test.load("app.lua")
  app:fail_publishes(3)
  local r = app:deliver("c", { id = 1 })
  assert.equal("ignored", r.outcome)
  assert.is_true(r.committed)
  local c = app:counters("c")
  assert.equal(1, c.failed)
  assert.equal(1, c.ignored)
  assert.equal(0, c.stopped)
  app:close()
end)
]])
    assert_passes(r, 1)
  end)
end)

describe("luka.publish with a bad option", function()
  it("raises without leaking the encoded payload or the headers", function()
    local r = luka_test([[
local luka = require "luka"
luka.publisher "out" {}
local big = string.rep("x", 100000)
luka.consumer "c" { topics = { "in" }, handle = function(msg)
  for i = 1, 1000 do
    local ok, err = pcall(luka.publish, "out", msg.table and { big = big } or big,
      { headers = i % 2 == 0 and { bad = {} } or { [1] = "not a name" } })
    assert(not ok and err:find("header"), err)
  end
end }
]], [[
local test = require "luka.test"
local function rss_kb()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end
it("keeps memory flat over 1000 refused 100 KB publishes", function()
  local app = test.load("app.lua")
  app:deliver("c", {}) -- warm up
  local before = rss_kb()
  assert.equal("handled", app:deliver("c", {}).outcome)
  assert.equal("handled", app:deliver("c", { table = true }).outcome)
  collectgarbage()
  local grown = rss_kb() - before
  -- A leak is 100 KB per call: 200 MB here.
  assert.is_true(grown < 50000, ("RSS grew by %d kB"):format(grown))
  app:close()
end)
]])
    assert_passes(r, 1)
  end)
end)

describe("a publish that waits for room in a full producer queue", function()
  local broker
  setup(function()
    broker = H.broker_start { topics = { "nest_in:1", "nest_out:1", "nest_dead:1" }, control = true }
  end)
  teardown(function() broker.stop() end)

  it("leaves policies to the loop: the handler's later publishes stay its own", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    H.write_file(dir .. "/app.lua", [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local function record(...) out:write(luka.json.encode({ ... }), "\n") end
-- One message fits in its queue: the second publish waits for the first's report.
luka.publisher "slow" { topic = "nest_out", config = { ["queue.buffering.max.messages"] = 1 } }
-- Nothing listens there: its publishes fail after 3 s.
luka.publisher "dead_end" { topic = "nest_dead",
  config = { ["bootstrap.servers"] = "127.0.0.1:1", ["message.timeout.ms"] = 3000 } }
luka.consumer "c" { topics = { "nest_in" },
  config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 },
  error_channel = function(msg) record("dead", msg.n) end,
  handle = function(msg)
    record("handled", msg.n)
    luka.publish("slow", msg)
    if msg.n == 2 then luka.publish("dead_end", msg) end
  end }
]])
    -- Both messages come in one fetch, so the second handler runs before
    -- the loop serves the first one's report.
    H.kcat_produce(broker.bootstrap, "nest_in", { '{"n":1}', '{"n":2}' })
    assert.equal("ok", broker.control("fail Produce 1 MSG_SIZE_TOO_LARGE"))
    local p = H.spawn(("%s run %s/app.lua --brokers %s --drain-timeout 1000"):format(H.luka, dir,
      broker.bootstrap), { env = { OUT = out } })
    local function recorded(what)
      for _, l in ipairs(H.read_lines(out)) do
        if l == what then return true end
      end
    end
    H.wait_until(function() return recorded('["dead",1]') end, 20, "message 1 dead-lettered")
    H.wait_until(function() return recorded('["dead",2]') end, 20,
      "message 2 dead-lettered: its publish to nest_dead failed")
    local log = p.output()
    assert.equal(0, p.stop(), log)
  end)
end)

describe("luka.publish options", function()
  it("refuses an unknown option with the nearest one it takes, and sends nothing", function()
    local r = luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, final_failure = "ignore",
  handle = function(msg) luka.publish("out", msg, { kye = "k-1" }) end }
]], [[
local test = require "luka.test"
it("fails the message with the nearest name", function()
  local app = test.load("app.lua")
  local r = app:deliver("c", { n = 1 })
  assert.equal("ignored", r.outcome)
  assert.matches("unknown option 'kye'; did you mean 'key'%?", r.error)
  assert.equal(0, #r.published)
  app:close()
end)
]])
    assert_passes(r, 1)
  end)
end)
