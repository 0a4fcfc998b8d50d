"""`kill -9` at any moment loses no stored entry and leaves the published files whole."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.feedserver import FeedServer, Route
from tests.test_daemon import start_daemon, wait_for

FEEDS = 30


def rss(feed: int, count: int) -> bytes:
    items = "".join(
        f"<item><title>feed {feed} story {i}</title>"
        f"<link>https://p{feed}.example/s/{i}</link><author>x@p.example (기자 {feed})</author>"
        f"<pubDate>Thu, 16 Oct 2025 {i % 24:02d}:00:00 +0900</pubDate>"
        f"<description>{'본문 ' * 40} {feed}-{i}</description></item>"
        for i in range(count)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>p{feed}</title><link>https://p{feed}.example/</link>{items}</channel></rss>"
    ).encode()


def stored(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])


def outputs_whole(out: Path) -> None:
    for name in ("feed.xml", "atom.xml"):
        if (out / name).exists():
            ET.parse(out / name)  # raises on a torn file
    if (out / "feed.json").exists():
        json.loads((out / "feed.json").read_text(encoding="utf-8"))


def test_sigkill_loses_nothing(tmp_path: Path, feed_server: FeedServer) -> None:
    rng = random.Random(42)
    counts = dict.fromkeys(range(FEEDS), 10)
    for f, n in counts.items():
        feed_server.routes[f"/f{f}.xml"] = Route(rss(f, n))
    cfg = tmp_path / "feeds.yaml"
    feeds = "".join(
        f"  - name: p{f}\n    url: {feed_server.url(f'/f{f}.xml')}\n    author: x\n"
        for f in range(FEEDS)
    )
    cfg.write_text(
        "output: {dir: out, link: 'https://news.example.org/', limit: 1000}\n"
        "schedule: {tick: 0.2, interval: 1, min_interval: 1, max_interval: 5}\n"
        f"feeds:\n{feeds}",
        encoding="utf-8",
    )
    db, out = tmp_path / "aggregator.db", tmp_path / "out"
    seen = 0
    for _round in range(5):
        for f in rng.sample(range(FEEDS), 10):  # providers publish between crashes
            counts[f] += 3
            feed_server.routes[f"/f{f}.xml"] = Route(rss(f, counts[f]))
        daemon = start_daemon(cfg, "--no-serve")
        try:
            assert wait_for(lambda: db.exists())
            time.sleep(rng.uniform(0.3, 1.5))
        finally:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=10)
        now = stored(db)
        assert now >= seen, "entries lost after kill -9"
        seen = now
        outputs_whole(out)
    # A clean run afterwards catches up with everything the providers published.
    daemon = start_daemon(cfg, "--no-serve")
    total = sum(counts.values())
    try:
        assert wait_for(lambda: stored(db) == total, timeout=60), (stored(db), total)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert daemon.returncode == 0
    outputs_whole(out)
    assert len(ET.parse(out / "feed.xml").getroot().findall("./channel/item")) == total
