"""A small HTTP proxy on 127.0.0.1 that forwards to the S3 server and injects faults on demand.

Tests point s3fs at the proxy (endpoint_url) and queue faults, or set a rate at which
faults strike at random (`random_faults`); each request whose method matches takes the
next queued fault instead of (or, for `cut`, part of) the real answer:

* ``500`` / ``503``: an S3 XML error with that status (InternalError / ServiceUnavailable);
* ``slowdown``: 503 SlowDown, what S3 answers when a prefix is throttled;
* ``403`` / ``404``: AccessDenied / NoSuchKey (permanent: must not be retried);
* ``drop``: the connection is closed without any answer;
* ``cut``: the real answer's headers and half its body, then the connection is closed;
* ``stall``: no answer for `stall_seconds` (beyond the client's read timeout), then closed.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import deque
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Please reduce your request rate."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "403": (403, "AccessDenied", "Access Denied"),
    "404": (404, "NoSuchKey", "The specified key does not exist."),
}
FAULTS = frozenset({*ERRORS, "drop", "cut", "stall"})


class FaultProxy:
    def __init__(self, upstream: str, stall_seconds: float = 3.0):
        self.upstream = urlsplit(upstream)
        self.stall_seconds = stall_seconds
        self.faults: deque[tuple[str, str]] = deque()
        self.log: list[tuple[str, str, str]] = []  # (method, path, fault or "ok")
        self.lock = threading.Lock()
        self.rate, self.kinds, self.rng = 0.0, (), random.Random(0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def inject(self, *faults: str, method: str = "GET") -> None:
        """Queue faults for the next requests with `method` (one fault per request)."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; one of {sorted(FAULTS)}")
        with self.lock:
            self.faults.extend((method, f) for f in faults)

    def random_faults(self, rate: float, kinds: tuple[str, ...], seed: int = 0) -> None:
        """From now on, each request without a queued fault gets one of `kinds` with probability `rate`."""
        if not set(kinds) <= FAULTS:
            raise ValueError(f"unknown faults {sorted(set(kinds) - FAULTS)}; one of {sorted(FAULTS)}")
        with self.lock:
            self.rate, self.kinds, self.rng = rate, tuple(kinds), random.Random(seed)

    def requests(self, method: str = "GET") -> list[str]:
        with self.lock:
            return [fault for m, _, fault in self.log if m == method]

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.log.clear()

    def _take(self, method: str, path: str) -> str:
        with self.lock:
            fault = "ok"
            if self.faults and self.faults[0][0] == method:
                fault = self.faults.popleft()[1]
            elif self.rate and self.rng.random() < self.rate:
                fault = self.rng.choice(self.kinds)
            self.log.append((method, path, fault))
            return fault

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._take(h.command, h.path)
        if fault in ERRORS:
            status, code, message = ERRORS[fault]
            payload = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
            ).encode()
            payload = b"" if h.command == "HEAD" else payload
            h.send_response(status)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        if fault == "drop":
            h.close_connection = True
            return
        if fault == "stall":
            time.sleep(self.stall_seconds)
            h.close_connection = True
            return
        status, headers, data = self._forward(h, body)
        h.send_response(status)
        for key, value in headers:
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                h.send_header(key, value)
        upstream_length = next((v for k, v in headers if k.lower() == "content-length"), "0")
        h.send_header("Content-Length", upstream_length if h.command == "HEAD" else str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if fault == "cut":
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(data)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in ("connection", "keep-alive")}
            conn.request(h.command, h.path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()


@contextmanager
def fault_proxy(upstream: str, stall_seconds: float = 3.0):
    """Run a FaultProxy in a daemon thread for the duration of the block."""
    proxy = FaultProxy(upstream, stall_seconds)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        thread.join(timeout=5)
