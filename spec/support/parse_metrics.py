# parse_metrics.py - read Prometheus text on stdin with Debian's
# prometheus_client parser and print {"types": {family: type}, "samples":
# [{name, labels, value}]} as JSON (spec/support/helper.lua's H.metrics).
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {"types": {}, "samples": []}
for family in text_string_to_metric_families(sys.stdin.read()):
    out["types"][family.name] = family.type
    for s in family.samples:
        out["samples"].append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
