"""One cycle through the stages: due feeds -> fetch -> parse -> store -> policy -> publish.

Every feed is handled on its own: whatever goes wrong with one (HTTP error, garbage,
hostile XML, a bug of ours) is caught, recorded in its state and reported, and the cycle
goes on with the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from aggregator import fetch, parse, policy, publish, schedule
from aggregator.config import Config, FeedConfig
from aggregator.models import FeedState, Fetched, PublishedItem
from aggregator.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedReport:
    """What happened to one feed in a cycle, as the operator reads it."""

    name: str
    outcome: str  # new | unchanged | not-modified | failed | skipped
    status: int | None = None
    new: int = 0
    updated: int = 0
    message: str = ""
    elapsed: float = 0.0


@dataclass(frozen=True)
class CycleReport:
    feeds: tuple[FeedReport, ...]
    published: int
    written: tuple[Path, ...]

    @property
    def failed(self) -> list[FeedReport]:
        return [r for r in self.feeds if r.outcome == "failed"]


def run_cycle(
    config: Config,
    store: Store,
    *,
    forced: bool,
    now: datetime | None = None,
    rng: random.Random | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> CycleReport:
    """Poll the due feeds (all of them when `forced`, bar gone/throttled ones), then publish.

    `progress(done, total)` is called as fetches complete (for a terminal progress bar).
    """
    now = now or datetime.now(UTC)
    stored = store.feed_states()
    throttled = store.host_throttles(now)
    reports: list[FeedReport] = []
    jobs: list[tuple[FeedConfig, FeedState]] = []
    for feed in config.feeds:
        state = schedule.initial_state(feed, stored.get(feed.name))
        host_until = throttled.get(_host(state.url))
        reason = schedule.skip_reason(state, now, host_until)
        if reason:
            reports.append(FeedReport(feed.name, "skipped", state.status, message=reason))
        elif forced or schedule.is_due(state, now, host_until):
            jobs.append((feed, state))
    done = 0

    def fetched_one(_: Fetched) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(jobs))

    results = asyncio.run(
        fetch.fetch_all([(s, f.headers) for f, s in jobs], config.fetch, fetched_one)
    )
    for (feed, state), fetched in zip(jobs, results, strict=True):
        try:
            reports.append(absorb(config, store, feed, state, fetched, now, rng))
        except Exception as exc:  # a bug with one feed must not cost the others their poll
            log.exception("internal error while storing %s", feed.name)
            reports.append(
                FeedReport(feed.name, "failed", fetched.status, message=f"internal error: {exc!r}")
            )
        report = reports[-1]
        log.log(
            logging.WARNING if report.outcome == "failed" else logging.INFO,
            "%s %s: %s",
            feed.name,
            report.outcome,
            report.message,
            extra={
                "event": "feed",
                "feed": feed.name,
                "url": state.url,
                "status": fetched.status,
                "outcome": report.outcome,
                "new": report.new,
                "updated": report.updated,
                "duration": round(fetched.elapsed, 3),
            },
        )
    items, written = publish_all(config, store, now)
    log.info(
        "published %d items",
        len(items),
        extra={"event": "publish", "items": len(items), "written": [p.name for p in written]},
    )
    return CycleReport(tuple(reports), len(items), tuple(written))


@dataclass(frozen=True)
class _Poll:
    """What every step of handling one feed's fetch needs to know."""

    config: Config
    store: Store
    feed: FeedConfig
    now: datetime
    rng: random.Random | None

    def report(self, outcome: str, fetched: Fetched, message: str, **counts: int) -> FeedReport:
        return FeedReport(
            self.feed.name,
            outcome,
            fetched.status,
            message=message,
            elapsed=fetched.elapsed,
            **counts,
        )

    def succeeded(
        self, state: FeedState, fetched: Fetched, body_hash: str | None, ttl: int | None = None
    ) -> FeedState:
        return replace(
            state,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            body_hash=body_hash,
            error=None,
            errors=0,
            last_ok=self.now,
            retry_until=None,
            next_poll=schedule.next_poll(
                self.feed,
                self.config,
                self.now,
                ttl_minutes=ttl,
                fresh_until=fetched.fresh_until,
                recent=self.store.recent_dates(self.feed.name),
                rng=self.rng,
            ),
        )

    def failed(self, state: FeedState, fetched: Fetched, message: str) -> FeedReport:
        errors = state.errors + 1
        self.store.save_feed_state(
            replace(
                state,
                error=message,
                errors=errors,
                gone=fetched.status == 410,
                retry_until=fetched.retry_after,
                next_poll=schedule.next_poll(
                    self.feed,
                    self.config,
                    self.now,
                    errors=errors,
                    retry_until=fetched.retry_after,
                    rng=self.rng,
                ),
            )
        )
        return self.report("failed", fetched, message)

    def throttle_host(self, state: FeedState, fetched: Fetched) -> None:
        """429 (and 503 with Retry-After) slows every feed on that host, not just this one."""
        until = fetched.retry_after
        if until is None and fetched.status == 429:
            until = self.now + self.config.schedule.min_interval
        if until is not None and fetched.status in (429, 503):
            reason = f"HTTP {fetched.status} from {state.url}"
            self.store.throttle_host(_host(state.url), until, reason)


