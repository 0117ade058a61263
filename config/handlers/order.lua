-- The order handler: one line per order, with where it came from; orders
-- of 100 or more are announced on the notifications channel.  When the
-- environment names a customer service in ENRICH_URL (read as the app
-- loads), the announcement carries the customer's name and tier from
-- GET $ENRICH_URL/customers/<id>; the handler waits for the answer without
-- blocking the loop, so the endpoint's other orders go on meanwhile.
-- Without ENRICH_URL announcements go out as they are, and the first order
-- says so.
local luka = require "luka"

local ENRICH_URL = os.getenv("ENRICH_URL")
local said = false

-- The customer's record ({} for one the service does not know).  Raises
-- when the service cannot answer, so the order is retried and, in the
-- end, dead-lettered, like any failure.
local function lookup(id)
  local path = id:gsub("[^%w%-._~]", function(c) return ("%%%02X"):format(c:byte()) end)
  local res, err = luka.http.request { url = ENRICH_URL .. "/customers/" .. path, timeout = "1s" }
  if not res then error("customer lookup: " .. err, 0) end
  if res.status == 404 then return {} end
  if res.status ~= 200 then error(("customer lookup: %s answered %d"):format(id, res.status), 0) end
  local customer, why = luka.json.decode(res.body)
  if type(customer) ~= "table" then error("customer lookup: not a JSON object: " .. (why or res.body), 0) end
  return customer
end

return function(order, meta)
  if type(order) ~= "table" or type(order.items) ~= "table" or #order.items == 0 then
    -- Retrying cannot fix a malformed order: straight to the error channel.
    luka.fatal("order without items")
  end
  if not ENRICH_URL and not said then
    said = true
    print("order   ENRICH_URL is not set: big orders are announced without the customer's record")
  end
  local qty = 0
  for _, item in ipairs(order.items) do qty = qty + item.qty end
  print(("order   %-8s %s[%d]@%d customer %-8s items %d total %.2f"):format(order.orderId,
    meta.topic, meta.partition, meta.offset, order.customer, qty, order.total))
  if order.total >= 100 then
    local note = { orderId = order.orderId, customer = order.customer,
                   text = ("big order: %.2f"):format(order.total) }
    if ENRICH_URL and type(order.customer) == "string" then
      local customer = lookup(order.customer)
      note.name, note.tier = customer.name, customer.tier
    end
    -- No key given: it inherits this order's key, so an order's events
    -- stay in one partition.
    luka.publish("notifications", note)
  end
end
