"""`aggregator serve` as a real process, answering the way feed readers and caches expect.

The files served are the real pipeline's output (`aggregator demo`); every request goes over
a real socket on 127.0.0.1 to the real uvicorn server started by the CLI.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path
from urllib.parse import urlsplit

import brotli  # type: ignore[import-untyped]
import pytest

from aggregator import config, serve
from tests.conftest import DATA, run_cli
from tests.feedserver import FeedServer, Route

ROOT = Path(__file__).parent.parent
SMOKE_LOAD = (sys.executable, str(ROOT / "bench" / "serve_load.py"))
FILES = ("feed.xml", "atom.xml", "feed.json", "index.html")
TYPES = {
    "feed.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    base: str, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> Answer:
    """One raw HTTP request: the path goes on the wire exactly as given, bodies stay encoded."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class ServeProcess:
    """`python -m aggregator ARGS --port 0`, its URL read from the log line it prints."""

    args: tuple[str, ...]
    url: str = ""
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator", *self.args, "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        started = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                if m := re.search(r"serving .* at (http://\S+)", line):
                    self.url = m.group(1)
                    started.set()
            started.set()

        threading.Thread(target=drain, daemon=True).start()
        if not started.wait(60) or not self.url:
            self.proc.kill()
            pytest.fail(f"server did not start: {''.join(self.log)}")

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        time.sleep(0.1)  # let the drain thread take the last lines
        return code, "".join(self.log)


@dataclass
class Site:
    config: Path
    out: Path


def make_site(root: Path) -> Site:
    """The demo pipeline's real output, with the config `serve` reads beside it."""
    cfg = root / "feeds.yaml"
    shutil.copy(DATA / "serve" / "feeds.yaml", cfg)
    done = run_cli("demo", "--output", str(root / "out"), cwd=root)
    assert done.returncode == 0, done.stderr
    return Site(cfg, root / "out")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[str]:
    proc = ServeProcess(("serve", "--config", str(site.config)))
    yield proc.url
    code, log = proc.stop()
    assert code == 0, log
    assert "Traceback" not in log


@pytest.mark.parametrize("name", FILES)
def test_every_file_has_a_strong_content_etag_and_last_modified(
    server: str, site: Site, name: str
) -> None:
    got = request(server, f"/{name}")
    data = (site.out / name).read_bytes()
    assert got.status == 200
    assert got.body == data
    assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert got.headers["last-modified"] == formatdate(
        (site.out / name).stat().st_mtime, usegmt=True
    )
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["content-type"] == TYPES[name]
    assert got.headers["cache-control"] == "public, max-age=300"  # half of interval: 10m
    assert got.headers["vary"] == "Accept-Encoding"


def test_root_serves_the_index_page(server: str, site: Site) -> None:
    got = request(server, "/")
    assert got.status == 200
    assert got.body == (site.out / "index.html").read_bytes()
    assert got.headers["content-type"] == "text/html; charset=utf-8"


def test_if_none_match_gets_304_without_body(server: str) -> None:
    etag = request(server, "/feed.xml").headers["etag"]
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        got = request(server, "/feed.xml", headers={"If-None-Match": header})
        assert got.status == 304, header
        assert got.body == b""
        assert got.headers["etag"] == etag
        assert got.headers["cache-control"] == "public, max-age=300"
    assert request(server, "/feed.xml", headers={"If-None-Match": '"other"'}).status == 200


def test_if_modified_since_gets_304_until_the_file_is_newer(server: str) -> None:
    last_modified = request(server, "/atom.xml").headers["last-modified"]
    assert request(server, "/atom.xml", headers={"If-Modified-Since": last_modified}).status == 304
    later = formatdate(time.time() + 3600, usegmt=True)
    assert request(server, "/atom.xml", headers={"If-Modified-Since": later}).status == 304
    earlier = formatdate(time.time() - 86400 * 365, usegmt=True)
    got = request(server, "/atom.xml", headers={"If-Modified-Since": earlier})
    assert got.status == 200 and got.body
    garbage = request(server, "/atom.xml", headers={"If-Modified-Since": "yesterday"})
    assert garbage.status == 200


