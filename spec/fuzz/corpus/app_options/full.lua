{
  topics = { "orders", "returns" }, group = "g", format = "json",
  config = { ["auto.offset.reset"] = "earliest", ["session.timeout.ms"] = 6000 },
  retry = { instant = 2, delayed = { initial = "1s", multiplier = 2, max = "30s", attempts = 3, jitter = true } },
  error_channel = "orders.dlt", final_failure = "release", timeout = "250ms",
  dedup = { key = "id", ttl = "24h", store = "memory", max_entries = 1000 },
  handle = function(msg, meta) return msg.id end,
}