"""WebSub: the feeds name their hub, and the hub hears of every feed that changed, and only those.

The hub is a real HTTP server on 127.0.0.1 that records what it is sent; the publisher is the
real `aggregator poll` / `aggregator run` process.
"""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.conftest import DATA, run_cli
from tests.feedserver import FeedServer, Route
from tests.test_daemon import start_daemon, wait_for

BASE = "https://news.example.org/feeds/"
ATOM = "{http://www.w3.org/2005/Atom}"


class FakeHub:
    """Records each POST's form fields; answers 204 as hubs do (or `status` when set)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, list[str]]] = []
        self.status = 204
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode("utf-8"))
                hub.posts.append(form)
                self.send_response(hub.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hub"

    def announced(self) -> list[str]:
        assert all(p["hub.mode"] == ["publish"] for p in self.posts)
        return sorted(url for p in self.posts for url in p["hub.url"])

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    server = FakeHub()
    yield server
    server.stop()


def write_config(tmp_path: Path, server: FeedServer, hub: str, extra: str = "") -> Path:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        f"output: {{dir: out, link: 'https://news.example.org/', base_url: '{BASE}',"
        f" hub: '{hub}'}}\n"
        "schedule: {tick: 0.5, interval: 1, min_interval: 1, max_interval: 60}\n"
        f"feeds:\n  - {{name: blog, url: '{server.url('/blog.xml')}'}}\n" + extra,
        encoding="utf-8",
    )
    return cfg


FEEDS = sorted(BASE + name for name in ("feed.xml", "atom.xml", "feed.json"))


def test_changed_feeds_are_announced_and_unchanged_ones_are_not(
    tmp_path: Path, feed_server: FeedServer, hub: FakeHub
) -> None:
    blog = (DATA / "e2e" / "blog-cc.xml").read_bytes()
    feed_server.routes["/blog.xml"] = Route(blog, "application/atom+xml")
    cfg = write_config(tmp_path, feed_server, hub.url)
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    assert hub.announced() == FEEDS

    hub.posts.clear()
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    assert hub.posts == []  # nothing changed: the hub is left alone

    newer = blog.replace(b"</feed>", NEW_ENTRY + b"</feed>")
    feed_server.routes["/blog.xml"] = Route(newer, "application/atom+xml")
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    assert hub.announced() == FEEDS


NEW_ENTRY = b"""<entry><title>A new post</title><id>tag:blog.example,2025:new</id>
<link href="https://blog.example/new"/><updated>2025-10-20T10:00:00Z</updated>
<author><name>Kim</name></author><content type="html">&lt;p&gt;New.&lt;/p&gt;</content></entry>"""


def test_feeds_advertise_the_hub_and_their_own_url(
    tmp_path: Path, feed_server: FeedServer, hub: FakeHub
) -> None:
    feed_server.routes["/blog.xml"] = Route(
        (DATA / "e2e" / "blog-cc.xml").read_bytes(), "application/atom+xml"
    )
    cfg = write_config(tmp_path, feed_server, hub.url)
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    out = tmp_path / "out"
    channel = ET.parse(out / "feed.xml").getroot().find("channel")
    assert channel is not None
    rss = {link.get("rel"): link.get("href") for link in channel.iter(f"{ATOM}link")}
    assert rss == {"self": BASE + "feed.xml", "hub": hub.url}
    atom = ET.parse(out / "atom.xml").getroot()
    links = {link.get("rel"): link.get("href") for link in atom.findall(f"{ATOM}link")}
    assert links["self"] == BASE + "atom.xml" and links["hub"] == hub.url
    feed = json.loads((out / "feed.json").read_text(encoding="utf-8"))
    assert feed["feed_url"] == BASE + "feed.json"
    assert feed["hubs"] == [{"type": "WebSub", "url": hub.url}]


def test_channel_feeds_are_announced_with_their_own_urls(
    tmp_path: Path, feed_server: FeedServer, hub: FakeHub
) -> None:
    feed_server.routes["/blog.xml"] = Route(
        (DATA / "e2e" / "blog-cc.xml").read_bytes(), "application/atom+xml"
    )
    cfg = write_config(tmp_path, feed_server, hub.url, "channels:\n  - {name: blog-only}\n")
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    channel = sorted(BASE + "blog-only/" + n for n in ("feed.xml", "atom.xml", "feed.json"))
    assert hub.announced() == sorted(FEEDS + channel)


def test_a_hub_that_is_down_or_refuses_costs_a_log_line_not_the_publish(
    tmp_path: Path, feed_server: FeedServer, hub: FakeHub
) -> None:
    feed_server.routes["/blog.xml"] = Route(
        (DATA / "e2e" / "blog-cc.xml").read_bytes(), "application/atom+xml"
    )
    hub.status = 500
    cfg = write_config(tmp_path, feed_server, hub.url)
    refused = run_cli("poll", "--config", str(cfg))
    assert refused.returncode == 0 and (tmp_path / "out" / "feed.xml").exists()
    assert "refused" in refused.stderr and "HTTP 500" in refused.stderr

    down = write_config(tmp_path, feed_server, "http://127.0.0.1:9/hub")  # nothing listens
    (tmp_path / "out" / "feed.xml").unlink()
    result = run_cli("poll", "--config", str(down))
    assert result.returncode == 0 and (tmp_path / "out" / "feed.xml").exists()
    assert "not notified" in result.stderr and "Traceback" not in result.stderr


def test_hub_without_base_url_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "output:\n  hub: https://hub.example/\nfeeds: []\n",
        encoding="utf-8",
    )
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 2
    assert "feeds.yaml:1: output: hub needs base_url" in result.stderr


def test_the_daemon_announces_each_publish_that_changed_a_feed(
    tmp_path: Path, feed_server: FeedServer, hub: FakeHub
) -> None:
    blog = (DATA / "e2e" / "blog-cc.xml").read_bytes()
    feed_server.routes["/blog.xml"] = Route(blog, "application/atom+xml")
    cfg = write_config(tmp_path, feed_server, hub.url)
    daemon = start_daemon(cfg, "--no-serve")
    try:
        assert wait_for(lambda: hub.announced() == FEEDS, timeout=30), hub.posts
        polled = len(feed_server.requests("/blog.xml"))
        assert wait_for(lambda: len(feed_server.requests("/blog.xml")) >= polled + 2, 30)
        assert hub.announced() == FEEDS  # polls that changed nothing announced nothing
        newer = blog.replace(b"</feed>", NEW_ENTRY + b"</feed>")
        feed_server.routes["/blog.xml"] = Route(newer, "application/atom+xml")
        assert wait_for(lambda: len(hub.posts) == 6, timeout=30), hub.posts
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
