"""Politeness rules seen from the provider's side: what the real CLI asks of a real server."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.conftest import DATA, run_cli
from tests.feedserver import FeedServer, Route

BLOG = (DATA / "e2e" / "blog-cc.xml").read_bytes()
PARTNER = (DATA / "e2e" / "partner.xml").read_bytes()


def write(tmp_path: Path, feeds: list[tuple[str, str]], extra: str = "") -> Path:
    lines = ["output: {dir: out, link: 'https://news.example.org/'}", extra, "feeds:"]
    for name, url in feeds:
        lines += [f"  - name: {name}", f"    url: {url}"]
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def status(cfg: Path) -> dict[str, dict[str, object]]:
    result = run_cli("status", "--json", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)["feeds"]}


def test_429_slows_only_its_own_host(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.routes["/busy.xml"] = Route(status=429, headers={"Retry-After": "600"})
    feed_server.routes["/ok.xml"] = Route(BLOG, "application/atom+xml")
    feed_server.routes["/other.xml"] = Route(PARTNER)
    cfg = write(
        tmp_path,
        [
            ("busy", feed_server.url("/busy.xml")),
            ("same-host", feed_server.url("/ok.xml")),
            ("other-host", feed_server.url("/other.xml", host="localhost")),
        ],
    )
    first = run_cli("poll", "--config", str(cfg))
    assert "HTTP 429" in first.stdout
    feed_server.log.clear()
    second = run_cli("poll", "--config", str(cfg))
    assert second.returncode == 0, second.stdout
    assert feed_server.requests("/busy.xml") == []
    assert feed_server.requests("/ok.xml") == []  # same host: waits too
    assert len(feed_server.requests("/other.xml")) == 1  # another host: polled
    assert second.stdout.count("SKIPPED") == 2
    assert "asked us to wait" in second.stdout


def test_backoff_and_recovery(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.routes["/flaky.xml"] = Route(status=500)
    cfg = write(tmp_path, [("flaky", feed_server.url("/flaky.xml"))])
    for expected_errors in (1, 2):
        assert run_cli("poll", "--config", str(cfg)).returncode == 1
        row = status(cfg)["flaky"]
        assert row["errors"] == expected_errors
        assert row["last_error"] == "HTTP 500 Internal Server Error"
    feed_server.routes["/flaky.xml"] = Route(BLOG, "application/atom+xml")
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    row = status(cfg)["flaky"]
    assert row["errors"] == 0 and row["last_error"] is None and row["entries"] == 2


def test_gone_feed_is_left_alone_until_its_url_changes(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/gone.xml"] = Route(status=410)
    feed_server.routes["/new.xml"] = Route(BLOG, "application/atom+xml")
    cfg = write(tmp_path, [("old", feed_server.url("/gone.xml"))])
    run_cli("poll", "--config", str(cfg))
    assert status(cfg)["old"]["gone"] is True
    again = run_cli("poll", "--config", str(cfg))
    assert "SKIPPED" in again.stdout and "gone" in again.stdout
    assert len(feed_server.requests("/gone.xml")) == 1
    cfg = write(tmp_path, [("old", feed_server.url("/new.xml"))])
    fixed = run_cli("poll", "--config", str(cfg))
    assert fixed.returncode == 0 and "2 new" in fixed.stdout


def test_consistent_permanent_redirect_is_adopted(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.routes["/old.xml"] = Route(status=301, redirect="/new.xml")
    feed_server.routes["/new.xml"] = Route(PARTNER)
    cfg = write(tmp_path, [("moved", feed_server.url("/old.xml"))])
    for _ in range(3):
        result = run_cli("poll", "--config", str(cfg))
        assert result.returncode == 0
    assert "adopted permanent redirect" in result.stdout
    feed_server.log.clear()
    run_cli("poll", "--config", str(cfg))
    assert feed_server.requests("/old.xml") == []
    fetched = feed_server.requests("/new.xml")
    assert len(fetched) == 1 and fetched[0].status == 304  # validators kept across the move
    assert status(cfg)["moved"]["url"] == feed_server.url("/new.xml")


def test_unchanged_body_without_validators_is_not_parsed_again(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/plain.xml"] = Route(PARTNER, etag=False)
    cfg = write(tmp_path, [("plain", feed_server.url("/plain.xml"))])
    assert "2 new" in run_cli("poll", "--config", str(cfg)).stdout
    second = run_cli("poll", "--config", str(cfg))
    assert "body unchanged" in second.stdout


def test_json_logs_one_event_per_feed(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.routes["/ok.xml"] = Route(PARTNER)
    cfg = write(tmp_path, [("good", feed_server.url("/ok.xml")), ("bad", feed_server.url("/x"))])
    result = run_cli("--log-format", "json", "poll", "--config", str(cfg))
    events = [json.loads(line) for line in result.stderr.splitlines()]
    feeds = {e["feed"]: e for e in events if e.get("event") == "feed"}
    assert feeds["good"]["status"] == 200 and feeds["good"]["new"] == 2
    assert feeds["good"]["url"] == feed_server.url("/ok.xml")
    assert isinstance(feeds["good"]["duration"], float)
    assert feeds["bad"]["status"] == 404 and feeds["bad"]["level"] == "warning"
    assert any(e.get("event") == "publish" for e in events)
    quiet = run_cli("poll", "--config", str(cfg))
    assert "good" not in quiet.stderr  # text mode: a one-shot poll logs only problems


def test_poll_on_a_terminal_shows_progress(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.routes["/ok.xml"] = Route(PARTNER)
    cfg = write(tmp_path, [(f"f{i}", feed_server.url(f"/ok.xml?{i}")) for i in range(3)])
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "poll", "--config", str(cfg)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        output += chunk
    proc.wait(timeout=60)
    os.close(controller)
    text = output.decode()
    assert "fetching [" in text and "3/3 feeds" in text
    assert "published" in text
    plain = run_cli("poll", "--config", str(cfg))
    assert "fetching [" not in plain.stderr + plain.stdout  # not a terminal: no bar


def test_a_slow_feed_does_not_hold_back_the_next_batches(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """Batches overlap: the feeds of later batches are fetched while an earlier one waits."""
    body = (DATA / "e2e" / "partner.xml").read_bytes()
    feed_server.routes["/a-slow.xml"] = Route(body, delay=1.5)
    feeds = [("a-slow", feed_server.url("/a-slow.xml"))]
    for i in range(1, 6):
        feed_server.routes[f"/b{i}.xml"] = Route(body.replace(b"/news/", f"/b{i}/".encode()))
        feeds.append((f"b{i}", feed_server.url(f"/b{i}.xml")))
    cfg = write(tmp_path, feeds, "fetch: {batch: 2, per_host: 8}\n")
    result = run_cli("poll", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    answered = [r.path for r in feed_server.log]
    # a-slow and b1 are the first batch; b2..b5 (two later batches) need not wait for a-slow.
    assert answered[-1] == "/a-slow.xml", answered
    assert set(answered) == {"/a-slow.xml", *(f"/b{i}.xml" for i in range(1, 6))}
