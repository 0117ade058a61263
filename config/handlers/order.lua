-- The order handler: one line per order, with where it came from; orders
-- of 100 or more are announced on the notifications channel.
local luka = require "luka"

return function(order, meta)
  if type(order) ~= "table" or type(order.items) ~= "table" or #order.items == 0 then
    -- Retrying cannot fix a malformed order: straight to the error channel.
    luka.fatal("order without items")
  end
  local qty = 0
  for _, item in ipairs(order.items) do qty = qty + item.qty end
  print(("order   %-8s %s[%d]@%d customer %-8s items %d total %.2f"):format(order.orderId,
    meta.topic, meta.partition, meta.offset, order.customer, qty, order.total))
  if order.total >= 100 then
    -- No key given: it inherits this order's key, so an order's events
    -- stay in one partition.
    luka.publish("notifications", { orderId = order.orderId, customer = order.customer,
                                    text = ("big order: %.2f"):format(order.total) })
  end
end
