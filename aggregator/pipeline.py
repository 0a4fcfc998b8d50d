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
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from aggregator import fetch, parse, policy, schedule, site, websub
from aggregator.config import Config, FeedConfig, FetchConfig
from aggregator.models import FeedState, Fetched, PublishedItem
from aggregator.parallel import ParseArgs, Parsing, parse_ahead
from aggregator.store import LeaseLost, Store

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
    owner: str | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> CycleReport:
    """Poll the due feeds (all of them when `forced`, bar gone/throttled ones), then publish.

    Feeds are leased in batches of `fetch.batch` under `owner`, so several daemons on one
    PostgreSQL database never poll the same feed at once, and there every request first
    takes one of its host's cluster-wide slots (store.host_gate). `stopping()` is asked before each
    batch (a stopping daemon takes no new work). `progress(done, total)` is called as
    fetches complete (for a terminal progress bar).
    """
    now = now or datetime.now(UTC)
    owner = owner or f"poll-{uuid.uuid4().hex[:12]}"
    stored = store.feed_states()
    throttled = store.host_throttles(now)
    reports: list[FeedReport] = []
    by_name = {feed.name: feed for feed in config.feeds}
    candidates: list[str] = []
    for feed in config.feeds:
        previous = stored.get(feed.name)
        state = schedule.initial_state(feed, previous)
        if previous is None:
            store.register_feed(state)
        elif state != previous:  # its URL changed in the config
            store.reset_feed(state)
        reason = schedule.skip_reason(state, now, throttled.get(fetch.host_of(state.url)))
        if reason:
            reports.append(FeedReport(feed.name, "skipped", state.status, message=reason))
        elif forced or schedule.is_due(state, now):
            candidates.append(feed.name)

    # PostgreSQL: per-host slots shared by every daemon (host_slots); SQLite: None.
    gate = store.host_gate(owner, config.fetch)
    done, total = 0, len(candidates)
    lease = config.schedule.lease
    pending: list[str] = []  # claimed feeds not yet stored (up to BATCHES_IN_FLIGHT batches)
    renewed = datetime.now(UTC)

    def keep_lease() -> None:
        # Renew a third of the way into the lease, so a slow batch never loses its feeds.
        nonlocal renewed
        current = datetime.now(UTC)
        if pending and current - renewed > lease / 3:
            store.renew_leases(owner, pending, current + lease)
            renewed = current

    def fetched_one(_: Fetched) -> None:  # on the fetching thread
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    remaining = list(candidates)

    def claim() -> list[FeedState]:
        nonlocal remaining, renewed
        if not remaining or stopping():
            return []
        claimed = datetime.now(UTC)
        batch = store.claim(
            remaining, owner, claimed, lease, forced=forced, limit=config.fetch.batch
        )
        if not pending:  # else the batch in flight holds the older lease, renewed first
            renewed = claimed
        names = [state.name for state in batch]
        pending.extend(names)
        remaining = [name for name in remaining if name not in names]
        return batch

    def jobs(batch: list[FeedState]) -> list[tuple[FeedState, dict[str, str]]]:
        return [(state, by_name[state.name].headers) for state in batch]

    with _Fetching(config.fetch, gate) as fetching:
        flight: deque[tuple[list[FeedState], Future[list[Fetched]]]] = deque()

        def top_up() -> None:
            # The next batches' requests start now: their feeds need not wait for this batch's
            # slowest feed, nor for storing it (the limits are shared, never exceeded).
            while len(flight) < BATCHES_IN_FLIGHT and (claimed := claim()):
                flight.append((claimed, fetching.start(jobs(claimed), fetched_one)))

        top_up()
        while flight:
            batch, current = flight.popleft()
            top_up()
            results = fetching.wait(current, keep_lease)
            # Worker processes parse the next bodies while this process stores the current one.
            bodies = [
                _parse_args(config, by_name[s.name], s, f, now)
                for s, f in zip(batch, results, strict=True)
            ]
            parses = parse_ahead(bodies)
            recent = store.recent_dates(state.name for state in batch)
            for state, fetched, parsing in zip(batch, results, parses, strict=True):
                keep_lease()
                feed = by_name[state.name]
                reports.append(
                    _absorb_logged(
                        config,
                        store,
                        feed,
                        state,
                        fetched,
                        now,
                        rng,
                        owner,
                        parsing,
                        recent[feed.name],
                    )
                )
                pending.remove(state.name)
            if stopping() and flight:  # a stopping daemon finishes one batch, not all claimed
                given_back = [state.name for claimed, _ in flight for state in claimed]
                fetching.drop(flight)
                store.renew_leases(owner, given_back, datetime.now(UTC))  # free them now
                pending.clear()
    if forced:
        for name in remaining:
            message = "being polled by another daemon right now"
            reports.append(FeedReport(name, "skipped", None, message=message))

    if not store.try_publisher_lock():
        log.info("another daemon publishes the output", extra={"event": "publish", "items": 0})
        return CycleReport(tuple(reports), 0, ())
    items, written = publish_all(config, store, now)
    log.info(
        "published %d items",
        len(items),
        extra={"event": "publish", "items": len(items), "written": [p.name for p in written]},
    )
    return CycleReport(tuple(reports), len(items), tuple(written))


