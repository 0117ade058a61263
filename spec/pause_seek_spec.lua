-- meta:pause(duration) pauses the message's partition and delivers the
-- message again after the pause, once, before anything after it in the
-- partition, and nothing after it is committed meanwhile; luka.seek moves
-- an endpoint's partition back, and the messages from that offset are
-- handled again.  Committed offsets are read with KafkaJS.
local H = require "support.helper"

local broker

setup(function()
  broker = H.broker_start { topics = { "ps_pause:1", "ps_pause_c:1", "ps_pause_k:1", "ps_seek:1",
    "ps_control:1" } }
end)

teardown(function() broker.stop() end)

local function committed(group, topic)
  local r = H.node("groups.js", { broker.bootstrap, group, topic })
  assert(r.code == 0 and r.lines[1], r.stderr)
  return r.lines[1].offsets[topic]["0"], r.lines[1].ends[topic]["0"]
end

local function run(env)
  return H.spawn(("%s run spec/fixtures/pause.lua --brokers %s"):format(H.q(H.luka), H.q(broker.bootstrap)),
    { env = env })
end

-- Messages {"n": 1} .. {"n": count} to partition 0; extra[i] is more of
-- message i's JSON.  (Written by hand: dkjson takes a field n for an
-- array's length.)
local function produce(topic, count, extra, keys)
  local msgs = {}
  for i = 1, count do
    msgs[i] = { key = keys and ("k" .. i) or "k", value = ('{"n":%d%s}'):format(i, extra[i] or ""),
                partition = 0 }
  end
  H.kcat_produce(broker.bootstrap, topic, msgs)
end

-- With one key, the messages after the paused one wait behind it; with a
-- key each (concurrency 4), some run meanwhile: they are not committed,
-- and come again after the pause (at least once).
for _, c in ipairs({ { topic = "ps_pause", concurrency = "1" }, { topic = "ps_pause_c", concurrency = "4" },
                     { topic = "ps_pause_k", concurrency = "4", keys = true } }) do
  describe(("meta:pause with concurrency %s%s"):format(c.concurrency, c.keys and ", a key each" or ""), function()
    it("delivers the message again after the pause, handled once, and nothing after it is committed meanwhile", function()
      local out = H.tmpdir() .. "/out.jsonl"
      produce(c.topic, 10, { [3] = ',"pause":"3s"' }, c.keys)
      local app = run { OUT = out, TOPIC = c.topic, GROUP = c.topic, CONCURRENCY = c.concurrency,
        CONTROL = "ps_control" }
      local first = H.wait_until(function()
        for _, r in ipairs(H.jsonl(out)) do if r.paused then return r end end
      end, 30, "the pause")
      -- During the pause: nothing at or after message 3 (offset 2) is committed.
      H.sleep(1.5)
      local during = committed(c.topic, c.topic)
      assert.is_true(during <= 2, "committed " .. tostring(during) .. " during the pause")
      local recs = H.wait_jsonl(out, 11, "10 handled and 1 paused", 30)
      H.wait_until(function() return committed(c.topic, c.topic) == 10 end, 20, "all committed")
      recs = H.jsonl(out)
      local handled, order, third = {}, {}, nil
      for _, r in ipairs(recs) do
        if not r.paused then
          if not c.keys or r.n == 3 then
            assert.is_nil(handled[r.n], "handled twice: " .. H.json_encode(r))
          end
          handled[r.n] = true
          order[#order + 1] = r.n
          if r.n == 3 then third = r end
        end
      end
      for n = 1, 10 do assert.truthy(handled[n], n) end
      -- Again after the pause, the same attempt (a pause is no attempt).
      assert.is_true(third.t - first.t >= 2.9, "redelivered after " .. (third.t - first.t) .. " s")
      assert.equal(1, third.attempt)
      -- With concurrency 1, in the partition's order.
      if c.concurrency == "1" then assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, order) end
      H.wait_until(function() return committed(c.topic, c.topic) == 10 end, 20, "all committed")
      assert.equal(0, app.stop())
      assert.truthy(app.output():find("meta:pause: partition paused for 3000 ms", 1, true), app.output())
    end)
  end)
end

describe("luka.seek", function()
  it("rewinds an endpoint's partition: the messages from that offset are handled again", function()
    local out = H.tmpdir() .. "/out.jsonl"
    produce("ps_seek", 5, {})
    local app = run { OUT = out, TOPIC = "ps_seek", GROUP = "ps_seek", CONTROL = "ps_control" }
    H.wait_jsonl(out, 5, "5 handled", 30)
    H.kcat_produce(broker.bootstrap, "ps_control",
      { H.json_encode({ endpoint = "orders", topic = "ps_seek", partition = 0, offset = 2 }) })
    local recs = H.wait_jsonl(out, 9, "the seek and 3 handled again", 30)
    local count, seek = {}, nil
    for _, r in ipairs(recs) do
      if r.n then count[r.n] = (count[r.n] or 0) + 1 end
      if r.seek ~= nil then seek = r end
    end
    assert.is_true(seek.seek, tostring(seek.err))
    assert.same({ 1, 1, 2, 2, 2 }, count)
    H.wait_until(function() return committed("ps_seek", "ps_seek") == 5 end, 20, "all committed")
    -- A partition the endpoint does not have: nil and why.
    H.kcat_produce(broker.bootstrap, "ps_control",
      { H.json_encode({ endpoint = "orders", topic = "ps_seek", partition = 7, offset = 0 }),
        H.json_encode({ endpoint = "nobody", topic = "ps_seek", partition = 0, offset = 0 }) })
    recs = H.wait_jsonl(out, 11, "two refused seeks", 30)
    assert.equal(false, recs[10].seek)
    assert.truthy(recs[10].err:find("ps_seek[7] is not assigned to endpoint 'orders'", 1, true), recs[10].err)
    assert.truthy(recs[11].err:find("no endpoint 'nobody' runs in this process", 1, true), recs[11].err)
    assert.equal(0, app.stop())
  end)
end)

describe("meta:pause and luka.seek under luka test", function()
  it("shows a paused message as outcome 'paused', uncommitted, with its pause in retries; and refuses misuse", function()
    local app = [[
local luka = require "luka"
luka.consumer "orders" { topics = { "orders" },
  handle = function(msg, meta)
    if msg.wait then meta:pause("2s") return end
    if msg.bad then meta:pause("soon") end
    print("handled", msg.i)
  end }
luka.consumer "control" { topics = { "control" },
  handle = function(msg) assert(luka.seek("orders", "orders", 0, 0)) end }
luka.every("1s", function(meta) end)
]]
    local spec = [[
local test = require "luka.test"
describe("app", function()
  local app = test.load("app.lua")
  it("pauses", function()
    local rs = app:deliver_all("orders", { { { i = 1 } }, { { i = 2, wait = true } }, { { i = 3 } } })
    assert.equal("handled", rs[1].outcome)
    assert.equal("paused", rs[2].outcome)
    assert.is_false(rs[2].committed)
    assert.same({ 2000 }, rs[2].retries)
    assert.equal("dropped", rs[3].outcome)
    assert.equal(1, app:counters("orders").paused)
  end)
  it("refuses a bad duration", function()
    local r = app:deliver("orders", { bad = true })
    assert.equal("stopped", r.outcome)
    assert.truthy(r.error:find("meta:pause takes a duration", 1, true))
  end)
  it("has no partitions to seek", function()
    local r = app:deliver("control", {})
    assert.truthy(r.error:find("has no partitions to seek here", 1, true))
  end)
end)
]]
    H.assert_luka_test_passed(H.luka_test(app, spec), 3)
  end)
end)
