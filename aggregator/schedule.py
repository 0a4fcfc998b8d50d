"""When to poll: pure decisions from stored state, and the APScheduler daemon that acts on them.

The store holds each feed's next poll time, so a restarted daemon (or, later, several
daemons on PostgreSQL) resumes the same schedule instead of hammering every provider.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from types import FrameType
from typing import IO

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from aggregator.config import Config, FeedConfig
from aggregator.models import FeedState

log = logging.getLogger(__name__)

#: Spread of each interval, so feeds added together do not stay in lockstep.
JITTER = 0.1


#: Consecutive polls that must end at the same permanent redirect before we adopt it.
ADOPT_REDIRECT_AFTER = 3


def skip_reason(state: FeedState, now: datetime, host_until: datetime | None = None) -> str | None:
    """Why even a forced poll must leave this feed alone, or None."""
    if state.gone:
        return "gone (HTTP 410); fix or remove its url in the config to poll it again"
    if state.retry_until and state.retry_until > now:
        return f"server asked us to wait until {state.retry_until:%Y-%m-%d %H:%M:%S} UTC"
    if host_until and host_until > now:
        return f"its host asked us to wait until {host_until:%Y-%m-%d %H:%M:%S} UTC"
    return None


def is_due(state: FeedState, now: datetime, host_until: datetime | None = None) -> bool:
    if skip_reason(state, now, host_until) is not None:
        return False
    return state.next_poll is None or state.next_poll <= now


def publishing_interval(dates: Sequence[datetime]) -> timedelta | None:
    """Half the median gap between the feed's recent entries: about two polls per new entry."""
    ordered = sorted(dates, reverse=True)
    # Entries without dates all carry their first-seen time; equal dates say nothing.
    gaps = sorted(a - b for a, b in pairwise(ordered) if a > b)
    if len(gaps) < 2:
        return None
    return gaps[len(gaps) // 2] / 2


def next_poll(
    feed: FeedConfig,
    config: Config,
    now: datetime,
    *,
    errors: int = 0,
    ttl_minutes: int | None = None,
    retry_until: datetime | None = None,
    fresh_until: datetime | None = None,
    recent: Sequence[datetime] = (),
    rng: random.Random | None = None,
) -> datetime:
    """When to poll next.

    A configured per-feed interval is fixed; otherwise the default interval adapts to how
    often the feed publishes. Never sooner than the feed's <ttl> or HTTP freshness, doubled
    per consecutive error, bounded by min/max_interval, jittered; Retry-After is absolute.
    """
    sched = config.schedule
    interval = feed.interval or publishing_interval(recent) or sched.interval
    if ttl_minutes:
        interval = max(interval, timedelta(minutes=ttl_minutes))
    if fresh_until:
        interval = max(interval, fresh_until - now)
    if errors:
        interval = interval * (2 ** min(errors - 1, 16))
    interval = min(max(interval, sched.min_interval), sched.max_interval)
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    when = now + interval * spread
    return max(when, retry_until) if retry_until else when


def initial_state(feed: FeedConfig, stored: FeedState | None) -> FeedState:
    """The stored state, unless the operator changed the feed's URL: then start afresh."""
    if stored is None or (stored.config_url or stored.url) != feed.url:
        return FeedState(name=feed.name, url=feed.url, config_url=feed.url)
    return replace(stored, config_url=feed.url)


def follow_redirect(state: FeedState, moved_to: str | None) -> tuple[FeedState, str | None]:
    """Adopt a permanent redirect once it has been seen on consecutive polls.

    One 301 may be a misconfigured server; the same 301 three times is a move.
    """
    if not moved_to or moved_to == state.url:
        return replace(state, redirects_seen=0, permanent_redirect=None), None
    seen = state.redirects_seen + 1 if state.permanent_redirect == moved_to else 1
    if seen < ADOPT_REDIRECT_AFTER:
        note = (
            f"moved permanently to {moved_to} (seen {seen}x; adopted after {ADOPT_REDIRECT_AFTER})"
        )
        return replace(state, redirects_seen=seen, permanent_redirect=moved_to), note
    note = f"adopted permanent redirect: now polling {moved_to} (update its url in the config)"
    return replace(state, url=moved_to, redirects_seen=0, permanent_redirect=None), note


class DaemonLock:
    """One daemon per SQLite store: two would double-poll every provider."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        self._file = self.path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            return False
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def run_daemon(
    config: Config,
    cycle: Callable[[Callable[[], bool]], object],
    on_stop: Callable[[], object],
) -> None:
    """Call `cycle(stopping)` every `schedule.tick` until SIGTERM/SIGINT, then `on_stop` once.

    Each cycle polls only the feeds that are due, so the tick is just how often we look. A
    cycle asks `stopping()` between batches, so a stop waits for one batch at most.
    """
    scheduler = BlockingScheduler(timezone=UTC)
    stopping = threading.Event()

    def guarded() -> None:
        if stopping.is_set():
            return
        try:
            cycle(stopping.is_set)
        except Exception:  # the daemon must outlive any one bad cycle
            log.exception("poll cycle failed; will try again at the next tick")

    scheduler.add_job(
        guarded,
        IntervalTrigger(seconds=config.schedule.tick.total_seconds(), timezone=UTC),
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        id="cycle",
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s, finishing the current cycle and stopping", signal.Signals(signum).name
        )
        stopping.set()
        # wait=True lets the batch in flight finish; fetch timeouts bound how long that takes.
        scheduler.shutdown(wait=True)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        scheduler.start()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    on_stop()
