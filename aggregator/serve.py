"""`aggregator serve`: the output directory over HTTP, the way feed readers expect it.

Every file gets a strong ETag (SHA-256 of its bytes, plus `-gzip`/`-br` for a compressed
variant) and Last-Modified, and validators get 304 (If-None-Match wins over
If-Modified-Since). Bodies are gzip- or brotli-compressed when the client asks, each
version read, hashed and compressed once and kept until the file is replaced (publish
renames a new file into place, so a new inode means new bytes). Only regular, non-hidden
files under the output directory are served: no listings, no `..`, no symlink escapes.
`/healthz` answers 200 when the output exists (`serve`), or, inside the daemon, only while
poll cycles keep succeeding on schedule (`Health`).

The publisher's `_headers` file (Netlify / Cloudflare Pages syntax) is honoured for
`X-Robots-Tag`: a file it lists gets that header, so crawlers skip republished copies even
without a CDN in front. `_headers` itself is never served.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import socket
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from types import FrameType

import brotli  # type: ignore[import-untyped]
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from aggregator.config import Config
from aggregator.publish import HEADERS_FILE, url_path

OUTPUT_FILES = ("feed.xml", "atom.xml", "feed.json", "index.html")
MIN_MAX_AGE = 60
_CACHE_SIZE = 256  # file versions kept in memory; the output is a handful of small files
_MIN_COMPRESS = 256  # smaller bodies gain nothing; only text types (with a charset) shrink
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def max_age(config: Config) -> int:
    """Half the poll interval (at least a minute): readers come back about when news can."""
    return max(MIN_MAX_AGE, int(config.schedule.interval.total_seconds() // 2))


def content_type(name: str, head: bytes) -> str:
    """By extension; feeds are recognised by their root element, whatever their file name."""
    ctype = _TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")
    if ctype.startswith("application/xml"):
        if b"<rss" in head:
            return "application/rss+xml; charset=utf-8"
        if b"<feed" in head and b"http://www.w3.org/2005/Atom" in head:
            return "application/atom+xml; charset=utf-8"
    if ctype.startswith("application/json") and b"jsonfeed.org/version/" in head:
        return "application/feed+json; charset=utf-8"
    return ctype


def choose_coding(accept_encoding: str) -> str:
    """`br`, `gzip` or `` (identity) by the client's q-values; br wins a tie."""
    quality: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        if (param := params.strip()).startswith("q="):
            try:
                q = float(param[2:])
            except ValueError:
                q = 0.0
        quality[name.strip()] = q
    star = quality.get("*", 0.0)
    best = max(("br", "gzip"), key=lambda c: quality.get(c, star))
    return best if quality.get(best, star) > 0 else ""


def robots_rules(text: str, base_path: str = "/") -> dict[str, str]:
    """URL path (relative to the served folder) -> `X-Robots-Tag` value, from `_headers`.

    Rules name paths of the public URLs (under `output.base_url`), so `base_path`, the path
    the output is published at, is cut off to get the paths this server answers. A rule
    ending in `*` covers every path it starts.
    """
    rules: dict[str, str] = {}
    path: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            path = line.strip()
            if base_path != "/" and path.startswith(base_path):
                path = "/" + path[len(base_path) :]
            continue
        name, sep, value = line.strip().partition(":")
        if path is not None and sep and name.strip().lower() == "x-robots-tag":
            rules[path] = value.strip()
    return rules


def robots_tag(rules: Mapping[str, str], url_path: str) -> str | None:
    if (tag := rules.get(url_path)) is not None:
        return tag
    return next(
        (v for p, v in rules.items() if p.endswith("*") and url_path.startswith(p[:-1])), None
    )


def not_modified(headers: Mapping[str, str], etag: str, mtime: float) -> bool:
    """RFC 9110 13.2.2: If-None-Match (weak comparison) decides; else If-Modified-Since."""
    if (inm := headers.get("if-none-match")) is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag in tags
    if (ims := headers.get("if-modified-since")) is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return since.tzinfo is not None and int(mtime) <= since.timestamp()
    return False


@dataclass
class Health:
    """The daemon's pulse: it calls `cycle_ok()` after every poll cycle that completes.

    Unhealthy before the first cycle, and when the last good one is older than `limit`.
    """

    limit: timedelta
    last_cycle_ok_at: datetime | None = None

    @classmethod
    def for_daemon(cls, config: Config) -> Health:
        return cls(3 * config.schedule.tick + timedelta(seconds=config.fetch.timeout))

    def cycle_ok(self, when: datetime | None = None) -> None:
        self.last_cycle_ok_at = when or datetime.now(UTC)

    def problem(self, now: datetime) -> str | None:
        if self.last_cycle_ok_at is None:
            return "no poll cycle has completed yet"
        age = (now - self.last_cycle_ok_at).total_seconds()
        if age > self.limit.total_seconds():
            return f"last good poll cycle {age:.0f}s ago (limit {self.limit.total_seconds():.0f}s)"
        return None


@dataclass
class _Version:
    """One version of one file: its bytes, their hash, and compressed copies made on demand."""

    body: bytes
    digest: str
    mtime: float
    ctype: str
    coded: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # compress each version once

    def encoded(self, coding: str) -> bytes | None:
        if not coding or len(self.body) < _MIN_COMPRESS or "charset" not in self.ctype:
            return None
        with self.lock:
            if coding not in self.coded:
                data = brotli.compress(self.body) if coding == "br" else gzip.compress(self.body, 9)
                self.coded[coding] = data
        return self.coded[coding] if len(self.coded[coding]) < len(self.body) else None


