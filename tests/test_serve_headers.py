"""`aggregator serve` honours the publisher's `_headers`: X-Robots-Tag on the files it lists,
and `_headers` itself is never served. Real poll, real server process, real sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.serve import robots_rules, robots_tag
from tests.conftest import run_cli
from tests.feedserver import FeedServer, Route
from tests.test_archives import rss
from tests.test_serve import ServeProcess, request


def write_config(tmp_path: Path, server: FeedServer, noindex: bool) -> Path:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "output: {dir: out, link: 'https://news.example.org/',"
        " base_url: 'https://news.example.org/n/', limit: 5, archive_page_size: 3}\n"
        f"feeds:\n  - {{name: p, url: '{server.url('/p.xml')}', author: 기자,"
        f" redistribution: full, noindex: {str(noindex).lower()}}}\n"
        "channels:\n  - {name: it}\n",
        encoding="utf-8",
    )
    return cfg


NOINDEX = [
    "/",
    "/index.html",
    "/feed.xml",
    "/atom.xml",
    "/feed.json",
    "/it/",
    "/it/feed.xml",
    "/archive/feed-1.xml",
    "/archive/atom-1.xml",
    "/it/archive/atom-1.xml",
]


def test_listed_files_get_x_robots_tag_and_headers_is_never_served(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/p.xml"] = Route(rss(list(range(10))))
    cfg = write_config(tmp_path, feed_server, noindex=True)
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    assert "/n/archive/feed-1.xml\n  X-Robots-Tag: noindex" in (
        tmp_path / "out" / "_headers"
    ).read_text(encoding="utf-8")
    server = ServeProcess(("serve", "--config", str(cfg)))
    try:
        for path in NOINDEX:
            got = request(server.url, path)
            assert got.status == 200, path
            assert got.headers.get("x-robots-tag") == "noindex", path
        assert "x-robots-tag" not in request(server.url, "/sources.opml").headers
        for path in ("/_headers", "/it/_headers", "/%5Fheaders"):
            assert request(server.url, path).status == 404, path
            assert request(server.url, path, "HEAD").status == 404, path

        write_config(tmp_path, feed_server, noindex=False)  # the request goes with the provider
        assert run_cli("poll", "--config", str(cfg)).returncode == 0
        for path in NOINDEX[:7]:
            assert "x-robots-tag" not in request(server.url, path).headers, path
    finally:
        code, log = server.stop()
    assert code == 0 and "Traceback" not in log


@pytest.mark.parametrize(
    ("path", "tag"),
    [
        ("/feed.xml", "noindex"),  # /n/ (the base_url's path) is where the output is served
        ("/", "noindex"),
        ("/it/feed.xml", "noindex, nofollow"),
        ("/drafts/a.html", "none"),  # a `*` rule covers what it starts
        ("/other.xml", None),
        ("/n/feed.xml", None),
    ],
)
def test_headers_rules_are_read_relative_to_the_published_path(path: str, tag: str | None) -> None:
    text = (
        "# comment\n/n/feed.xml\n  X-Robots-Tag: noindex\n  Cache-Control: no-store\n"
        "/n/\n  X-Robots-Tag: noindex\n/n/it/feed.xml\n  x-robots-tag:  noindex, nofollow\n"
        "/n/drafts/*\n  X-Robots-Tag: none\n"
    )
    assert robots_tag(robots_rules(text, "/n/"), path) == tag