def test_if_none_match_wins_over_if_modified_since(server: str) -> None:
    first = request(server, "/feed.json")
    fresh_date = first.headers["last-modified"]
    stale_etag = {"If-None-Match": '"0000"', "If-Modified-Since": fresh_date}
    assert request(server, "/feed.json", headers=stale_etag).status == 200
    old_date = formatdate(0, usegmt=True)
    good_etag = {"If-None-Match": first.headers["etag"], "If-Modified-Since": old_date}
    assert request(server, "/feed.json", headers=good_etag).status == 304


@pytest.mark.parametrize(
    ("accept", "coding", "decode"),
    [
        ("gzip", "gzip", gzip.decompress),
        ("gzip, deflate, br", "br", brotli.decompress),
        ("br;q=0.5, gzip", "gzip", gzip.decompress),
        ("*", "br", brotli.decompress),
    ],
)
def test_compressed_when_asked_and_identical_after_decoding(
    server: str, site: Site, accept: str, coding: str, decode: Callable[[bytes], bytes]
) -> None:
    for name in FILES:
        data = (site.out / name).read_bytes()
        got = request(server, f"/{name}", headers={"Accept-Encoding": accept})
        assert got.status == 200
        assert got.headers["content-encoding"] == coding
        assert got.headers["vary"] == "Accept-Encoding"
        assert got.headers["content-type"] == TYPES[name]
        assert len(got.body) < len(data)
        assert decode(got.body) == data
        # a strong ETag names these exact bytes, so the compressed variant has its own
        assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}-{coding}"'
        again = {"Accept-Encoding": accept, "If-None-Match": got.headers["etag"]}
        assert request(server, f"/{name}", headers=again).status == 304


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0, br;q=0", "compress"])
def test_not_compressed_unless_asked(server: str, site: Site, accept: str | None) -> None:
    got = request(server, "/feed.xml", headers={"Accept-Encoding": accept} if accept else {})
    assert "content-encoding" not in got.headers
    assert got.body == (site.out / "feed.xml").read_bytes()


def test_head_has_the_headers_of_get_and_no_body(server: str) -> None:
    for headers in ({}, {"Accept-Encoding": "gzip"}):
        get = request(server, "/atom.xml", headers=headers)
        head = request(server, "/atom.xml", "HEAD", headers=headers)
        assert head.status == 200
        assert head.body == b""
        for name in ("etag", "last-modified", "content-type", "content-length", "cache-control"):
            assert head.headers[name] == get.headers[name], name
        assert head.headers.get("content-encoding") == get.headers.get("content-encoding")


@pytest.mark.parametrize(
    "path",
    [
        "/../feeds.yaml",
        "/%2e%2e/feeds.yaml",
        "/%2E%2E%2Ffeeds.yaml",
        "/..%2ffeeds.yaml",
        "/out/../../feeds.yaml",
        "/./feed.xml",
        "//etc/passwd",
        "/..\\feeds.yaml",
        "/%00feed.xml",
        "/.feed.xml.partial.tmp",
        "/secret-link",
        "/subdir",
        "/subdir/",
        "/no-such-file.xml",
        "../feeds.yaml",
    ],
)
def test_no_traversal_hidden_files_listings_or_escaping_links(
    server: str, site: Site, path: str
) -> None:
    (site.out / ".feed.xml.partial.tmp").write_text("half a file")  # publish's temp files
    (site.out / "subdir").mkdir(exist_ok=True)
    (site.out / "subdir" / "note.txt").write_text("no listing of me")
    if not (site.out / "secret-link").exists():
        (site.out / "secret-link").symlink_to(site.config)
    got = request(server, path)
    assert got.status in (400, 404), got
    assert b"feeds:" not in got.body and b"root:" not in got.body and b"note" not in got.body


def test_only_get_and_head(server: str) -> None:
    got = request(server, "/feed.xml", "POST")
    assert got.status == 405
    assert "GET" in got.headers["allow"]


def test_healthz_in_serve_is_ok_while_the_output_exists(server: str) -> None:
    got = request(server, "/healthz")
    assert (got.status, got.body) == (200, b"ok\n")
    assert got.headers["cache-control"] == "no-store"


