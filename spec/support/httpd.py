#!/usr/bin/env python3
"""httpd.py - the HTTP server spec/httpc_spec.lua talks to.

    python3 spec/support/httpd.py [PORT]    (0 or none: a free port)

Prints "listening on PORT" once it accepts, and "httpd: got METHOD PATH"
on stderr as each request arrives.  HTTP/1.1 with keep-alive, a
thread per connection, so a slow answer holds up no other.  Endpoints:

    /echo           the request as JSON: method, path, headers (names in
                    lower case), body, and peer (the client's port, which
                    tells a reused connection from a new one)
    /status/N       answers status N with the body "status N"
    /redirect/N     302 to /redirect/N-1, and /redirect/0 to /echo
    /slow/MS        waits MS milliseconds, then answers "slept MS"
    /twice          two X-Twice headers, "a" and "b"
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("httpd: " + (fmt % args) + "\n")

    def answer(self, status, body, headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        sys.stderr.write("httpd: got %s %s\n" % (self.command, self.path))
        sys.stderr.flush()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.split("?")[0].split("/")
        if parts[1] == "echo":
            self.answer(200, json.dumps({
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "peer": self.client_address[1],
            }), [("Content-Type", "application/json")])
        elif parts[1] == "status":
            self.answer(int(parts[2]), "status " + parts[2])
        elif parts[1] == "redirect":
            n = int(parts[2])
            to = "/echo" if n == 0 else "/redirect/%d" % (n - 1)
            self.answer(302, "", [("Location", to)])
        elif parts[1] == "slow":
            time.sleep(int(parts[2]) / 1000)
            self.answer(200, "slept " + parts[2])
        elif parts[1] == "twice":
            self.answer(200, "", [("X-Twice", "a"), ("X-Twice", "b")])
        else:
            self.answer(404, "no such endpoint")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
