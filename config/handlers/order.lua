-- The order handler: one line per order, with where it came from.
return function(order, meta)
  local qty = 0
  for _, item in ipairs(order.items) do qty = qty + item.qty end
  print(("order   %-8s %s[%d]@%d customer %-8s items %d total %.2f"):format(order.orderId,
    meta.topic, meta.partition, meta.offset, order.customer, qty, order.total))
end
