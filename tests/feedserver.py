"""A real HTTP server on 127.0.0.1 that plays feed providers for the tests.

Each route answers like a provider would: with ETags and 304s, redirects, error codes,
Retry-After, slowness. Every request is logged so tests can assert what was sent.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    redirect: str | None = None
    etag: bool = True
    trickle: float = 0.0  # seconds between 16-byte chunks: a server that never quite finishes


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    status: int


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[Request] = []
        self.in_flight: dict[str, int] = {}  # by Host header: requests being answered now
        self.max_in_flight: dict[str, int] = {}
        self.max_total_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host = self.headers.get("Host", "")
                with server._lock:
                    server.in_flight[host] = server.in_flight.get(host, 0) + 1
                    server.max_in_flight[host] = max(
                        server.max_in_flight.get(host, 0), server.in_flight[host]
                    )
                    server.max_total_in_flight = max(
                        server.max_total_in_flight, sum(server.in_flight.values())
                    )
                try:
                    self._answer()
                finally:
                    with server._lock:
                        server.in_flight[host] -= 1

            def _answer(self) -> None:
                route = server.routes.get(self.path.split("?")[0])
                status, headers, body = server._answer(route, self.headers)
                if route is not None and route.delay:
                    time.sleep(route.delay)
                server.log.append(
                    Request(
                        "GET", self.path, {k.lower(): v for k, v in self.headers.items()}, status
                    )
                )
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if route is not None and route.trickle:
                        for i in range(0, len(body), 16):
                            self.wfile.write(body[i : i + 16])
                            self.wfile.flush()
                            time.sleep(route.trickle)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _answer(
        self, route: Route | None, req_headers: object
    ) -> tuple[int, dict[str, str], bytes]:
        if route is None:
            return 404, {"Content-Type": "text/plain"}, b"no such feed"
        if route.redirect:
            return route.status, {"Location": self.url(route.redirect)}, b""
        headers = {"Content-Type": route.content_type, **route.headers}
        if route.status != 200:
            return route.status, headers, route.body
        if route.etag:
            tag = '"' + hashlib.sha1(route.body).hexdigest()[:16] + '"'
            headers["ETag"] = tag
            if req_headers.get("If-None-Match") == tag:  # type: ignore[attr-defined]
                return 304, {"ETag": tag}, b""
        return 200, headers, route.body

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.httpd.server_address[1]}{path}"

    def requests(self, path: str) -> list[Request]:
        return [r for r in self.log if r.path.split("?")[0] == path]

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
