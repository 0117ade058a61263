-- Handler specs for the example app, written with luka's test kit: no
-- broker, the production pipeline and policies.  Run them with
--   luka test config/spec
local test = require "luka.test"

-- The app as it loads with ENRICH_URL set to url, or unset (false).
local function load(url) return test.load("config/orders.lua", { env = { ENRICH_URL = url } }) end

local function order(id, total, items, customer)
  return { orderId = id, customer = customer or "ada", total = total,
           items = items or { { sku = "book-1", qty = 2 } } }
end

describe("the order handler", function()
  local app
  before_each(function() app = load(false) end)
  after_each(function() app:close() end)

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
    assert.is_nil(note.payload.name) -- no ENRICH_URL: not enriched
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

-- The customer service the handler looks customers up in: customers.py,
-- beside this file, on a free port.
local function start_customers()
  local here = debug.getinfo(1, "S").source:match("^@(.*)/") or "."
  -- The shell prints its pid, then becomes the server.
  local p = assert(io.popen(("echo $$; exec python3 '%s/customers.py' 0"):format(here)))
  local pid, line = p:read("l"), p:read("l")
  local port = line and line:match("^listening on (%d+)$")
  assert(port, "customers.py did not start: " .. tostring(line))
  return "http://127.0.0.1:" .. port, function()
    os.execute("kill " .. pid)
    p:close()
  end
end

describe("the order handler with ENRICH_URL", function()
  local url, stop, app
  setup(function() url, stop = start_customers() end)
  teardown(function() stop() end)
  after_each(function() app:close() end)

  it("announces a big order with the customer's name and tier", function()
    app = load(url)
    local r = app:deliver("orderConsumers", order("o-8", 150), { key = "o-8" })
    assert.equal("handled", r.outcome)
    assert.same({ orderId = "o-8", customer = "ada", text = "big order: 150.00",
                  name = "Ada Lovelace", tier = "gold" }, r.published[1].payload)
  end)

  it("announces a customer the service does not know without a record", function()
    app = load(url)
    local r = app:deliver("orderConsumers", order("o-9", 150, nil, "nobody"), { key = "o-9" })
    assert.equal("handled", r.outcome)
    assert.is_nil(r.published[1].payload.name)
  end)

  it("looks customers up for many orders at once, each result its own order's", function()
    app = load(url)
    local who = { "ada", "grace", "linus", "barbara", "ken" }
    local list = {}
    for i = 1, 20 do
      local id = ("o-1%02d"):format(i)
      list[i] = { order(id, 100 + i, nil, who[i % 5 + 1]), { key = id } }
    end
    for i, r in ipairs(app:deliver_all("orderConsumers", list)) do
      assert.equal("handled", r.outcome)
      assert.is_true(r.committed)
      assert.equal(("o-1%02d"):format(i), r.published[1].payload.orderId)
      assert.is_string(r.published[1].payload.name)
    end
  end)

  it("retries a big order when the service is down, then dead-letters it; small orders go on", function()
    app = load("http://127.0.0.1:1") -- nothing listens there
    local r = app:deliver("orderConsumers", order("o-10", 150), { key = "o-10" })
    assert.equal("dead_lettered", r.outcome)
    assert.equal(8, r.attempts) -- (1 + 1 instant) x (1 + 3 delayed)
    assert.same({ 1000, 2000, 4000 }, r.retries)
    assert.equal(1, r.error:find("customer lookup: GET http://127.0.0.1:1/customers/ada: ", 1, true))
    assert.equal("orders_dlt", r.dead_letter.topic)
    assert.matches("customer lookup", r.dead_letter.headers["luka-dlt-error"])
    assert.equal("handled", app:deliver("orderConsumers", order("o-11", 25), { key = "o-11" }).outcome)
  end)
end)

describe("the notifications channel", function()
  it("consumes what the order handler publishes", function()
    local app = load(false)
    local r = app:deliver("notifications", { orderId = "o-7", text = "big order: 120.00" }, { key = "o-7" })
    assert.equal("handled", r.outcome)
    app:close()
  end)
end)

-- With OUTBOX_DB (a PostgreSQL URL whose outbox table exists: `luka outbox
-- config/orders.lua --create`), orders are placed in the database and the
-- outbox relay publishes them; spec/outbox_spec.lua runs this against a
-- real server.  Without it, this block is pending.
describe("placing orders through the transactional outbox", function()
  if not os.getenv("OUTBOX_DB") then
    pending("set OUTBOX_DB to a PostgreSQL URL (and run luka outbox config/orders.lua --create)")
    return
  end

  it("writes each order and its event in one transaction; the relay publishes the event", function()
    local app = test.load("config/orders.lua", { env = { ENRICH_URL = false } })
    local r = app:advance("1s")
    assert.same({}, r.errors)
    local events = {}
    for _, m in ipairs(r.published) do
      if m.target == "orders" then events[#events + 1] = m end
    end
    assert.equal(1, #events)
    local e = events[1]
    assert.equal("orders", e.topic)
    assert.matches("^o%-%d+$", e.payload.orderId)
    assert.equal(e.payload.orderId, e.key)
    assert.matches("^%d+$", e.headers.id) -- the outbox row's id
    -- The next second's order comes with the next row id.
    r = app:advance("1s")
    local next_id
    for _, m in ipairs(r.published) do
      if m.target == "orders" then next_id = tonumber(m.headers.id) end
    end
    assert.equal(tonumber(e.headers.id) + 1, next_id)
    app:close()
  end)
end)
