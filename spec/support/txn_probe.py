"""txn_probe.py BOOTSTRAP TOPIC - what a read_committed reader sees of
committed, aborted and open transactions on one partition.

Used by spec/txn_spec.lua to show, with confluent-kafka-python (a client
of its own, on librdkafka), why exactly-once cannot be shown against the
embedded broker: it prints one JSON document
  {"read_committed": [...values...], "read_uncommitted": [...], "high": N}
A broker that isolates transactions shows read_committed only "committed"
and counts a marker offset after each transaction in "high"."""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "txn-probe"})
p.init_transactions(10)
p.begin_transaction()
p.produce(topic, b"committed", partition=0)
p.commit_transaction(10)
p.begin_transaction()
p.produce(topic, b"aborted", partition=0)
p.flush(10)
p.abort_transaction(10)
p.begin_transaction()
p.produce(topic, b"open", partition=0)
p.flush(10)

out = {}
for iso in ("read_committed", "read_uncommitted"):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "txn-probe-" + iso,
                  "isolation.level": iso, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    seen, deadline = [], time.time() + 5
    while time.time() < deadline and len(seen) < 3:
        m = c.poll(0.2)
        if m is not None and not m.error():
            seen.append(m.value().decode())
    out[iso] = seen
    out["high"] = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1]
    c.close()
print(json.dumps(out))
