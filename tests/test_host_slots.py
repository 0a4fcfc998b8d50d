"""fetch.per_host across daemons: slots in PostgreSQL's `host_slots` table.

Against the real PostgreSQL (pg_url) and a real local HTTP server; SQLite keeps its
in-process limits and never touches the table.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig

from aggregator import config, pipeline
from aggregator.config import FetchConfig
from aggregator.fetch import fetch_all
from aggregator.models import FeedState
from aggregator.store import SchemaError, Store
from aggregator.store.coordination import HostSlots, slot_lease
from tests.conftest import DATA, run_cli
from tests.feedserver import FeedServer, Route

LEASE = timedelta(seconds=30)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    yield store
    store.close()


def test_slots_are_exclusive_under_contention(pg_store: Store) -> None:
    """Eight racing takers, two slots: never three requests at once, everyone served."""
    in_flight, most, served = 0, 0, 0
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(owner: str) -> None:
        nonlocal in_flight, most, served
        start.wait()
        while (slot := pg_store.take_host_slot("slow.example", owner, 2, LEASE)) is None:
            time.sleep(0.01)
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
            served += 1
        pg_store.release_host_slot("slow.example", slot, owner)

    threads = [threading.Thread(target=worker, args=(f"d{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert (served, most) == (8, 2)
    assert pg_store.held_host_slots() == []


def test_other_hosts_are_not_limited(pg_store: Store) -> None:
    assert pg_store.take_host_slot("a.example", "d1", 1, LEASE) == 0
    assert pg_store.take_host_slot("a.example", "d2", 1, LEASE) is None
    assert pg_store.take_host_slot("b.example", "d2", 1, LEASE) == 0


def test_waiting_fetch_proceeds_when_a_slot_is_released(pg_store: Store) -> None:
    async def scenario() -> float:
        other = HostSlots(pg_store, "other-daemon", 2, LEASE)
        mine = HostSlots(pg_store, "me", 2, LEASE)
        await other.acquire("slow.example")
        await other.acquire("slow.example")
        waiting = asyncio.create_task(mine.acquire("slow.example"))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # both slots are the other daemon's
        released = time.monotonic()
        await other.release("slow.example")
        await asyncio.wait_for(waiting, 5)
        return time.monotonic() - released

    assert asyncio.run(scenario()) < 1.5
    owners = sorted(s.owner for s in pg_store.held_host_slots())
    assert owners == ["me", "other-daemon"]


def test_abandoned_wait_takes_no_slot(pg_store: Store) -> None:
    """A fetch cancelled while waiting for a slot must not grab one later and keep it."""

    async def scenario() -> None:
        other = HostSlots(pg_store, "other-daemon", 1, LEASE)
        await other.acquire("slow.example")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(HostSlots(pg_store, "me", 1, LEASE).acquire("slow.example"), 0.3)
        await other.release("slow.example")
        await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert pg_store.held_host_slots() == []


def test_slot_of_a_dead_daemon_is_taken_over_when_its_lease_expires(pg_store: Store) -> None:
    async def scenario() -> float:
        dead = HostSlots(pg_store, "killed-daemon", 1, timedelta(seconds=0.5))
        await dead.acquire("slow.example")  # and never releases: kill -9
        started = time.monotonic()
        await asyncio.wait_for(HostSlots(pg_store, "me", 1, LEASE).acquire("slow.example"), 5)
        waited = time.monotonic() - started
        # A late release by the old owner (a paused, not dead, process) frees nothing.
        await dead.release("slow.example")
        return waited

    waited = asyncio.run(scenario())
    assert 0.3 < waited < 3
    assert [(s.host, s.owner) for s in pg_store.held_host_slots()] == [("slow.example", "me")]


def test_slot_lease_covers_a_whole_fetch() -> None:
    """fetch_one may try twice, each bounded by fetch.timeout: the lease outlasts both."""
    assert slot_lease(FetchConfig(timeout=30)) > timedelta(seconds=60)
    assert slot_lease(FetchConfig(timeout=1)) < timedelta(seconds=30)


def test_slots_are_released_after_errors_and_timeouts(
    pg_store: Store, feed_server: FeedServer
) -> None:
    feed_server.routes["/ok"] = Route(body=b"<rss/>")
    feed_server.routes["/boom"] = Route(status=500)
    feed_server.routes["/busy"] = Route(status=429, headers={"Retry-After": "60"})
    feed_server.routes["/slow"] = Route(body=b"<rss/>", delay=3)
    feed_server.routes["/big"] = Route(body=b"x" * 5000)
    urls = [feed_server.url(p) for p in ("/ok", "/boom", "/busy", "/slow", "/big", "/none")]
    urls.append("http://127.0.0.1:9/refused")
    no_headers: dict[str, str] = {}
    jobs = [(FeedState(name=str(i), url=url), no_headers) for i, url in enumerate(urls)]
    cfg = FetchConfig(per_host=2, timeout=1, max_bytes=1024)
    gate = pg_store.host_gate("me", cfg)
    assert gate is not None
    results = asyncio.run(fetch_all(jobs, cfg, None, gate))
    assert [r.ok for r in results] == [True] + [False] * 6
    assert results[3].error is not None and "timed out" in results[3].error
    assert pg_store.held_host_slots() == []  # no slot leaked, whatever the outcome
    assert max(feed_server.max_in_flight.values()) <= 2


def write_config(tmp_path: Path, store_url: str, feeds: dict[str, str], fetch: str) -> Path:
    listed = "".join(f"  - name: {n}\n    url: {u}\n" for n, u in feeds.items())
    path = tmp_path / "feeds.yaml"
    path.write_text(
        f"store: {{url: '{store_url}'}}\n"
        "output: {dir: out, link: 'https://news.example.org/'}\n"
        f"fetch: {fetch}\n"
        f"feeds:\n{listed}",
        encoding="utf-8",
    )
    return path


def test_a_cycle_shares_the_host_with_other_daemons(
    tmp_path: Path, pg_store: Store, feed_server: FeedServer
) -> None:
    """Another daemon holds one of two slots: this cycle fetches one at a time, then frees."""
    body = (DATA / "e2e" / "blog-cc.xml").read_bytes()
    for i in range(4):
        feed_server.routes[f"/f{i}.xml"] = Route(body, "application/atom+xml", delay=0.3)
    feed_server.routes["/err.xml"] = Route(status=503)
    feeds = {f"f{i}": feed_server.url(f"/f{i}.xml") for i in range(4)}
    feeds["err"] = feed_server.url("/err.xml")
    path = write_config(tmp_path, pg_store.url, feeds, "{per_host: 2, timeout: 5}")
    cfg = config.parse(path.read_text(encoding="utf-8"), str(path), tmp_path)
    assert pg_store.take_host_slot("127.0.0.1", "other-daemon", 2, LEASE) is not None

    report = pipeline.run_cycle(cfg, pg_store, forced=True, owner="me")

    assert sorted(r.outcome for r in report.feeds) == ["failed", "new", "new", "new", "new"]
    assert list(feed_server.max_in_flight.values()) == [1]
    assert [s.owner for s in pg_store.held_host_slots()] == ["other-daemon"]


def test_sqlite_keeps_in_process_limits_and_never_touches_the_table(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/f.xml"] = Route(b"<rss/>", delay=0.2)
    feeds = {f"f{i}": feed_server.url(f"/f.xml?{i}") for i in range(4)}
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", feeds, "{per_host: 2}")
    cfg = config.parse(path.read_text(encoding="utf-8"), str(path), tmp_path)
    store = Store(cfg.store_url)
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(str(a[2])))
    try:
        assert store.host_gate("me", cfg.fetch) is None
        pipeline.run_cycle(cfg, store, forced=True, owner="me")
    finally:
        store.close()
    assert statements and not [s for s in statements if "host_slots" in s]
    assert list(feed_server.max_in_flight.values()) == [2]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrate_upgrades_a_0001_database(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", "aggregator:migrations")
    with engine.begin() as conn:
        alembic.attributes["connection"] = conn
        alembic_command.upgrade(alembic, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO feeds (name, url, errors, gone, redirects_seen)"
                " VALUES ('old', 'https://old.example/rss', 0, false, 0)"
            )
        )
    engine.dispose()
    with pytest.raises(SchemaError, match="run `aggregator migrate` first"):
        Store(url)
    path = write_config(tmp_path, url, {"old": "https://old.example/rss"}, "{}")
    result = run_cli("migrate", "--config", str(path))
    assert result.returncode == 0, result.stderr
    store = Store(url)
    try:
        assert list(store.feed_states()) == ["old"]  # the data came along
        if backend == "postgresql":
            assert store.take_host_slot("old.example", "me", 1, LEASE) == 0
        assert (store.host_gate("me", FetchConfig()) is None) == (backend == "sqlite")
    finally:
        store.close()


def test_stopping_daemon_gives_its_slots_back(pg_store: Store) -> None:
    pg_store.take_host_slot("a.example", "leaving", 2, LEASE)
    pg_store.take_host_slot("a.example", "staying", 2, LEASE)
    pg_store.forget_daemon("leaving")
    assert [s.owner for s in pg_store.held_host_slots()] == ["staying"]
    assert all(s.until > datetime.now(UTC) for s in pg_store.held_host_slots())
