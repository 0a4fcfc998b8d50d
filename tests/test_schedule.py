"""When feeds are polled: table tests of the pure scheduling decisions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import config
from aggregator.models import FeedState
from aggregator.schedule import (
    DaemonLock,
    follow_redirect,
    initial_state,
    is_due,
    next_poll,
    publishing_interval,
    skip_reason,
)

NOW = datetime(2025, 10, 16, 12, 0, tzinfo=UTC)
CFG = config.parse(
    "schedule: {interval: 30m, min_interval: 15m, max_interval: 24h}\n"
    "feeds:\n  - {name: a, url: 'https://a.example/rss'}\n"
    "  - {name: b, url: 'https://b.example/rss', interval: 2h}\n"
)
A, B = CFG.feeds


@pytest.mark.parametrize(
    ("state", "due", "reason"),
    [
        (FeedState("a", "u"), True, None),
        (FeedState("a", "u", next_poll=NOW - timedelta(seconds=1)), True, None),
        (FeedState("a", "u", next_poll=NOW + timedelta(minutes=1)), False, None),
        (FeedState("a", "u", gone=True), False, "gone (HTTP 410)"),
        (FeedState("a", "u", retry_until=NOW + timedelta(minutes=5)), False, "asked us to wait"),
        (FeedState("a", "u", retry_until=NOW - timedelta(minutes=5)), True, None),
    ],
)
def test_due_and_skip(state: FeedState, due: bool, reason: str | None) -> None:
    assert is_due(state, NOW) is due
    got = skip_reason(state, NOW)
    assert (got is None) if reason is None else (got is not None and reason in got)


def within(when: datetime, expected: timedelta) -> bool:
    delta = when - NOW
    return expected * 0.89 <= delta <= expected * 1.11


@pytest.mark.parametrize(
    ("feed", "kw", "expected"),
    [
        (A, {}, timedelta(minutes=30)),
        (B, {}, timedelta(hours=2)),
        (A, {"ttl_minutes": 90}, timedelta(minutes=90)),
        (A, {"ttl_minutes": 5}, timedelta(minutes=30)),
        (A, {"errors": 1}, timedelta(minutes=30)),
        (A, {"errors": 3}, timedelta(hours=2)),
        (A, {"errors": 30}, timedelta(hours=24)),
        (B, {"ttl_minutes": 60 * 48}, timedelta(hours=24)),
    ],
)
def test_next_poll_interval(
    feed: config.FeedConfig, kw: dict[str, int], expected: timedelta
) -> None:
    assert within(next_poll(feed, CFG, NOW, rng=random.Random(1), **kw), expected)  # type: ignore[arg-type]


def test_retry_after_wins_over_shorter_interval() -> None:
    until = NOW + timedelta(hours=5)
    assert next_poll(A, CFG, NOW, errors=1, retry_until=until) == until


def test_jitter_spreads_feeds() -> None:
    rng = random.Random(7)
    times = {next_poll(A, CFG, NOW, rng=rng) for _ in range(20)}
    assert len(times) == 20


def test_changed_url_starts_afresh() -> None:
    stored = FeedState("a", "https://old.example/rss", etag='"1"', gone=True, errors=4)
    assert initial_state(A, stored) == FeedState("a", A.url, config_url=A.url)
    same = FeedState("a", A.url, etag='"1"')
    assert initial_state(A, same).etag == '"1"'
    # after adopting a redirect the fetch URL differs from the configured one: keep state
    adopted = FeedState("a", "https://new.example/rss", config_url=A.url, etag='"2"')
    assert initial_state(A, adopted) == adopted


def test_permanent_redirect_adopted_only_when_consistent() -> None:
    state = FeedState("a", A.url, config_url=A.url)
    new = "https://new.example/rss"
    for seen in (1, 2):
        state, note = follow_redirect(state, new)
        assert state.url == A.url and note and f"seen {seen}x" in note
    state, note = follow_redirect(state, new)
    assert state.url == new and note and "adopted" in note
    # a redirect that comes and goes starts counting again
    flappy = FeedState("a", A.url, redirects_seen=2, permanent_redirect=new)
    flappy, _ = follow_redirect(flappy, None)
    assert flappy.redirects_seen == 0
    flappy, _ = follow_redirect(flappy, "https://other.example/rss")
    assert flappy.redirects_seen == 1 and flappy.url == A.url


def test_host_throttle_skips_even_a_forced_poll() -> None:
    state = FeedState("a", "u")
    reason = skip_reason(state, NOW, host_until=NOW + timedelta(minutes=3))
    assert reason and "host asked us to wait" in reason
    assert not is_due(state, NOW, host_until=NOW + timedelta(minutes=3))
    assert is_due(state, NOW, host_until=NOW - timedelta(minutes=3))


@pytest.mark.parametrize(
    ("gaps_hours", "expected"),
    [
        ([2, 2, 2, 2], timedelta(hours=1)),  # every 2 h -> poll hourly
        ([0.1, 0.1, 0.1], timedelta(minutes=15)),  # bursty -> floor at min_interval
        ([72, 96, 48], timedelta(hours=24)),  # weekly-ish -> capped at max_interval
        ([], timedelta(minutes=30)),  # no history -> the default interval
    ],
)
def test_interval_adapts_to_publishing_rate(gaps_hours: list[float], expected: timedelta) -> None:
    dates, t = [NOW], NOW
    for gap in gaps_hours:
        t -= timedelta(hours=gap)
        dates.append(t)
    assert within(next_poll(A, CFG, NOW, recent=dates, rng=random.Random(3)), expected)


def test_configured_interval_does_not_adapt() -> None:
    dates = [NOW - timedelta(minutes=10 * i) for i in range(10)]
    assert within(next_poll(B, CFG, NOW, recent=dates, rng=random.Random(3)), timedelta(hours=2))


def test_http_freshness_is_respected() -> None:
    fresh = NOW + timedelta(hours=3)
    assert within(
        next_poll(A, CFG, NOW, fresh_until=fresh, rng=random.Random(3)), timedelta(hours=3)
    )


def test_dateless_feed_keeps_default_interval() -> None:
    assert publishing_interval([NOW] * 10) is None


def test_only_one_daemon_per_lock(tmp_path: Path) -> None:
    first, second = DaemonLock(tmp_path / "db.lock"), DaemonLock(tmp_path / "db.lock")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()
