"""An OTLP/HTTP receiver that accepts and discards everything, counting requests and bytes.

    otlp_sink.py PORT_FILE

Listens on a free loopback port, writes "http://127.0.0.1:PORT" to PORT_FILE, and on SIGTERM
prints "requests N, bytes B" to stderr. For scripts/bench-telemetry.sh: the exporter's cost is
measured against a receiver that answers at once, as a local Collector would.
"""

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {"requests": 0, "bytes": 0}
lock = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            size = 0
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if n == 0:
                    self.rfile.readline()
                    break
                size += len(self.rfile.read(n))
                self.rfile.readline()
        else:
            size = len(self.rfile.read(int(self.headers.get("content-length", "0"))))
        with lock:
            counts["requests"] += 1
            counts["bytes"] += size
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write(f"http://127.0.0.1:{server.server_address[1]}")

    def stop(*_: object) -> None:
        print(f"requests {counts['requests']}, bytes {counts['bytes']}", file=sys.stderr, flush=True)
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