class OutputFiles:
    """Maps URL paths to files of the output directory and answers for them."""

    def __init__(
        self, root: Path, max_age: int, health: Health | None = None, base_path: str = "/"
    ) -> None:
        self.root = root.resolve()
        self.cache_control = f"public, max-age={max_age}"
        self.health = health
        self.base_path = base_path
        self._cache: dict[tuple[int, int, int, int], _Version] = {}
        self._robots: tuple[tuple[int, int, int, int] | None, dict[str, str]] = (None, {})

    def robots(self) -> dict[str, str]:
        """The `_headers` rules, parsed again only when publish replaced the file."""
        try:
            st = (self.root / HEADERS_FILE).stat()
        except OSError:
            return {}
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if self._robots[0] != key:
            try:
                text = (self.root / HEADERS_FILE).read_text(encoding="utf-8", errors="replace")
            except OSError:
                return {}
            self._robots = (key, robots_rules(text, self.base_path))
        return self._robots[1]

    def locate(self, url_path: str) -> Path | None:
        """The file a path names, or None: hidden names, `..`, `\\`, NUL never resolve."""
        parts = url_path.split("/")[1:]
        if parts and parts[-1] == "":
            parts[-1] = "index.html"
        if any(not p or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        if parts[-1:] == [HEADERS_FILE]:  # instructions for the server, not a document
            return None
        try:
            path = self.root.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return path if path.is_relative_to(self.root) else None

    def _read(self, path: Path) -> _Version:
        with path.open("rb") as f:  # hash and key from the same open file: renames can't mix
            st = os.fstat(f.fileno())
            body = f.read()
        version = _Version(
            body, hashlib.sha256(body).hexdigest(), st.st_mtime, content_type(path.name, body[:512])
        )
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)] = version
        return version

    async def file(self, request: Request) -> Response:
        path = self.locate(request.scope["path"])
        if path is None:
            return PlainTextResponse("not found\n", 404)
        try:
            st = path.stat()
        except OSError:  # replaced or removed since it was located
            return PlainTextResponse("not found\n", 404)
        if stat.S_ISDIR(st.st_mode) and (path / "index.html").is_file():
            return RedirectResponse(request.scope["path"] + "/", 301)
        if not stat.S_ISREG(st.st_mode):
            return PlainTextResponse("not found\n", 404)
        version = self._cache.get((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
        if version is None:
            version = await run_in_threadpool(self._read, path)
        coding = choose_coding(request.headers.get("accept-encoding", ""))
        if coding and coding not in version.coded:
            await run_in_threadpool(version.encoded, coding)
        body = version.encoded(coding)
        coding = coding if body is not None else ""
        etag = f'"{version.digest}{"-" + coding if coding else ""}"'
        headers = {
            "ETag": etag,
            "Last-Modified": formatdate(version.mtime, usegmt=True),
            "Cache-Control": self.cache_control,
            "Vary": "Accept-Encoding",
        }
        if (tag := robots_tag(self.robots(), request.scope["path"])) is not None:
            headers["X-Robots-Tag"] = tag
        if not_modified(request.headers, etag, version.mtime):
            return Response(status_code=304, headers=headers)
        body = version.body if body is None else body
        headers |= {
            "Content-Type": version.ctype,
            "Content-Length": str(len(body)),
            "X-Content-Type-Options": "nosniff",
            "Access-Control-Allow-Origin": "*",
        }
        if coding:
            headers["Content-Encoding"] = coding
        return Response(b"" if request.method == "HEAD" else body, headers=headers)

    async def healthz(self, request: Request) -> Response:
        if self.health is not None:
            problem = self.health.problem(datetime.now(UTC))
        else:
            missing = [n for n in OUTPUT_FILES if not (self.root / n).is_file()]
            problem = f"missing output files: {', '.join(missing)}" if missing else None
        text, status = (f"unhealthy: {problem}\n", 503) if problem else ("ok\n", 200)
        return PlainTextResponse(text, status, headers={"Cache-Control": "no-store"})


def create_app(
    root: Path, max_age: int, health: Health | None = None, base_path: str = "/"
) -> Starlette:
    files = OutputFiles(root, max_age, health, base_path)
    methods = ["GET", "HEAD"]
    return Starlette(
        routes=[
            Route("/healthz", files.healthz, methods=methods),
            Route("/{path:path}", files.file, methods=methods),
        ]
    )


class Server:
    """uvicorn on a socket bound up front, so a taken port fails in the caller, not a thread."""

    def __init__(self, config: Config, host: str, port: int, health: Health | None = None) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self.socket = socket.socket(family, kind, proto)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(address)
        self.socket.listen(2048)  # connections queue from now on, even before uvicorn runs
        base_path = url_path(config.output, "")
        app = create_app(config.output_dir, max_age(config), health, base_path)
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                app,
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=5,
            )
        )
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def start(self) -> Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
        self.socket.close()

    def run_until_signal(self) -> None:
        """Serve in the foreground until SIGTERM/SIGINT, then finish requests in flight."""
        stopping = threading.Event()

        def stop(_signum: int, _frame: FrameType | None) -> None:
            stopping.set()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stopping.wait(0.5) and self._thread.is_alive():
                pass
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