class _Fetching:
    """The cycle's fetches, on an event loop in a thread of their own, through one Fetcher:
    the next batch's requests run while this thread stores the last batch."""

    def __init__(self, cfg: FetchConfig, gate: fetch.HostGate | None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fetch", daemon=True)
        self._fetcher = fetch.Fetcher(cfg, gate)
        self._started: list[Future[list[Fetched]]] = []

    def __enter__(self) -> _Fetching:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._fetcher.__aenter__(), self._loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for future in self._started:  # left behind by an error: stop its requests
                future.cancel()
            closing = self._fetcher.__aexit__()
            asyncio.run_coroutine_threadsafe(closing, self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def start(
        self, jobs: list[tuple[FeedState, dict[str, str]]], on_done: Callable[[Fetched], object]
    ) -> Future[list[Fetched]]:
        future = asyncio.run_coroutine_threadsafe(self._fetcher.fetch(jobs, on_done), self._loop)
        self._started.append(future)
        return future

    def drop(self, flight: deque[tuple[list[FeedState], Future[list[Fetched]]]]) -> None:
        """Stop fetching these batches (their results are not wanted)."""
        for _, future in flight:
            future.cancel()
            self._started.remove(future)
        flight.clear()

    def wait(self, future: Future[list[Fetched]], tick: Callable[[], None]) -> list[Fetched]:
        """The batch's results; `tick` (lease renewal) runs every few seconds meanwhile."""
        while True:
            try:
                results = future.result(timeout=WAIT_TICK)
            except FutureTimeout:
                tick()
                continue
            self._started.remove(future)
            return results


#: Seconds between lease renewal checks while a batch is being fetched.
WAIT_TICK = 5.0
#: Leased batches being fetched at once (each of fetch.batch feeds, within the same limits).
BATCHES_IN_FLIGHT = 3


def _absorb_logged(
    config: Config,
    store: Store,
    feed: FeedConfig,
    state: FeedState,
    fetched: Fetched,
    now: datetime,
    rng: random.Random | None,
    owner: str,
    parsing: Parsing | None,
    recent: Sequence[datetime],
) -> FeedReport:
    """absorb(), with whatever goes wrong contained to this feed, and one log event."""
    try:
        report = absorb(config, store, feed, state, fetched, now, rng, owner, parsing, recent)
    except LeaseLost as exc:
        report = FeedReport(feed.name, "skipped", fetched.status, message=str(exc))
    except Exception as exc:  # a bug with one feed must not cost the others their poll
        log.exception("internal error while storing %s", feed.name)
        report = FeedReport(feed.name, "failed", fetched.status, message=f"internal error: {exc!r}")
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
    return report


@dataclass(frozen=True)
class _Poll:
    """What every step of handling one feed's fetch needs to know."""

    config: Config
    store: Store
    feed: FeedConfig
    now: datetime
    rng: random.Random | None
    owner: str | None
    recent: Sequence[datetime]

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
                recent=self.recent,
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
            ),
            owner=self.owner,
        )
        return self.report("failed", fetched, message)

    def throttle_host(self, state: FeedState, fetched: Fetched) -> None:
        """429 (and 503 with Retry-After) slows every feed on that host, not just this one."""
        until = fetched.retry_after
        if until is None and fetched.status == 429:
            until = self.now + self.config.schedule.min_interval
        if until is not None and fetched.status in (429, 503):
            reason = f"HTTP {fetched.status} from {state.url}"
            self.store.throttle_host(fetch.host_of(state.url), until, reason)