def absorb(
    config: Config,
    store: Store,
    feed: FeedConfig,
    state: FeedState,
    fetched: Fetched,
    now: datetime,
    rng: random.Random | None = None,
) -> FeedReport:
    """Turn one fetch result into stored state and entries."""
    poll = _Poll(config, store, feed, now, rng)
    polled, moved = schedule.follow_redirect(
        replace(state, status=fetched.status, last_polled=now), fetched.permanent_redirect
    )

    def note(message: str) -> str:
        return f"{message}; {moved}" if moved else message

    if fetched.error is not None:
        poll.throttle_host(state, fetched)
        return poll.failed(polled, fetched, note(fetched.error))

    body_hash = hashlib.sha256(fetched.body).hexdigest() if fetched.body is not None else None
    if fetched.not_modified or (body_hash is not None and body_hash == state.body_hash):
        store.save_feed_state(poll.succeeded(polled, fetched, body_hash or state.body_hash))
        if fetched.not_modified:
            return poll.report("not-modified", fetched, note("not modified"))
        return poll.report("unchanged", fetched, note("body unchanged"))

    assert fetched.body is not None
    try:
        parsed = parse.parse_feed(
            fetched.body,
            url=fetched.final_url or state.url,
            content_type=fetched.content_type,
            timezone=config.feed_timezone(feed),
            now=now,
        )
    except parse.ParseError as exc:
        return poll.failed(polled, fetched, note(str(exc)))
    ok = poll.succeeded(polled, fetched, body_hash, parsed.ttl)
    result = store.store_entries(ok, fetched, parsed, now)
    for warning in parsed.warnings:
        log.info("%s: %s", feed.name, warning)
    return poll.report(
        "new" if result.new or result.updated else "unchanged",
        fetched,
        note(f"{len(parsed.entries)} entries in feed"),
        new=result.new,
        updated=result.updated,
    )


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def collect_items(config: Config, store: Store) -> list[PublishedItem]:
    """The newest publishable stories, cut to their terms, newest first."""
    allowed = {f.name: f for f in config.feeds if f.redistribution != "none"}
    limit = config.output.limit
    items: list[PublishedItem] = []
    offset = 0
    while len(items) < limit:
        batch = store.latest_clusters(list(allowed), limit, offset)
        if not batch:
            break
        offset += len(batch)
        for members in batch:
            item, reason = policy.build_item(members, allowed, config.output.language)
            if item is None:
                log.debug("not published: %s (%s)", members[0].link or members[0].key, reason)
            else:
                items.append(item)
    items.sort(key=lambda i: (i.published, i.guid), reverse=True)
    return items[:limit]


def publish_all(
    config: Config, store: Store, now: datetime
) -> tuple[Sequence[PublishedItem], list[Path]]:
    items = collect_items(config, store)
    written = publish.publish(items, config.output, config.output_dir, now)
    return items, written
