"""An OTLP/HTTP receiver that accepts and discards everything, counting requests and bytes.

    otlp_sink.py PORT_FILE

Listens on a free loopback port, writes "http://127.0.0.1:PORT" to PORT_FILE, and on SIGTERM
prints "requests N, bytes B" to stderr. For scripts/bench-telemetry.sh: the exporter's cost is
measured against a receiver that answers at once, as a local Collector would.
"""

import gzip
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {"requests": 0, "bytes": 0}
lock = threading.Lock()


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """An OTLP/HTTP request's body. The JavaScript exporter streams it (Transfer-Encoding:
    chunked, no Content-Length); the Python and Rust ones send a length. Gzip is undone.
    (Also the body reader of tests/e2e/test_telemetry.py's receiver.)"""
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                break
            body += handler.rfile.read(size)
            handler.rfile.readline()
    else:
        body = handler.rfile.read(int(handler.headers.get("content-length", "0")))
    if handler.headers.get("content-encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    return body


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        size = len(read_body(self))
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
