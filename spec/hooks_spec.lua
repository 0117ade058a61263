-- Lifecycle hooks: an endpoint's on_assign, on_revoke and on_stop, and a
-- publisher's on_delivery for what timers publish.  Each runs through the
-- one door into user Lua with the app's runtime timeout; a hook that
-- raises, or runs past that timeout, is logged with its name and its
-- endpoint or publisher, and nothing else changes.  luka runs against
-- `luka broker` in a process of its own; hooks write JSON lines to $OUT.
local H = require "support.helper"

local broker

setup(function()
  broker = H.broker_start { control = true, topics = { "hooks_rb:4", "hooks_stop_a:1",
    "hooks_stop_b:1", "hooks_bye:1", "hooks_ticks:2", "hooks_in:2", "hooks_slow:1", "hooks_bad:2" } }
end)
teardown(function() broker.stop() end)

-- The lines of the app's $OUT, decoded.
local function records(out) return H.jsonl(out) end

local function find(out, pred)
  for _, r in ipairs(records(out)) do
    if pred(r) then return r end
  end
end

local function spawn(dir, app, env, args)
  H.write_file(dir .. "/app.lua", app)
  return H.spawn(("%s run %s/app.lua --brokers %s %s"):format(H.luka, dir, broker.bootstrap,
    args or ""), { env = env })
end