def test_healthz_in_serve_fails_without_output(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.yaml"
    shutil.copy(DATA / "serve" / "feeds.yaml", cfg)
    proc = ServeProcess(("serve", "--config", str(cfg)))
    try:
        got = request(proc.url, "/healthz")
        assert got.status == 503
        assert b"missing output files: feed.xml, atom.xml, feed.json, index.html" in got.body
        assert request(proc.url, "/").status == 404
    finally:
        code, log = proc.stop()
    assert code == 0, log


def test_a_taken_port_is_an_environment_error(site: Site, server: str) -> None:
    port = str(urlsplit(server).port)
    done = run_cli("serve", "--config", str(site.config), "--port", port, timeout=30)
    assert done.returncode == 3
    assert "Address already in use" in done.stderr


def test_run_serves_and_is_healthy_while_polling_on_schedule(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/blog.xml"] = Route(
        (DATA / "e2e" / "blog-cc.xml").read_bytes(), "application/atom+xml"
    )
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "output: {dir: out, link: 'https://news.example.org/'}\n"
        "schedule: {tick: 1, interval: 2, min_interval: 1, max_interval: 60}\n"
        "fetch: {timeout: 2}\n"
        f"feeds:\n  - name: blog\n    url: {feed_server.url('/blog.xml')}\n",
        encoding="utf-8",
    )
    daemon = ServeProcess(("run", "--config", str(cfg)))
    try:
        deadline = time.monotonic() + 30
        while request(daemon.url, "/healthz").status != 200:
            assert time.monotonic() < deadline, "daemon never became healthy"
            time.sleep(0.1)
        feed = request(daemon.url, "/feed.xml")
        assert feed.status == 200
        assert b"Making SQLite &amp; WAL work for you" in feed.body
        assert feed.headers["cache-control"] == "public, max-age=60"  # half of 2 s, min 60
        time.sleep(3)  # several ticks later it is still polling on schedule
        assert request(daemon.url, "/healthz").status == 200
    finally:
        code, log = daemon.stop()
    assert code == 0, log
    assert "Traceback" not in log


def test_healthz_in_the_daemon_fails_when_polling_stalls(site: Site) -> None:
    cfg = config.load(site.config)
    health = serve.Health(timedelta(seconds=5))
    server = serve.Server(cfg, "127.0.0.1", 0, health).start()
    try:
        got = request(server.url, "/healthz")
        assert (got.status, got.body) == (503, b"unhealthy: no poll cycle has completed yet\n")
        health.cycle_ok()
        assert request(server.url, "/healthz").status == 200
        health.cycle_ok(datetime.now(UTC) - timedelta(seconds=60))
        got = request(server.url, "/healthz")
        assert got.status == 503
        assert b"last good poll cycle 60s ago (limit 5s)" in got.body
        assert request(server.url, "/feed.xml").status == 200  # files are still served
    finally:
        server.stop()


def test_daemon_health_limit_is_three_ticks_plus_the_fetch_timeout() -> None:
    cfg = config.parse("schedule: {tick: 30s}\nfetch: {timeout: 20}\nfeeds: []\n")
    health = serve.Health.for_daemon(cfg)
    assert health.limit == timedelta(seconds=110)
    now = datetime(2025, 10, 17, tzinfo=UTC)
    health.cycle_ok(now - timedelta(seconds=110))
    assert health.problem(now) is None
    health.cycle_ok(now - timedelta(seconds=111))
    assert health.problem(now) is not None


@pytest.mark.parametrize(
    ("interval", "max_age"), [("30m", 900), ("10m", 300), ("90s", 60), ("1d", 43200)]
)
def test_cache_lifetime_is_half_the_poll_interval_at_least_a_minute(
    interval: str, max_age: int
) -> None:
    cfg = config.parse(f"schedule: {{interval: {interval}}}\nfeeds: []\n")
    assert serve.max_age(cfg) == max_age


def test_many_readers_polling_conditionally_get_304s(server: str) -> None:
    """A smoke version of bench/serve_load.py: 10 readers x (1 GET + 4 conditional GETs)."""
    done = subprocess.run(
        [*SMOKE_LOAD, "--url", server, "--readers", "10", "--polls", "4", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["errors"] == 0
    assert summary["runs"][0]["requests"] == 50
