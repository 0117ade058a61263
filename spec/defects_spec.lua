-- Defects found by acceptance and adversarial testing, each shown by the
-- behaviour it broke: results of user calls after a failure, a time limit
-- against coroutines the handler runs, error objects that cannot describe
-- themselves, and a decoder entered again from a finalizer.
local H = require "support.helper"

local luka_test, assert_passed = H.luka_test, H.assert_luka_test_passed

describe("a user call after a failed one", function()
  it("keys dedup by the message, not by the previous failure's error", function()
    local r = luka_test([[
local luka = require "luka"
luka.consumer "orders" { topics = { "orders" }, error_channel = "orders.dlt",
  dedup = { key = "orderId" },
  handle = function(msg)
    if not msg.items then luka.fatal("order " .. msg.orderId .. " has no items") end
  end }
]], [[
local test = require "luka.test"
it("handles D although C failed like A", function()
  local app = test.load("app.lua")
  assert.equal("dead_lettered", app:deliver("orders", { orderId = "A" }).outcome)
  assert.equal("handled", app:deliver("orders", { orderId = "B", items = { 1 } }).outcome)
  assert.equal("dead_lettered", app:deliver("orders", { orderId = "C" }).outcome)
  assert.equal("handled", app:deliver("orders", { orderId = "D", items = { 1 } }).outcome)
  assert.equal("deduplicated", app:deliver("orders", { orderId = "D", items = { 1 } }).outcome)
  app:close()
end)
]])
    assert_passed(r, 1)
  end)

  it("returns every result of interleaved failing and succeeding calls (property)", function()
    -- Three kinds of message in random runs: handled, failing in the
    -- handler, failing in the dedup key function.  With a time limit every
    -- call reuses one coroutine, so each call after a failure is checked.
    local r = luka_test([[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, timeout = "5s", final_failure = "ignore",
  dedup = { key = function(msg)
    if msg.kind == "nokey" then error("no key for this one") end
    return "k" .. msg.n
  end },
  handle = function(msg)
    if msg.kind == "fail" then error("handler failed") end
  end }
]], [[
local test = require "luka.test"
it("reports each message by its own outcome and key", function()
  local app = test.load("app.lua")
  math.randomseed(42)
  local kinds, expect = { "ok", "fail", "nokey" }, { ok = "handled", fail = "ignored", nokey = "handled" }
  local keyed = {}
  for n = 1, 300 do
    local kind = kinds[math.random(3)]
    assert.equal(expect[kind], app:deliver("c", { n = n, kind = kind }).outcome, "message " .. n)
    if kind == "ok" then keyed[#keyed + 1] = n end
  end
  -- Each handled key was recorded by its own value: it comes back as a duplicate.
  for _, n in ipairs(keyed) do
    assert.equal("deduplicated", app:deliver("c", { n = n, kind = "ok" }).outcome, "again " .. n)
  end
  app:close()
end)
]])
    assert_passed(r, 1)
  end)
end)

describe("a handler's time limit", function()
  it("fails the handler as timed out even when the limit strikes inside a generator it runs", function()
    local r = luka_test([[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, timeout = "200ms", final_failure = "ignore",
  handle = function(msg)
    -- A generator whose items are slow to make: the limit strikes inside it.
    local items = coroutine.wrap(function()
      for i = 1, 50 do
        local t = os.clock()
        while os.clock() - t < 0.02 do end
        coroutine.yield(i)
      end
    end)
    local n = 0
    for _ in items do n = n + 1 end
    -- Only a handler cut short gets here with fewer than 50.
    if n < 50 then luka.publish("out", { truncated = n }) end
  end }
luka.publisher "out" {}
]], [[
local test = require "luka.test"
it("is not a success", function()
  local app = test.load("app.lua")
  local r = app:deliver("c", { id = 1 })
  assert.equal("ignored", r.outcome)
  assert.matches("timed out after 200 ms", r.error)
  assert.equal(0, #r.published)
  app:close()
end)
]])
    assert_passed(r, 1)
  end)

  it("fails the handler as timed out when it catches its generator's failure and returns", function()
    -- The generator spins without yielding, so the limit strikes inside it
    -- (the handler runs no instruction meanwhile); the handler ignores the
    -- failed resume and returns as if it had succeeded.
    local r = luka_test([[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, timeout = "200ms", final_failure = "ignore",
  handle = function(msg)
    local gen = coroutine.create(function() while true do end end)
    coroutine.resume(gen)
  end }
]], [[
local test = require "luka.test"
it("is not a success", function()
  local app = test.load("app.lua")
  for _ = 1, 3 do
    local r = app:deliver("c", { id = 1 })
    assert.equal("ignored", r.outcome)
    assert.matches("timed out after 200 ms", r.error)
  end
  app:close()
end)
]])
    assert_passed(r, 1)
  end)
end)

describe("an error value that cannot describe itself", function()
  for _, case in ipairs {
    { "a __tostring that raises", "setmetatable({}, { __tostring = function() error('formatter broke') end })" },
    { "an __index that raises", "setmetatable({}, { __index = function() error('no such field') end })" },
  } do
    it("fails the message with its type name when it has " .. case[1], function()
      local r = luka_test(([[
local luka = require "luka"
luka.consumer "c" { topics = { "t" }, final_failure = "ignore",
  handle = function(msg) error(%s) end }
luka.consumer "plain" { topics = { "p" }, timeout = "0s", final_failure = "ignore",
  handle = function(msg) error(%s) end }
]]):format(case[2], case[2]), [[
local test = require "luka.test"
it("is described by its type", function()
  local app = test.load("app.lua")
  for _, ep in ipairs { "c", "plain", "c" } do
    local r = app:deliver(ep, { id = 1 })
    assert.equal("ignored", r.outcome)
    assert.matches("table value", r.error)
  end
  app:close()
end)
]])
      assert_passed(r, 1)
    end)
  end
end)

describe("a finalizer that decodes JSON", function()
  it("does not disturb the payload being decoded", function()
    local r = luka_test([[
local luka = require "luka"
local seen = 0
luka.consumer "c" { topics = { "t" }, final_failure = "ignore",
  handle = function(msg)
    -- Garbage whose finalizers decode while the next payload is decoded.
    for i = 1, 200 do
      setmetatable({}, { __gc = function()
        local d = luka.json.decode('{"inner":[1,2,3,{"deep":"x"}],"s":"' .. ("y"):rep(200) .. '"}')
        assert(d.inner[4].deep == "x")
      end })
    end
    assert(#msg.items == 100, "items: " .. #msg.items)
    for i, it in ipairs(msg.items) do
      assert(it.n == i and it.name == "item-" .. i, "item " .. i)
    end
  end }
]], [[
local test = require "luka.test"
it("decodes every message whole", function()
  local app = test.load("app.lua")
  local items = {}
  for i = 1, 100 do items[i] = { n = i, name = "item-" .. i } end
  for n = 1, 200 do
    local r = app:deliver("c", { items = items })
    assert.equal("handled", r.outcome, r.error)
  end
  app:close()
end)
]])
    assert_passed(r, 1)
  end)
end)
