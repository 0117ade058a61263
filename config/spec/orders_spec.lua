-- Handler specs for the example app, written with luka's test kit: no
-- broker, the production pipeline and policies.  Run them with
--   luka test config/spec
local test = require "luka.test"

describe("the order handler", function()
  local app
  before_each(function() app = test.load("config/orders.lua") end)
  after_each(function() app:close() end)

  local function order(id, total, items)
    return { orderId = id, customer = "ada", total = total,
             items = items or { { sku = "book-1", qty = 2 } } }
  end

  it("handles an order and commits it", function()
    local r = app:deliver("orderConsumers", order("o-1", 25), { key = "o-1" })
    assert.equal("handled", r.outcome)
    assert.is_true(r.committed)
    assert.equal(0, #r.published)
  end)

  it("announces a big order on the notifications channel, under the order's key", function()
    local r = app:deliver("orderConsumers", order("o-2", 150), { key = "o-2" })
    assert.equal("handled", r.outcome)
    assert.equal(1, #r.published)
    local note = r.published[1]
    assert.equal("notifications", note.target)
    assert.equal("notifications", note.topic)
    assert.equal("o-2", note.key)
    assert.equal("big order: 150.00", note.payload.text)
    assert.is_string(note.headers.id)
  end)

  it("dead-letters an order without items at once, without retrying", function()
    local r = app:deliver("orderConsumers", order("o-3", 10, {}), { key = "o-3" })
    assert.equal("dead_lettered", r.outcome)
    assert.equal(1, r.attempts)
    assert.same({}, r.retries)
    assert.is_true(r.committed)
    assert.equal("orders_dlt", r.dead_letter.topic)
    assert.equal("o-3", r.dead_letter.key)
    assert.matches("order without items", r.dead_letter.headers["luka-dlt-error"])
  end)

  it("retries a failed publish later and dead-letters it when it keeps failing", function()
    app:fail_publishes(4) -- the first delivery and three delayed retries
    local r = app:deliver("orderConsumers", order("o-4", 200), { key = "o-4" })
    assert.same({ 1000, 2000, 4000 }, r.retries)
    assert.equal("dead_lettered", r.outcome)
  end)

  it("skips an order it has already handled", function()
    assert.equal("handled", app:deliver("orderConsumers", order("o-5", 25)).outcome)
    local again = app:deliver("orderConsumers", order("o-5", 25))
    assert.equal("deduplicated", again.outcome)
    assert.is_true(again.committed)
  end)

  it("sends malformed JSON to the error channel with the parser's position", function()
    local r = app:deliver("orderConsumers", '{"orderId": "o-6",', { key = "o-6" })
    assert.equal("dead_lettered", r.outcome)
    assert.matches("decode error: invalid JSON at line 1", r.error)
  end)
end)

describe("the notifications channel", function()
  it("consumes what the order handler publishes", function()
    local app = test.load("config/orders.lua")
    local r = app:deliver("notifications", { orderId = "o-7", text = "big order: 120.00" }, { key = "o-7" })
    assert.equal("handled", r.outcome)
    app:close()
  end)
end)
