-- The test kit with handlers that wait: luka.sleep and luka.publish's wait
-- under `luka test`, the handler timeout counting the wait, and
-- app:deliver_all running a batch through the endpoint's concurrency and
-- ordering, as production does.
local H = require "support.helper"

-- A handler that records when it ran: it sleeps msg.ms and publishes its
-- span, so the spec reads it back from the message's own result.
local SPANS = [[
local luka = require "luka"
luka.publisher "spans" {}
local function span(msg, meta)
  local start = luka.now()
  assert(luka.sleep(msg.ms or 0))
  luka.publish("spans", { n = msg.n, key = meta.key, partition = meta.partition,
                          start = start, stop = luka.now() })
end
]]

describe("luka test with waiting handlers", function()
  it("runs luka.sleep in a handler, and fails a handler whose timeout passes while it waits", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.consumer "c" { topics = { "in" }, handle = function(msg)
  local ok, err = luka.sleep(msg.ms)
  luka.publish("out", { slept = ok, err = err })
end }
luka.consumer "slow" { topics = { "slow" }, timeout = "100ms", retry = { instant = 1 },
  error_channel = "slow_dlt", handle = function() luka.sleep("5s") end }
]], [[
local test = require "luka.test"
local app
before_each(function() app = test.load("app.lua") end)
after_each(function() app:close() end)

it("sleeps and goes on", function()
  local r = app:deliver("c", { ms = 30 })
  assert.equal("handled", r.outcome)
  assert.is_true(r.committed)
  assert.same({ slept = true }, r.published[1].payload)
end)

it("times out naming the wait, then takes the policies", function()
  local t0 = os.time()
  local r = app:deliver("slow", {})
  assert.equal("dead_lettered", r.outcome)
  assert.equal(2, r.attempts)
  assert.equal("timed out after 100 ms waiting for luka.sleep(5000 ms)", r.error)
  assert.equal("slow_dlt", r.dead_letter.topic)
  assert.matches("waiting for luka.sleep", r.dead_letter.headers["luka-dlt-error"])
  assert.is_true(os.time() - t0 < 4)
end)
]])
    H.assert_luka_test_passed(r, 2)
  end)

  it("refuses luka.sleep while the script loads, saying why, and waits in a timer callback", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "out" {}
local ok, err = luka.sleep(10)
luka.publish("out", { where = "load", got = tostring(ok), err = err })
luka.after("1s", function()
  local ok2, err2 = luka.sleep(10)
  luka.publish("out", { where = "timer", got = tostring(ok2), err = err2 })
end)
]], [[
local test = require "luka.test"
it("returns nil and why", function()
  local app = test.load("app.lua")
  local loaded = app:published()[1].payload
  assert.equal("nil", loaded.got)
  assert.matches("^luka.sleep: it can only wait inside a handler, an error channel function or "
    .. "a timer callback, not while the app script loads", loaded.err)
  local r = app:advance("1s")
  assert.equal(1, r.fired)
  assert.same({}, r.errors)
  assert.equal("true", r.published[1].payload.got)
  assert.is_nil(r.published[1].payload.err)
  app:close()
end)
]])
    H.assert_luka_test_passed(r, 1)
  end)

  it("acknowledges luka.publish's wait, and fails it when app:fail_publishes says so", function()
    local r = H.luka_test([[
local luka = require "luka"
luka.publisher "out" {}
luka.publisher "results" {}
luka.consumer "c" { topics = { "in" }, handle = function(msg)
  local id, err = luka.publish("out", msg, { wait = true })
  luka.publish("results", { id = id, err = err })
end }
]], [[
local test = require "luka.test"
local app
before_each(function() app = test.load("app.lua") end)
after_each(function() app:close() end)

it("returns the id once the broker acknowledged", function()
  local r = app:deliver("c", { n = 1 })
  assert.equal("handled", r.outcome)
  assert.equal("out", r.published[1].target)
  assert.equal(r.published[1].headers.id, r.published[2].payload.id)
end)

it("returns nil and the error when the publish fails; the handler decides", function()
  app:fail_publishes(1)
  local r = app:deliver("c", { n = 2 })
  assert.equal("handled", r.outcome)
  assert.is_nil(r.published[2].payload.id)
  assert.matches("^not delivered: ", r.published[2].payload.err)
end)
]])
    H.assert_luka_test_passed(r, 2)
  end)

  describe("app:deliver_all", function()
    -- Spans of the results, in input order, and checks over them.
    local CHECKS = [[
local test = require "luka.test"
local function spans(results)
  local out = {}
  for i, r in ipairs(results) do
    assert.equal("handled", r.outcome)
    assert.is_true(r.committed)
    out[i] = r.published[1].payload
    assert.equal(i, out[i].n) -- each result is its own message's, in input order
  end
  return out
end
local function overlap(a, b) return a.start < b.stop and b.start < a.stop end
local function serial(list)
  for i = 2, #list do assert.is_true(list[i - 1].stop <= list[i].start, "ran out of order") end
end
local function most_at_once(list)
  local most = 0
  for _, s in ipairs(list) do
    local n = 0
    for _, o in ipairs(list) do if o.start <= s.start and s.start < o.stop then n = n + 1 end end
    most = math.max(most, n)
  end
  return most
end
local function batch(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = { { n = i, ms = m.ms or 100 }, m.meta } end
  return out
end
]]

    it("runs keys at once and each key's messages in order, under ordering \"key\"", function()
      local r = H.luka_test(SPANS .. [[
luka.consumer "c" { topics = { "in" }, concurrency = 4, ordering = "key", handle = span }
]], CHECKS .. [[
it("overlaps keys, serialises a key", function()
  local app = test.load("app.lua")
  local keys = { "a", "b", "c", "d", "a", "b", "c", "d", "a" }
  local list = {}
  for i, k in ipairs(keys) do list[i] = { meta = { key = k } } end
  local s = spans(app:deliver_all("c", batch(list)))
  assert.is_true(overlap(s[1], s[2]) and overlap(s[1], s[4]) and overlap(s[2], s[3]))
  serial({ s[1], s[5], s[9] })
  serial({ s[2], s[6] })
  assert.equal(4, most_at_once(s))
  app:close()
end)
]])
      H.assert_luka_test_passed(r, 1)
    end)

    it("runs partitions at once and each partition's messages in order, under ordering \"partition\"", function()
      local r = H.luka_test(SPANS .. [[
luka.consumer "c" { topics = { "in" }, concurrency = 4, ordering = "partition", handle = span }
]], CHECKS .. [[
it("overlaps partitions, serialises a partition whatever the keys", function()
  local app = test.load("app.lua")
  local list = {}
  for i = 1, 6 do list[i] = { meta = { partition = (i - 1) % 2, key = "k" .. i } } end
  local s = spans(app:deliver_all("c", batch(list)))
  assert.is_true(overlap(s[1], s[2]))
  serial({ s[1], s[3], s[5] })
  serial({ s[2], s[4], s[6] })
  assert.equal(2, most_at_once(s))
  app:close()
end)
]])
      H.assert_luka_test_passed(r, 1)
    end)

    it("runs any message in a free slot under ordering \"none\", at most concurrency at once", function()
      local r = H.luka_test(SPANS .. [[
luka.consumer "c" { topics = { "in" }, concurrency = 3, ordering = "none", handle = span }
luka.consumer "one" { topics = { "one" }, handle = span }
]], CHECKS .. [[
it("overlaps messages of one key, three at a time", function()
  local app = test.load("app.lua")
  local list = {}
  for i = 1, 7 do list[i] = { meta = { key = "same" } } end
  local s = spans(app:deliver_all("c", batch(list)))
  assert.is_true(overlap(s[1], s[2]) and overlap(s[2], s[3]))
  assert.equal(3, most_at_once(s))
  app:close()
end)

it("runs one at a time without concurrency, in order", function()
  local app = test.load("app.lua")
  local s = spans(app:deliver_all("one", batch({ { ms = 20 }, { ms = 0 }, { ms = 10 } })))
  serial(s)
  app:close()
end)
]])
      H.assert_luka_test_passed(r, 2)
    end)

    it("retries at once, holding back what follows in the lane (concurrency) or the partition (seek back)", function()
      local r = H.luka_test([[
local luka = require "luka"
luka.publisher "calls" {}
local function handle(msg, meta)
  luka.publish("calls", { n = msg.n, attempt = meta.attempt })
  luka.sleep(msg.ms or 0)
  if msg.fail and meta.attempt <= msg.fail then error("failing " .. msg.n) end
end
local retry = { delayed = { initial = "1s", attempts = 2 } }
luka.consumer "many" { topics = { "m" }, concurrency = 4, ordering = "key", retry = retry,
  final_failure = "ignore", handle = handle }
luka.consumer "one" { topics = { "o" }, retry = retry, error_channel = "dlt", handle = handle }
]], [[
local test = require "luka.test"
local function calls(app)
  local out = {}
  for _, p in ipairs(app:published()) do
    if p.target == "calls" then out[#out + 1] = p.payload.n .. "#" .. p.payload.attempt end
  end
  return table.concat(out, " ")
end
local app
before_each(function() app = test.load("app.lua") end)
after_each(function() app:close() end)

it("in memory under concurrency: other keys go on, the key waits for its retry", function()
  local t0 = os.time()
  local r = app:deliver_all("many", {
    { { n = 1, fail = 1, ms = 200 }, { key = "a" } },
    { { n = 2 }, { key = "a" } },
    { { n = 3, ms = 10 }, { key = "b" } },
    { { n = 4, fail = 9 }, { key = "c" } },
  })
  assert.equal("1#1 3#1 4#1 4#2 4#3 1#2 2#1", calls(app))
  assert.same({ "handled", "handled", "handled", "ignored" },
    { r[1].outcome, r[2].outcome, r[3].outcome, r[4].outcome })
  assert.same({ 1000 }, r[1].retries)
  assert.equal(2, r[1].attempts)
  assert.same({}, r[2].retries)
  assert.same({ 1000, 2000 }, r[4].retries)
  assert.matches("failing 4", r[4].error)
  assert.equal(3, #r[4].published)
  for i = 1, 4 do assert.is_true(r[i].committed) end
  assert.is_true(os.time() - t0 < 3) -- the backoffs are not waited
end)

it("by a seek back without concurrency: the message and all behind it come again", function()
  local r = app:deliver_all("one", {
    { { n = 1 }, { partition = 0 } },
    { { n = 2, fail = 1 }, { partition = 0 } },
    { { n = 3 }, { partition = 0 } },
    { { n = 4 }, { partition = 1 } },
    { { n = 5, fail = 9 }, { partition = 1 } },
  })
  assert.equal("1#1 2#1 4#1 5#1 2#2 3#1 5#2 5#3", calls(app))
  assert.same({ "handled", "handled", "handled", "handled", "dead_lettered" },
    { r[1].outcome, r[2].outcome, r[3].outcome, r[4].outcome, r[5].outcome })
  assert.same({ 1000 }, r[2].retries)
  assert.equal("dlt", r[5].dead_letter.topic)
  assert.same({ 1, 1, 0 }, { r[5].offset, r[2].offset, r[4].offset })
end)
]])
      H.assert_luka_test_passed(r, 2)
    end)

    it("shows a release once, stops the batch on a final stop, and checks its list", function()
      local r = H.luka_test([[
local luka = require "luka"
local function handle(msg) if msg.fail then error("no") end end
luka.consumer "rel" { topics = { "r" }, concurrency = 2, final_failure = "release", handle = handle }
luka.consumer "rel1" { topics = { "r1" }, final_failure = "release", handle = handle }
luka.consumer "stop" { topics = { "s" }, handle = handle }
]], [[
local test = require "luka.test"
local app
before_each(function() app = test.load("app.lua") end)
after_each(function() app:close() end)

local function outcomes(r)
  local o, c = {}, {}
  for i, x in ipairs(r) do o[i], c[i] = x.outcome, x.committed end
  return o, c
end

it("releases once, in memory: its key waits behind it, its offset holds the commit back", function()
  local o, c = outcomes(app:deliver_all("rel", {
    { { fail = true }, { key = "a" } }, { {}, { key = "b" } }, { {}, { key = "a" } } }))
  assert.same({ "released", "handled", "dropped" }, o)
  assert.same({ false, false, false }, c)
  assert.equal(1, app:counters("rel").released)
end)

it("releases once, by a seek back: its partition waits behind it", function()
  local o, c = outcomes(app:deliver_all("rel1", {
    { { fail = true }, { partition = 0 } }, { {}, { partition = 0 } }, { {}, { partition = 1 } } }))
  assert.same({ "released", "dropped", "handled" }, o)
  assert.same({ false, false, true }, c)
end)

it("stops: what follows is dropped, and the next delivery runs again", function()
  local r = app:deliver_all("stop", { { {} }, { { fail = true } }, { {} } })
  assert.same({ "handled", "stopped", "dropped" }, { r[1].outcome, r[2].outcome, r[3].outcome })
  assert.same({ true, false, false }, { r[1].committed, r[2].committed, r[3].committed })
  assert.equal("handled", app:deliver("stop", {}).outcome)
end)

it("names a bad entry", function()
  assert.has_error(function() app:deliver_all("stop", { "x" }) end,
    "deliver_all: message 1: give { payload, meta }, not string")
  assert.has_error(function() app:deliver_all("stop", { { {}, 5 } }) end,
    "deliver_all: message 1: meta must be a table, not number")
  assert.same({}, app:deliver_all("stop", {}))
end)
]])
      H.assert_luka_test_passed(r, 4)
    end)
  end)
end)
