#!/usr/bin/env python3
"""A throwaway webhook receiver for Sluice's notification tests, on Python's http.server, 127.0.0.1 only.

    python3 scripts/test-webhook.py --port 0 --dir DIR [--status 200] [--hang]

Prints "ready PORT" on stdout once it listens (with --port 0 the kernel picks the port), then serves
until SIGTERM or SIGINT. Every POST is saved in --dir as NNNN.json (the body) and NNNN.headers
(one "Name: value" per line), then answered with --status. --hang reads the request and never
answers (a receiver that is stuck). For tests only.
"""

import argparse
import http.server
import os
import signal
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    counter = {"n": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                counter["n"] += 1
                base = os.path.join(args.dir, "%04d" % counter["n"])
            with open(base + ".headers.tmp", "w") as f:
                for name, value in self.headers.items():
                    f.write("%s: %s\n" % (name, value))
            with open(base + ".json.tmp", "wb") as f:
                f.write(body)
            os.rename(base + ".headers.tmp", base + ".headers")
            os.rename(base + ".json.tmp", base + ".json")
            if args.hang:
                time.sleep(3600)
                return
            self.send_response(args.status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok\n" if args.status < 300 else b"test receiver failing on purpose\n")

        def log_message(self, format, *a):
            sys.stderr.write("test-webhook: " + (format % a) + "\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
