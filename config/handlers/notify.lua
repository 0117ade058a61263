-- The notifications handler: where an email or a push would be sent.
return function(note, meta)
  local to = note.name and (" to %s (%s)"):format(note.name, note.tier or "no tier") or ""
  print(("notify  %-8s %s (key %s)%s"):format(note.orderId, note.text, meta.key, to))
end
