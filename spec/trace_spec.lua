-- Correlation and trace context: what a handler publishes carries the
-- input's correlation-id (or its id), its id as causation-id, and a W3C
-- traceparent continuing its trace (or starting one), checked across two
-- hops by KafkaJS reading the headers.
local H = require "support.helper"

local broker
local TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

setup(function() broker = H.broker_start { topics = { "trace_in:1", "trace_mid:1", "trace_out:1" } } end)
teardown(function() broker.stop() end)

-- The parts of a valid version 00 traceparent, or raises.
local function traceparent(value)
  assert.is_string(value, "a traceparent header")
  local trace, span, flags = value:match("^00%-(%x+)%-(%x+)%-(%x%x)$")
  assert.truthy(trace and #trace == 32 and #span == 16, value)
  assert.equal(value:lower(), value)
  assert.is_nil(trace:match("^0+$"))
  assert.is_nil(span:match("^0+$"))
  return trace, span, flags
end

-- The messages KafkaJS reads from topic, by their payload's n.
local function read(topic, count)
  local r = H.node("consume.js", { broker.bootstrap, topic, tostring(count), "reader-" .. topic, "30000" })
  assert.equal(0, r.code, r.stderr)
  local by = {}
  for _, m in ipairs(r.lines) do
    local payload = H.json_decode(m.value)
    by[payload.n] = { headers = m.headers, trace = payload.trace }
  end
  return by
end

describe("trace and correlation headers", function()
  it("follow a message through consume, publish and consume again", function()
    local produced = H.node("produce.js", { broker.bootstrap, "trace_in" }, { messages = {
      { value = '{"n":1}', headers = { id = "in-1", traceparent = ("00-%s-%s-00"):format(TRACE, SPAN),
                                       tracestate = "vendor=x" } },
      { value = '{"n":2}', headers = { id = "in-2", ["correlation-id"] = "order-77" } },
      { value = '{"n":3}', headers = { id = "in-3", traceparent = "00-" .. TRACE:upper() .. "-" .. SPAN .. "-01" } },
      { value = '{"n":4}' },
    } })
    assert.equal(0, produced.code, produced.stderr)
    local p = H.spawn(("%s run spec/fixtures/trace.lua --brokers %s --log-format json --log-level debug"):format(
      H.luka, broker.bootstrap))
    local mid, out = read("trace_mid", 4), read("trace_out", 4)
    assert.equal(0, p.stop())

    -- 1: the input's trace goes on, with a new span per hop and its flags.
    local t, s, f = traceparent(mid[1].headers.traceparent)
    assert.same({ TRACE, "00" }, { t, f })
    assert.are_not.equal(SPAN, s)
    assert.equal(TRACE, mid[1].trace, "meta.trace_id")
    assert.equal("vendor=x", mid[1].headers.tracestate)
    assert.same({ "in-1", "in-1" }, { mid[1].headers["correlation-id"], mid[1].headers["causation-id"] })
    local t2, s2, f2 = traceparent(out[1].headers.traceparent)
    assert.same({ TRACE, "00" }, { t2, f2 })
    assert.are_not.equal(s, s2)
    assert.equal("in-1", out[1].headers["correlation-id"], "the first message's id correlates both hops")
    assert.equal(mid[1].headers.id, out[1].headers["causation-id"])

    -- 2: no traceparent: a new trace, continued by the second hop; the
    -- input's correlation-id is kept.
    t, s, f = traceparent(mid[2].headers.traceparent)
    assert.are_not.equal(TRACE, t)
    assert.equal("01", f)
    assert.equal(t, mid[2].trace)
    assert.same({ "order-77", "in-2" }, { mid[2].headers["correlation-id"], mid[2].headers["causation-id"] })
    t2, s2 = traceparent(out[2].headers.traceparent)
    assert.equal(t, t2)
    assert.are_not.equal(s, s2)
    assert.same({ "order-77", mid[2].headers.id }, { out[2].headers["correlation-id"], out[2].headers["causation-id"] })

    -- 3: a malformed traceparent (upper-case hex) is ignored: a new trace.
    t = traceparent(mid[3].headers.traceparent)
    assert.are_not.equal(TRACE, t)
    assert.equal(t, traceparent(out[3].headers.traceparent))

    -- 4: no id: nothing to correlate with or be caused by, until the
    -- first message luka made, whose id the second hop takes.
    t = traceparent(mid[4].headers.traceparent)
    assert.is_nil(mid[4].headers["correlation-id"])
    assert.is_nil(mid[4].headers["causation-id"])
    assert.equal(t, traceparent(out[4].headers.traceparent))
    assert.same({ mid[4].headers.id, mid[4].headers.id },
      { out[4].headers["correlation-id"], out[4].headers["causation-id"] })

    -- Log lines carry the trace: luka.log's and luka's own.
    local hop, ignored
    for line in p.output():gmatch("[^\n]+") do
      local j = H.json_decode(line)
      if j.message == "first hop" and j.n == 1 then hop = j end
      if j.component == "trace" then ignored = j end
    end
    assert.equal(TRACE, hop.trace_id)
    assert.equal("in-1", hop.message_id)
    assert.truthy(ignored.message:find("ignored (not lower-case hex)", 1, true), ignored.message)
    assert.same({ "debug", "first", 2, mid[3].trace }, { ignored.level, ignored.endpoint, ignored.offset, ignored.trace_id })
  end)

  it("are not added where the publish sets them, start a new trace outside handlers, and leave dead letters as they came", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, error_channel = "dlt",
  handle = function(msg)
    if msg.fail then error("no") end
    luka.publish("out", { n = 1 }, { headers = { ["correlation-id"] = "mine", ["causation-id"] = "cause",
      traceparent = "00-11111111111111111111111111111111-2222222222222222-01" } })
  end }
luka.after("1s", function() luka.publish("out", { timer = true }) end)
local kept
luka.consumer "k" { topics = { "k" }, handle = function(msg, meta)
  if msg.keep then kept = meta return end
  luka.publish("out", { mine = meta.trace_id, kept = kept and kept.trace_id or "none" })
end }
]], [[
local test = require "luka.test"
local TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
it("keeps a publish's own headers", function()
  local app = test.load("app.lua")
  local h = app:deliver("c", {}, { headers = { id = "m-1", traceparent = TP } }).published[1].headers
  assert.same({ "mine", "cause", "00-11111111111111111111111111111111-2222222222222222-01" },
    { h["correlation-id"], h["causation-id"], h.traceparent })
  app:close()
end)
it("starts a trace per message outside handlers, with nothing to correlate", function()
  local app = test.load("app.lua")
  local h = app:advance("1s").published[1].headers
  assert.matches("^00%-%x+%-%x+%-01$", h.traceparent)
  assert.is_nil(h["correlation-id"])
  assert.is_nil(h["causation-id"])
  app:close()
end)
it("gives meta.trace_id to the handler of its message only", function()
  local app = test.load("app.lua")
  app:deliver("k", { keep = true })
  local p = app:deliver("k", {}, { headers = { traceparent = TP } }).published[1]
  assert.same({ mine = "0af7651916cd43dd8448eb211c80319c", kept = "none" }, p.payload)
  assert.matches("^00%-0af7651916cd43dd8448eb211c80319c%-", p.headers.traceparent)
  app:close()
end)
it("dead-letters the input's headers", function()
  local app = test.load("app.lua")
  local h = app:deliver("c", { fail = true }, { headers = { id = "m-2", traceparent = TP } }).dead_letter.headers
  assert.equal(TP, h.traceparent)
  assert.equal("m-2", h.id)
  assert.is_nil(h["causation-id"])
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 4)
  end)
end)