-- The partitions of a hook's argument as "topic[n]" strings, sorted.
local function names(parts)
  local list = {}
  for _, p in ipairs(parts) do list[#list + 1] = ("%s[%d]"):format(p.topic, p.partition) end
  table.sort(list)
  return list
end

describe("on_assign and on_revoke", function()
  local APP = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local member = os.getenv("MEMBER")
luka.consumer "rb" { topics = { "hooks_rb" }, group = "hooks_rb",
  config = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 },
  on_assign = function(parts)
    out:write(luka.json.encode({ hook = "assign", member = member, parts = parts }), "\n")
  end,
  on_revoke = function(parts)
    out:write(luka.json.encode({ hook = "revoke", member = member, parts = parts }), "\n")
  end,
  handle = function() end }
]]

  it("hear the partitions as a second member joins the group, and as it leaves", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    H.write_file(dir .. "/app.lua", APP)
    local cmd = ("%s run %s/app.lua --brokers %s"):format(H.luka, dir, broker.bootstrap)
    local a = H.spawn(cmd, { env = { OUT = out, MEMBER = "a" } })
    local first = H.wait_until(function()
      return find(out, function(r) return r.hook == "assign" and r.member == "a" end)
    end, 30, "member a's first on_assign")
    assert.same({ "hooks_rb[0]", "hooks_rb[1]", "hooks_rb[2]", "hooks_rb[3]" }, names(first.parts))
    for _, p in ipairs(first.parts) do
      assert.equal("string", type(p.topic))
      assert.equal("integer", math.type(p.partition))
    end

    local b = H.spawn(cmd, { env = { OUT = out, MEMBER = "b" } })
    -- The eager protocol: a hands everything back, then both get a share
    -- (maybe after a round that gave a everything again, when b's join
    -- came late).  What each member holds is what its hooks said.
    local function holdings()
      local held, revoked = { a = {}, b = {} }, nil
      for _, r in ipairs(records(out)) do
        for _, n in ipairs(names(r.parts)) do held[r.member][n] = r.hook == "assign" or nil end
        if r.hook == "revoke" and r.member == "a" then revoked = revoked or r end
      end
      return held, revoked
    end
    local got = H.wait_until(function()
      local held, revoked = holdings()
      local a, b = {}, {}
      for n in pairs(held.a) do a[#a + 1] = n end
      for n in pairs(held.b) do b[#b + 1] = n end
      if not revoked or #a == 0 or #b == 0 or #a + #b ~= 4 then return nil end
      return { revoked = revoked, a = a, b = b }
    end, 60, "a's on_revoke, then on_assign sharing the partitions between both members")
    assert.same({ "hooks_rb[0]", "hooks_rb[1]", "hooks_rb[2]", "hooks_rb[3]" }, names(got.revoked.parts))
    local union = {}
    for _, n in ipairs(got.a) do union[#union + 1] = n end
    for _, n in ipairs(got.b) do union[#union + 1] = n end
    table.sort(union)
    assert.same({ "hooks_rb[0]", "hooks_rb[1]", "hooks_rb[2]", "hooks_rb[3]" }, union)

    -- Leaving, b hands back what it holds, through on_revoke too.
    assert.equal(0, b.stop(30))
    local held = holdings()
    assert.same({}, held.b, "b's on_revoke as it left")
    assert.equal(0, a.stop(30))
  end)
end)

describe("on_stop", function()
  local APP = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local function record(t) out:write(luka.json.encode(t), "\n") end
luka.publisher "bye" { topic = "hooks_bye" }
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
for _, name in ipairs({ "a", "b" }) do
  luka.consumer(name) { topics = { "hooks_stop_" .. name }, group = "hooks_stop_" .. name,
    config = config, final_failure = "stop",
    on_stop = function()
      print("on_stop of " .. name)
      record({ hook = "stop", endpoint = name })
      luka.publish("bye", { endpoint = name }, { key = name })
    end,
    handle = function(msg)
      if msg.poison then error("poison") end
      record({ handled = msg.n, endpoint = name })
    end }
end
]]

  it("runs once when a final failure stops the endpoint and at SIGTERM, before it leaves its group", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    local p = spawn(dir, APP, { OUT = out })
    H.kcat_produce(broker.bootstrap, "hooks_stop_a", { '{"n":1}', '{"poison":true}' })
    H.kcat_produce(broker.bootstrap, "hooks_stop_b", { '{"n":1}' })
    p.wait_output("%[a%] left group hooks_stop_a", 30, "a to stop and leave its group")
    H.wait_until(function()
      return find(out, function(r) return r.handled == 1 and r.endpoint == "b" end)
    end, 30, "b to handle its message")
    local stops = function(name)
      local n = 0
      for _, r in ipairs(records(out)) do n = n + ((r.hook == "stop" and r.endpoint == name) and 1 or 0) end
      return n
    end
    assert.equal(1, stops("a"))
    assert.equal(0, stops("b"))

    assert.equal(0, p.stop(30))
    assert.equal(1, stops("a"), "a's on_stop ran again")
    assert.equal(1, stops("b"))
    -- Before b left its group, and what it published went out.
    local log = p.output()
    local hook_at, left_at = log:find("on_stop of b", 1, true), log:find("[b] left group hooks_stop_b", 1, true)
    assert.truthy(hook_at and left_at and hook_at < left_at, log)
    local bye = H.kcat_consume(broker.bootstrap, "hooks_bye", 2)
    local keys = {}
    for _, r in ipairs(bye) do keys[#keys + 1] = r.key end
    table.sort(keys)
    assert.same({ "a", "b" }, keys)
  end)
end)

describe("on_delivery", function()
  local APP = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
local function report(r) out:write(luka.json.encode(r), "\n") end
luka.publisher "ticks" { topic = "hooks_ticks", on_delivery = report }
-- One message fits in its queue: the second publish of a tick waits for
-- the first's report, which on_delivery hears from the loop afterwards.
luka.publisher "slow" { topic = "hooks_slow", on_delivery = report,
  config = { ["queue.buffering.max.messages"] = 1 } }
luka.consumer "c" { topics = { "hooks_in" },
  config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 },
  handle = function(msg) luka.publish("ticks", msg, { key = "handler-" .. msg.n }) end }
local n = 0
luka.every("200ms", function()
  n = n + 1
  luka.publish("ticks", { n = n }, { key = "tick-" .. n })
  if n <= 3 then
    luka.publish("slow", { n = n }, { key = "slow-" .. n .. "a" })
    luka.publish("slow", { n = n }, { key = "slow-" .. n .. "b" })
  end
end)
]]

  it("hears each timer publish's report, delivered or failed, and not a handler's", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    local p = spawn(dir, APP, { OUT = out })
    local ok = H.wait_until(function()
      return find(out, function(r) return r.key == "tick-2" end)
    end, 30, "the report of tick 2")
    assert.equal("hooks_ticks", ok.topic)
    assert.is_nil(ok.error)
    assert.equal("integer", math.type(ok.partition))
    assert.equal("integer", math.type(ok.offset))
    assert.is_true(ok.offset >= 0)
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", ok.id)
    -- The reports of the slow publisher, served while a send waited.
    for _, k in ipairs({ "slow-1a", "slow-1b", "slow-2a", "slow-2b", "slow-3a", "slow-3b" }) do
      H.wait_until(function() return find(out, function(r) return r.key == k end) end, 20,
        "the report of " .. k)
    end

    -- The broker refuses the next produce requests: their reports fail.
    assert.equal("ok", broker.control("fail Produce 2 MSG_SIZE_TOO_LARGE"))
    local failed = H.wait_until(function()
      return find(out, function(r) return r.error ~= nil end)
    end, 20, "a failed report")
    assert.equal("hooks_ticks", failed.topic)
    assert.matches("too large", failed.error)
    assert.is_nil(failed.offset)
    assert.matches("^tick%-%d+$", failed.key)
    -- And then they are delivered again.
    local after = tonumber(failed.key:match("%d+")) + 3
    H.wait_until(function()
      return find(out, function(r) return r.key == "tick-" .. after and not r.error end)
    end, 20, "a delivered report after the failures")

    -- A handler's publish settles its own message: on_delivery is not told.
    H.kcat_produce(broker.bootstrap, "hooks_in", { '{"n":1}' })
    H.wait_until(function()
      local c = H.kcat_consume(broker.bootstrap, "hooks_ticks", nil)
      for _, r in ipairs(c) do if r.key == "handler-1" then return true end end
    end, 30, "the handler's publish")
    H.sleep(0.5)
    assert.is_nil(find(out, function(r) return r.key == "handler-1" end))
    assert.equal(0, p.stop(30))
  end)
