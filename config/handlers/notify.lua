-- The notifications handler: where an email or a push would be sent.
return function(note, meta)
  print(("notify  %-8s %s (key %s)"):format(note.orderId, note.text, meta.key))
end
