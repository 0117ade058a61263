-- The "place order" timer of the example app when OUTBOX_DB names a
-- PostgreSQL database: each call writes an order row and the event that
-- announces it, an outbox row, in ONE transaction, so the event exists if
-- and only if the order does.  The outbox relay (luka.outbox "orders" in
-- config/orders.lua) publishes the event to the orders topic once the
-- transaction commits.  Returns the timer's function for the database at
-- url; the order table is created on its first call.
local luka = require "luka"

local customers = { "ada", "grace", "linus", "barbara", "ken" }

return function(url)
  local db = luka.pg(url, { pool = 2 })
  local ready = false
  return function()
    if not ready then
      assert(db:query([[CREATE TABLE IF NOT EXISTS shop_orders (
        id bigserial PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL,
        items jsonb NOT NULL, placed_at timestamptz NOT NULL DEFAULT now())]]))
      ready = true
    end
    local n = math.random(1, 1000)
    local order = { customer = customers[n % #customers + 1],
                    items = { { sku = "book-" .. n % 7, qty = n % 3 + 1 } },
                    total = (n % 9 + 1) * 12.5 }
    local ok, err = db:transaction(function(tx)
      local placed = assert(tx:query(
        "INSERT INTO shop_orders (customer, total, items) VALUES ($1, $2, $3) RETURNING id",
        order.customer, order.total, order.items))
      order.orderId = ("o-%04d"):format(placed[1].id)
      assert(tx:query("INSERT INTO orders_outbox (key, payload) VALUES ($1, $2)",
        order.orderId, luka.json.encode(order)))
      return true
    end)
    if not ok then luka.log.error("could not place an order", { error = tostring(err) }) end
  end
end