end)

describe("a hook that fails", function()
  local APP = [[
local luka = require "luka"
local out = assert(io.open(os.getenv("OUT"), "a"))
out:setvbuf("line")
luka.runtime { timeout = "200ms" }
luka.publisher "bad" { topic = "hooks_ticks", on_delivery = function(r) error("no report for me") end }
local config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 }
luka.consumer "raiser" { topics = { "hooks_bad" }, group = "hooks_raiser", config = config,
  on_assign = function(parts) error("cannot take " .. #parts .. " partitions") end,
  handle = function(msg) out:write(luka.json.encode({ raiser = msg.n }), "\n") end }
luka.consumer "spinner" { topics = { "hooks_bad" }, group = "hooks_spinner", config = config,
  on_assign = function() while true do end end,
  handle = function(msg) out:write(luka.json.encode({ spinner = msg.n }), "\n") end }
luka.after("100ms", function() luka.publish("bad", { n = 1 }) end)
]]

  it("is logged with its name and endpoint, even past its time limit, and changes nothing else", function()
    local dir = H.tmpdir()
    local out = dir .. "/out.jsonl"
    local p = spawn(dir, APP, { OUT = out })
    p.wait_output("%[raiser%] on_assign failed: [^\n]*cannot take 2 partitions", 30, "raiser's error")
    p.wait_output("%[spinner%] on_assign failed: [^\n]*timed out after 200 ms", 30, "spinner's timeout")
    p.wait_output("%[bad%] on_delivery failed: [^\n]*no report for me", 30, "on_delivery's error")
    -- Both endpoints go on as if nothing happened.
    H.kcat_produce(broker.bootstrap, "hooks_bad", { { key = "x", value = '{"n":1}' } })
    H.wait_until(function()
      return find(out, function(r) return r.raiser == 1 end) and find(out, function(r) return r.spinner == 1 end)
    end, 30, "both endpoints to handle the message")
    assert.is_true(p.alive())
    assert.equal(0, p.stop(30))
  end)
end)

describe("hooks in the app script", function()
  it("must be functions, and luka check lists them", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/bad.lua", [[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, on_assign = "hello", handle = function() end }
]])
    local r = H.run(("%s check %s/bad.lua"):format(H.luka, dir))
    assert.equal(1, r.code)
    assert.matches("option 'on_assign' must be a function, got string", r.stderr)
    H.write_file(dir .. "/good.lua", [[
local luka = require "luka"
luka.publisher "p" { on_delivery = function() end }
luka.channel "ch" { on_delivery = function() end, on_stop = function() end, handle = function() end }
luka.consumer "c" { topics = { "t" }, on_assign = function() end, on_revoke = function() end,
  handle = function() end }
]])
    r = H.run(("%s check %s/good.lua"):format(H.luka, dir))
    assert.equal(0, r.code, r.stderr)
    assert.matches("publisher p %->[^\n]*\n      hooks: on_delivery\n", r.stdout)
    assert.matches("publisher ch %->[^\n]*channel[^\n]*\n      hooks: on_delivery\n", r.stdout)
    assert.matches("hooks: on_stop\n", r.stdout)
    assert.matches("hooks: on_assign on_revoke\n", r.stdout)
  end)
end)

describe("the test kit", function()
  it("runs on_delivery for what timers and the script publish, failing what fail_publishes says", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "log" {}
luka.publisher "beats" { on_delivery = function(r) luka.publish("log", r) end }
luka.publisher "grumpy" { on_delivery = function() error("grumpy") end }
luka.publish("beats", { n = 0 }, { key = "load" })
local n = 0
luka.every("1s", function()
  n = n + 1
  luka.publish("beats", { n = n }, { key = "beat-" .. n })
end)
luka.after("3s", function() luka.publish("grumpy", {}) end)
]], [[
local test = require "luka.test"
local function reports(list)
  local out = {}
  for _, p in ipairs(list) do if p.target == "log" then out[#out + 1] = p.payload end end
  return out
end
it("reports what the script and the timers published", function()
  local app = test.load("app.lua")
  local loaded = reports(app:published())
  assert.equal(1, #loaded)
  assert.same({ topic = "beats", partition = 0, offset = 0, key = "load", id = loaded[1].id }, loaded[1])
  local r = app:advance("1s")
  local got = reports(r.published)
  assert.equal("beat-1", got[1].key)
  assert.equal(1, got[1].offset)
  assert.is_nil(got[1].error)
  app:fail_publishes(1)
  r = app:advance("1s")
  got = reports(r.published)
  assert.equal("beat-2", got[1].key)
  assert.equal("Local: Message timed out", got[1].error)
  assert.is_nil(got[1].offset)
  r = app:advance("1s")
  assert.equal(1, #r.errors)
  assert.matches("app.lua:4: grumpy", r.errors[1], 1, true)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)
end)
