-- orders.lua - the example app: a timer publishes demo orders keyed by
-- orderId; two consumer groups read the same topic, to show competing
-- consumers within a group next to broadcast between groups; big orders
-- go on to a notifications channel, with the customer's record looked up
-- from an HTTP service when ENRICH_URL is set (handlers/order.lua).
--
--   make run                               (embedded broker, until Ctrl-C)
--   luka run config/orders.lua             (against KAFKA_BROKERS)
--   ENRICH_URL=http://127.0.0.1:8080 make run
--                                          (enriching from that service)
--   luka test config/spec                  (its handler specs, no broker)
--
-- With OUTBOX_DB set to a PostgreSQL URL, orders are placed in that
-- database instead (handlers/place_order.lua): an order row and its event
-- in one transaction, and the transactional outbox's relay publishes the
-- events to the orders topic.  Create the outbox table first:
--   OUTBOX_DB=postgres://... luka outbox config/orders.lua --create
local luka = require "luka"

luka.broker { brokers = os.getenv("KAFKA_BROKERS") or "localhost:9092", client_id = "crm" }

luka.topic "orders" { partitions = 4 }
luka.topic "orders_dlt" { partitions = 1 }
luka.publisher "orders" { topic = "orders", key = "orderId", config = { acks = "all" } }

-- Competing consumers: every order is handled once by the group
-- "order_subscriber", however many luka processes run it.
luka.consumer "orderConsumers" {
  topics = { "orders" }, group = "order_subscriber",
  config = { ["auto.offset.reset"] = "earliest" },
  retry = { instant = 1, delayed = { initial = "1s", attempts = 3 } },
  error_channel = "orders_dlt",
  dedup = { key = "orderId", ttl = "1h" },
  concurrency = 16, -- orders of different keys at once: their lookups overlap
  handle = require "handlers.order",
}

-- Broadcast: a second group gets its own copy of every order.
luka.consumer "orderAudit" {
  topics = { "orders" },
  group = "order_audit",
  config = { ["auto.offset.reset"] = "earliest" },
  handle = function(order, meta)
    print(("audit   %-8s %s[%d]@%d total %.2f"):format(order.orderId, meta.topic,
      meta.partition, meta.offset, order.total))
  end,
}

-- A channel: luka.publish("notifications", ...) sends to its topic, and
-- its handler consumes it.
luka.channel "notifications" {
  config = { ["auto.offset.reset"] = "earliest" },
  handle = require "handlers.notify",
}

local OUTBOX_DB = os.getenv("OUTBOX_DB")
if OUTBOX_DB then
  -- The transactional outbox: what the database commits is published.
  luka.outbox "orders" { db = OUTBOX_DB, table = "orders_outbox", publisher = "orders" }
  luka.every("1s", require "handlers.place_order" (OUTBOX_DB))
  return
end

-- Without a database, the timer publishes a demo order itself.
local customers = { "ada", "grace", "linus", "barbara", "ken" }
local n = 0
luka.every("1s", function()
  n = n + 1
  luka.publish("orders", {
    orderId = ("o-%04d"):format(n),
    customer = customers[n % #customers + 1],
    items = { { sku = "book-" .. n % 7, qty = n % 3 + 1 } },
    total = (n % 9 + 1) * 12.5,
  })
end)
