"""`aggregator run` as a real process: polls on schedule, stops cleanly, refuses a twin."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import DATA
from tests.feedserver import FeedServer, Route


def start_daemon(cfg: Path, *extra: str) -> subprocess.Popen[str]:
    """A daemon serving on a free port (or not at all with --no-serve)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aggregator",
            "run",
            "--config",
            str(cfg),
            *(extra or ("--port", "0")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )


def wait_for(predicate, timeout: float = 20) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def config(tmp_path: Path, server: FeedServer) -> Path:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "output: {dir: out, link: 'https://news.example.org/'}\n"
        "schedule: {tick: 1, interval: 2, min_interval: 1, max_interval: 60}\n"
        f"feeds:\n  - name: blog\n    url: {server.url('/blog.xml')}\n",
        encoding="utf-8",
    )
    return cfg


def test_daemon_polls_on_schedule_and_stops_on_sigterm(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/blog.xml"] = Route(
        (DATA / "e2e" / "blog-cc.xml").read_bytes(), "application/atom+xml"
    )
    cfg = config(tmp_path, feed_server)
    daemon = start_daemon(cfg)
    try:
        assert wait_for(lambda: (tmp_path / "out" / "feed.xml").exists()), "no output published"
        # interval 2 s: the feed is polled again, conditionally, while the daemon runs
        assert wait_for(lambda: len(feed_server.requests("/blog.xml")) >= 3)
        later = feed_server.requests("/blog.xml")[1:]
        assert all(r.headers.get("if-none-match") for r in later)
        assert all(r.status == 304 for r in later)
        twin = subprocess.run(
            [sys.executable, "-m", "aggregator", "run", "--config", str(cfg), "--no-serve"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        )
        assert twin.returncode == 3
        assert "another daemon is already running" in twin.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in err
    assert "Making SQLite &amp; WAL work for you" in (tmp_path / "out" / "feed.xml").read_text()


def test_sigterm_stops_between_batches(tmp_path: Path, feed_server: FeedServer) -> None:
    """A stopping daemon finishes the batch in flight, takes no new work, publishes, exits 0."""
    feeds = ""
    for i in range(40):
        feed_server.routes[f"/f{i}.xml"] = Route(
            (DATA / "e2e" / "partner.xml").read_bytes().replace(b"/news/", f"/n{i}/".encode()),
            delay=1.0,
        )
        feeds += f"  - name: f{i}\n    url: {feed_server.url(f'/f{i}.xml')}\n"
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "output: {dir: out, link: 'https://news.example.org/'}\n"
        "fetch: {batch: 4, per_host: 2}\n"
        f"feeds:\n{feeds}",
        encoding="utf-8",
    )
    daemon = start_daemon(cfg, "--no-serve")
    try:
        assert wait_for(lambda: len(feed_server.log) >= 1)
    finally:
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert time.monotonic() - started < 6  # one batch (4 feeds, 2 at a time, 1 s each)
    assert len(feed_server.log) <= 8  # far from all 40: no new batches after the signal
    assert (tmp_path / "out" / "feed.xml").exists()  # and the output was published
