{ topics = { "t" }, handle = function(msg) luka.publish("p", msg) end }
luka.publisher "p" { topic = "out", key = "id", config = { ["linger.ms"] = 5 } }
luka.channel "ch" { key = function(p) return p.k end, handle = function() end }
luka.topic "out" { partitions = 3, replication = 1, config = { ["retention.ms"] = "1000" } }
luka.broker { brokers = "localhost:9092", client_id = "fuzz" }