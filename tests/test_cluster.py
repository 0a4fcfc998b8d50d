"""Several daemons on one PostgreSQL database: no double polling, no lost work, one item per story.

Runs real `aggregator run` processes against the real PostgreSQL on 127.0.0.1 and a local farm
of feeds; the farm's request log is the witness.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregator.store import Store
from tests.conftest import run_cli
from tests.feedserver import FeedServer, Route
from tests.test_daemon import start_daemon, wait_for

FEEDS = 200
SHARED = 10  # feeds 0..9 also carry story "shared-i" that feed i+10 carries too


def rss(feed: int) -> bytes:
    links = [f"https://p{feed}.example/story/{i}" for i in range(3)]
    if feed < 2 * SHARED:
        links.append(f"https://wire.example/shared-{feed % SHARED}")
    items = "".join(
        f"<item><title>story {link}</title><link>{link}</link>"
        f"<author>desk@p{feed}.example (기자 {feed})</author>"
        f"<pubDate>Thu, 16 Oct 2025 {n:02d}:00:00 +0900</pubDate>"
        f"<description>{link} 본문</description></item>"
        for n, link in enumerate(links)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>p{feed}</title><link>https://p{feed}.example/</link>{items}</channel></rss>"
    ).encode()


def setup(tmp_path: Path, server: FeedServer, pg_url: str, slow: set[int]) -> Path:
    for f in range(FEEDS):
        server.routes[f"/f{f}.xml"] = Route(rss(f), delay=4.0 if f in slow else 0.0)
    feeds = "".join(f"  - name: p{f}\n    url: {server.url(f'/f{f}.xml')}\n" for f in range(FEEDS))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        f"store: {{url: '{pg_url}'}}\n"
        "output: {dir: out, link: 'https://news.example.org/', limit: 10000}\n"
        # One farm host plays 200 providers: 3 in flight, as 3 daemons had before per_host
        # held cluster-wide (each took 2 // 3 -> 1), so these tests keep their pace.
        "fetch: {batch: 10, timeout: 5, per_host: 3}\n"
        "schedule: {tick: 0.5, interval: 1h, min_interval: 1h, lease: 12s}\n"
        f"feeds:\n{feeds}",
        encoding="utf-8",
    )
    assert run_cli("migrate", "--config", str(cfg)).returncode == 0
    return cfg


def fetch_counts(server: FeedServer) -> Counter[str]:
    return Counter(r.path for r in server.log)


def stop(daemons: list[subprocess.Popen[str]]) -> None:
    for d in daemons:
        if d.poll() is None:
            d.send_signal(signal.SIGTERM)
    for d in daemons:
        d.communicate(timeout=60)


def published_links(cfg: Path) -> list[str]:
    items = ET.parse(cfg.parent / "out" / "feed.xml").getroot().findall("./channel/item")
    return [i.findtext("link") or "" for i in items]


def expected_stories() -> int:
    return FEEDS * 3 + SHARED


def test_three_daemons_fetch_each_feed_once_and_publish_each_story_once(
    tmp_path: Path, feed_server: FeedServer, pg_url: str
) -> None:
    cfg = setup(tmp_path, feed_server, pg_url, slow=set())
    daemons = [start_daemon(cfg, "--no-serve") for _ in range(3)]
    try:
        assert wait_for(lambda: len(fetch_counts(feed_server)) == FEEDS, timeout=180)

        def cluster() -> list[dict[str, Any]]:
            out = run_cli("status", "--json", "--config", str(cfg)).stdout
            return list(json.loads(out)["daemons"])

        # A daemon counts its feeds when its cycle (store + publish) is over.
        assert wait_for(lambda: sum(d["feeds_polled"] for d in cluster()) >= FEEDS, 180)
        time.sleep(2)  # any double poll would show up now
        status = {"daemons": cluster()}
        assert len(status["daemons"]) == 3
        assert sum(d["publisher"] for d in status["daemons"]) <= 1
        assert sum(d["feeds_polled"] for d in status["daemons"]) == FEEDS
        assert all(d["feeds_polled"] > 0 for d in status["daemons"]), "one daemon did all"
    finally:
        stop(daemons)
    counts = fetch_counts(feed_server)
    assert set(counts.values()) == {1}, counts.most_common(3)
    links = published_links(cfg)
    assert len(links) == len(set(links)) == expected_stories()


def test_killed_daemon_leases_expire_and_others_finish_its_feeds(
    tmp_path: Path, feed_server: FeedServer, pg_url: str
) -> None:
    slow = set(range(0, FEEDS, 5))  # a fifth of the feeds take 4 s: leases are held a while
    cfg = setup(tmp_path, feed_server, pg_url, slow=slow)
    daemons = [start_daemon(cfg, "--no-serve") for _ in range(3)]
    victim = daemons[0]
    try:

        def victim_holds_leases() -> bool:
            status = json.loads(run_cli("status", "--json", "--config", str(cfg)).stdout)
            mine = [d for d in status["daemons"] if d["pid"] == victim.pid]
            return bool(mine and mine[0]["leases"] > 0)

        assert wait_for(victim_holds_leases, timeout=60)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        assert wait_for(lambda: len(fetch_counts(feed_server)) == FEEDS, timeout=180)
        time.sleep(2)
        taken_over_after = time.monotonic() - killed_at
    finally:
        stop(daemons)
    counts = fetch_counts(feed_server)
    assert len(counts) == FEEDS  # nothing lost
    # Only feeds the victim had leased (at most one batch) may have been fetched twice.
    assert sum(n - 1 for n in counts.values()) <= 10, counts.most_common(12)
    assert taken_over_after >= 0
    links = published_links(cfg)
    assert len(links) == len(set(links)) == expected_stories()


def test_publisher_failover_is_automatic(
    tmp_path: Path, feed_server: FeedServer, pg_url: str
) -> None:
    cfg = setup(tmp_path, feed_server, pg_url, slow=set())
    daemons = [start_daemon(cfg, "--no-serve") for _ in range(3)]

    def publisher_pid() -> int | None:
        out = run_cli("status", "--json", "--config", str(cfg)).stdout
        alive = [d for d in json.loads(out)["daemons"] if d["publisher"]]
        return int(alive[0]["pid"]) if len(alive) == 1 else None

    try:
        assert wait_for(lambda: publisher_pid() is not None, timeout=120)
        first = publisher_pid()
        victim = next(d for d in daemons if d.pid == first)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        # The killed publisher's row stays (it could not say goodbye) but is marked by a stale
        # heartbeat; another daemon must take the lock and say so in its own row.
        def taken_over() -> bool:
            out = run_cli("status", "--json", "--config", str(cfg)).stdout
            return any(d["publisher"] and d["pid"] != first for d in json.loads(out)["daemons"])

        assert wait_for(taken_over, timeout=60)
        assert wait_for(lambda: (cfg.parent / "out" / "feed.xml").exists(), timeout=60)
    finally:
        stop(daemons)
    links = published_links(cfg)
    assert len(links) == len(set(links)) == expected_stories()


def test_per_host_limit_holds_across_daemons(
    tmp_path: Path, feed_server: FeedServer, pg_url: str
) -> None:
    """fetch.per_host: 2 with three daemons: the provider never sees a third request at once."""
    feeds = 18
    for f in range(feeds):
        feed_server.routes[f"/s{f}.xml"] = Route(rss(f), delay=0.5)  # one slow host
    listed = "".join(
        f"  - name: s{f}\n    url: {feed_server.url(f'/s{f}.xml')}\n" for f in range(feeds)
    )
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        f"store: {{url: '{pg_url}'}}\n"
        "output: {dir: out, link: 'https://news.example.org/'}\n"
        "fetch: {batch: 2, per_host: 2, timeout: 5}\n"
        "schedule: {tick: 0.5, interval: 1h, min_interval: 1h, lease: 12s}\n"
        f"feeds:\n{listed}",
        encoding="utf-8",
    )
    assert run_cli("migrate", "--config", str(cfg)).returncode == 0
    daemons = [start_daemon(cfg, "--no-serve") for _ in range(3)]
    store = Store(pg_url)
    try:

        def polled_by() -> list[int]:
            return [d.polled for d in store.daemons(datetime.now(UTC))]

        assert wait_for(lambda: sum(polled_by()) >= feeds, timeout=90)
        # Every cycle is over and nothing is in flight: no slot may be left held.
        assert store.held_host_slots() == []
        shares = polled_by()
    finally:
        store.close()
        stop(daemons)
    assert sum(n > 0 for n in shares) >= 2, f"one daemon did all the work: {shares}"
    counts = fetch_counts(feed_server)
    assert len(counts) == feeds and set(counts.values()) == {1}, counts.most_common(3)
    host = f"127.0.0.1:{feed_server.httpd.server_address[1]}"
    assert feed_server.max_in_flight == {host: 2}  # the limit, and all of it used