def absorb(
    config: Config,
    store: Store,
    feed: FeedConfig,
    state: FeedState,
    fetched: Fetched,
    now: datetime,
    rng: random.Random | None = None,
    owner: str | None = None,
    parsing: Parsing | None = None,
    recent: Sequence[datetime] | None = None,
) -> FeedReport:
    """Turn one fetch result into stored state and entries, releasing the feed's lease.

    A cycle passes what it prepared for the whole batch: the body's parse, maybe under way
    in a worker process (aggregator.parallel), and the feed's recent entry dates.
    """
    if recent is None:
        recent = store.recent_dates([feed.name])[feed.name]
    poll = _Poll(config, store, feed, now, rng, owner, recent)
    polled, moved = schedule.follow_redirect(
        replace(state, status=fetched.status, last_polled=now, lease_owner=None, lease_until=None),
        fetched.permanent_redirect,
    )

    def note(message: str) -> str:
        return f"{message}; {moved}" if moved else message

    if fetched.error is not None:
        poll.throttle_host(state, fetched)
        return poll.failed(polled, fetched, note(fetched.error))

    body_hash = hashlib.sha256(fetched.body).hexdigest() if fetched.body is not None else None
    if fetched.not_modified or (body_hash is not None and body_hash == state.body_hash):
        store.save_feed_state(
            poll.succeeded(polled, fetched, body_hash or state.body_hash), owner=owner
        )
        if fetched.not_modified:
            return poll.report("not-modified", fetched, note("not modified"))
        return poll.report("unchanged", fetched, note("body unchanged"))

    if parsing is None:
        args = _parse_args(config, feed, state, fetched, now)
        assert args is not None
        parsing = Parsing(args)
    try:
        parsed, prepared = parsing.result()
    except parse.ParseError as exc:
        return poll.failed(polled, fetched, note(str(exc)))
    ok = poll.succeeded(polled, fetched, body_hash, parsed.ttl)
    result = store.store_entries(ok, fetched, parsed, now, owner=owner, prepared=prepared)
    for warning in parsed.warnings:
        log.info("%s: %s", feed.name, warning)
    return poll.report(
        "new" if result.new or result.updated else "unchanged",
        fetched,
        note(f"{len(parsed.entries)} entries in feed"),
        new=result.new,
        updated=result.updated,
    )


def _parse_args(
    config: Config, feed: FeedConfig, state: FeedState, fetched: Fetched, now: datetime
) -> ParseArgs:
    """What parsing the body needs, or None when there is nothing new to parse."""
    if fetched.error is not None or fetched.body is None or fetched.not_modified:
        return None
    if hashlib.sha256(fetched.body).hexdigest() == state.body_hash:
        return None
    url = fetched.final_url or state.url
    return fetched.body, url, fetched.content_type, config.feed_timezone(feed), now


#: Stories whose entries are read from the store at once while publishing (~5 MB per 1,000):
#: a first publish's archive catch-up reads every story, a page at a time.
PUBLISH_PAGE = 1000
#: Built items a daemon keeps for its next publish, in multiples of output.limit.
MEMO_STORIES = 4


def collect_items(config: Config, store: Store) -> Iterator[PublishedItem]:
    """Every publishable story cut to its terms, newest story first (the store's order).

    Lazy: the newest `output.limit` stories are ranked, and every story once more only if a
    reader of the stream asks for more; entries are read a page of stories at a time, so
    publishing reads only as far as its outputs need (the merged feed, each channel, the
    archive's catch-up; see aggregator.site). An item whose entries and terms are as at the
    last publish is not built again (policy.memo).
    """
    allowed = {f.name: f for f in config.feeds if f.redistribution != "none"}
    terms = {f.name: policy.terms_fingerprint(f) for f in config.feeds}
    language, memo = config.output.language, policy.PUBLISHED
    memo.start(keep=MEMO_STORIES * config.output.limit)
    names, first = list(allowed), min(config.output.limit, PUBLISH_PAGE)
    ranked = store.story_ids(names, limit=first)  # most publishes need no more
    start = 0
    while True:
        if start == first == len(ranked):  # asked for more: rank every story, once
            seen = set(ranked)
            ranked += [i for i in store.story_ids(names) if i not in seen]
        if start >= len(ranked):
            return
        page = ranked[start : start + (first if start == 0 else PUBLISH_PAGE)]
        start += len(page)
        batch = store.story_members(page)
        batch.reverse()
        while batch:  # each story's entries are let go once its item is built
            members = batch.pop()
            item, reason = memo.build(members, allowed, language, terms)
            if item is None:
                log.debug("not published: %s (%s)", members[0].link or members[0].key, reason)
            else:
                yield item


def reload_items(config: Config, store: Store, guids: Sequence[str]) -> list[PublishedItem]:
    """The published items of these story guids as the terms cut them now (archive pages).

    One read for the whole page, not one per story."""
    allowed = {f.name: f for f in config.feeds if f.redistribution != "none"}
    found = store.latest_clusters(list(allowed), len(guids), guids=guids) if guids else []
    items = []
    for members in found:
        item, _ = policy.build_item(members, allowed, config.output.language)
        if item is not None:
            items.append(item)
    return items


def publish_all(
    config: Config, store: Store, now: datetime
) -> tuple[Sequence[PublishedItem], list[Path]]:
    """Publish the site (merged feed, channels, archives, sources.opml), then tell the WebSub
    hub, if one is configured, which feeds changed. Returns the merged feed's items."""
    result = site.publish_site(
        config, collect_items(config, store), lambda g: reload_items(config, store, g), now
    )
    if config.output.hub and result.changed_feeds:
        websub.notify(config.output.hub, result.changed_feeds)
    return result.items, result.written
