#!/usr/bin/env python3
"""customers.py - a customer service for the example app's enrichment
(config/handlers/order.lua), started by config/spec/orders_spec.lua, and
to try `make run` with:

    python3 config/spec/customers.py [PORT]      (0 or none: a free port)
    ENRICH_URL=http://127.0.0.1:PORT make run

Prints "listening on PORT" once it accepts.  GET /customers/ID answers
the customer as JSON, or 404 for one it does not know; a thread per
connection, so the handler's lookups are answered at once.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CUSTOMERS = {
    "ada": {"name": "Ada Lovelace", "tier": "gold"},
    "grace": {"name": "Grace Hopper", "tier": "gold"},
    "linus": {"name": "Linus Torvalds", "tier": "silver"},
    "barbara": {"name": "Barbara Liskov", "tier": "silver"},
    "ken": {"name": "Ken Thompson", "tier": "bronze"},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        parts = self.path.split("/")
        customer = CUSTOMERS.get(parts[2]) if len(parts) == 3 and parts[1] == "customers" else None
        if customer:
            status, body = 200, json.dumps(dict(customer, id=parts[2])).encode()
        else:
            status, body = 404, b'{"error":"no such customer"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
