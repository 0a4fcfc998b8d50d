"""Coordination of several daemons through the database: leases, heartbeats, locks.

PostgreSQL is the only coordinator (row leases, per-host slots, advisory locks); on SQLite,
with one daemon per store, the same calls are cheap or trivially true.
"""

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from aggregator.config import FetchConfig
from aggregator.models import FeedState
from aggregator.store.schema import daemons, feeds, host_slots

log = logging.getLogger(__name__)

#: PostgreSQL advisory lock keys: schema migration, story assignment, publishing.
MIGRATION_LOCK = 0x61677231
CLUSTER_LOCK = 0x61677232
PUBLISHER_LOCK = 0x61677233


def lock_key(kind: int) -> tuple[Any, Any]:
    """Advisory locks are per database: key them by schema too, so two aggregator
    installations in different schemas of one database never block each other."""
    return sa.literal(kind, sa.Integer), sa.func.hashtext(sa.func.current_schema())


class LeaseLost(Exception):
    """Another daemon took this feed over (our lease expired); our results are discarded."""


@dataclass(frozen=True)
class Daemon:
    id: str
    hostname: str
    pid: int
    version: str
    started: datetime
    heartbeat: datetime
    polled: int
    publisher: bool
    leases: int = 0


@dataclass(frozen=True)
class HostSlot:
    """One request in flight to `host` by daemon `owner`, held until at most `until`."""

    host: str
    slot: int
    owner: str
    until: datetime


def slot_lease(cfg: FetchConfig) -> timedelta:
    """How long a host slot outlives a daemon that died holding it.

    A fetch makes at most two attempts of `fetch.timeout` each (fetch_one retries a dropped
    keep-alive connection once); the margin covers handing the release to a thread.
    """
    return timedelta(seconds=2 * cfg.timeout + 10)


class Coordination:
    """Store methods for leases and daemons (mixed into Store; needs `engine`)."""

    engine: Engine
    _publisher_conn: Connection | None
    _publisher_held: bool

    def feed_states(self, names: Iterable[str] | None = None) -> dict[str, FeedState]:
        raise NotImplementedError  # provided by Store

    def claim(
        self,
        names: Sequence[str],
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        forced: bool,
        limit: int,
    ) -> list[FeedState]:
        """Lease up to `limit` of these feeds that are due (any, when forced) and not leased.

        PostgreSQL skips rows another daemon is claiming (FOR UPDATE SKIP LOCKED); the
        conditional UPDATE is what makes a claim exclusive on every database.
        """
        free = sa.or_(feeds.c.lease_until.is_(None), feeds.c.lease_until < now)
        query = (
            sa.select(feeds.c.name)
            .where(feeds.c.name.in_(list(names)), free, feeds.c.gone.is_(False))
            .order_by(feeds.c.next_poll.is_not(None), feeds.c.next_poll, feeds.c.name)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if not forced:
            query = query.where(sa.or_(feeds.c.next_poll.is_(None), feeds.c.next_poll <= now))
        with self.engine.begin() as conn:
            candidates = list(conn.execute(query).scalars())
            if not candidates:
                return []
            claimed = set(
                conn.execute(
                    feeds.update()
                    .where(feeds.c.name.in_(candidates), free)
                    .values(lease_owner=owner, lease_until=now + lease)
                    .returning(feeds.c.name)
                ).scalars()
            )
        states = self.feed_states(claimed)
        return [states[name] for name in candidates if name in claimed]

    def renew_leases(self, owner: str, names: Sequence[str], until: datetime) -> None:
        """Keep the feeds of a batch in progress ours while it takes its time."""
        with self.engine.begin() as conn:
            conn.execute(
                feeds.update()
                .where(feeds.c.name.in_(list(names)), feeds.c.lease_owner == owner)
                .values(lease_until=until)
            )

    def heartbeat(self, daemon: Daemon) -> None:
        values = {f.name: getattr(daemon, f.name) for f in fields(Daemon) if f.name != "leases"}
        with self.engine.begin() as conn:
            if not conn.execute(
                daemons.update().where(daemons.c.id == daemon.id).values(values)
            ).rowcount:
                conn.execute(daemons.insert().values(values))

    def release_leases(self) -> None:
        """Drop every lease: only for a store no other process can be using (SQLite + lock)."""
        with self.engine.begin() as conn:
            conn.execute(feeds.update().values(lease_owner=None, lease_until=None))
            conn.execute(daemons.delete())
            conn.execute(host_slots.delete())

    def forget_daemon(self, daemon_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(daemons.delete().where(daemons.c.id == daemon_id))
            conn.execute(host_slots.delete().where(host_slots.c.owner == daemon_id))
            conn.execute(
                feeds.update()
                .where(feeds.c.lease_owner == daemon_id)
                .values(lease_owner=None, lease_until=None)
            )

    def daemons(self, now: datetime) -> list[Daemon]:
        leases = (
            sa.select(feeds.c.lease_owner, sa.func.count())
            .where(feeds.c.lease_until > now)
            .group_by(feeds.c.lease_owner)
        )
        with self.engine.connect() as conn:
            held = {owner: n for owner, n in conn.execute(leases)}
            rows = conn.execute(sa.select(daemons).order_by(daemons.c.started))
            return [Daemon(**row._mapping, leases=held.get(row.id, 0)) for row in rows]

    def try_publisher_lock(self) -> bool:
        """True while this process is the cluster's one publisher.

        On PostgreSQL a session advisory lock held on a dedicated connection: if the
        publisher dies, its session ends, the lock is free and the next daemon takes over.
        SQLite has one daemon per store, so it always publishes.
        """
        if self.engine.dialect.name != "postgresql":
            return True
        if self._publisher_conn is None:
            self._publisher_conn = self.engine.connect()
        held = self._publisher_conn.execute(
            sa.select(sa.func.pg_try_advisory_lock(*lock_key(PUBLISHER_LOCK)))
        ).scalar()
        self._publisher_conn.commit()
        if held:
            # The lock is re-entrant per session: keep exactly one level held.
            if self._publisher_held:
                self._publisher_conn.execute(
                    sa.select(sa.func.pg_advisory_unlock(*lock_key(PUBLISHER_LOCK)))
                )
                self._publisher_conn.commit()
            self._publisher_held = True
        return bool(held)

    # -- per-host slots (fetch.per_host across daemons) ----------------------------------

    def host_gate(self, owner: str, cfg: FetchConfig) -> "HostSlots | None":
        """The cluster-wide per-host limit for fetch_all, or None where it is not needed.

        SQLite has one daemon per store (lock file): fetch_all's own semaphores already
        are the whole limit, so no table traffic there.
        """
        if self.engine.dialect.name != "postgresql":
            return None
        return HostSlots(self, owner, cfg.per_host, slot_lease(cfg))

    def take_host_slot(self, host: str, owner: str, per_host: int, lease: timedelta) -> int | None:
        """Take one free (or expired) slot of `host` for `owner`: its number, None if all busy.

        One statement: pick a slot not held (at random, so racing daemons rarely pick the
        same one) and upsert it only if it is still free or expired; ON CONFLICT re-checks
        that condition on the row a concurrent taker committed, so two never share a slot.
        Times are the database's, so daemons' clocks need not agree.
        """
        now = sa.func.now()
        series = (
            sa.func.generate_series(0, per_host - 1).table_valued("n").render_derived("candidate")
        )
        held = (
            sa.exists()
            .where(host_slots.c.host == host, host_slots.c.slot == series.c.n)
            .where(host_slots.c.until >= now)
        )
        until = now + sa.bindparam("lease", lease, type_=sa.Interval)
        pick = (
            sa.select(sa.literal(host), series.c.n, sa.literal(owner), until)
            .where(~held)
            .order_by(sa.func.random())
            .limit(1)
        )
        insert = postgresql.insert(host_slots).from_select(["host", "slot", "owner", "until"], pick)
        statement = insert.on_conflict_do_update(
            index_elements=[host_slots.c.host, host_slots.c.slot],
            set_={"owner": insert.excluded.owner, "until": insert.excluded.until},
            where=host_slots.c.until < now,
        ).returning(host_slots.c.slot)
        with self.engine.begin() as conn:
            # A slot lives for one request: not worth waiting for the WAL flush (halves the
            # cost). A database crash may forget the last instants of takes; no daemon
            # survives that with its requests anyway.
            conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
            slot = conn.execute(statement).scalar()
        return None if slot is None else int(slot)

    def release_host_slot(self, host: str, slot: int, owner: str) -> None:
        """Give a slot back; a no-op if its lease expired and another daemon took it over."""
        with self.engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
            conn.execute(
                host_slots.delete().where(
                    host_slots.c.host == host,
                    host_slots.c.slot == slot,
                    host_slots.c.owner == owner,
                )
            )

    def held_host_slots(self) -> list[HostSlot]:
        """Requests in flight across the cluster, by host (for `status` and tests)."""
        query = (
            sa.select(host_slots)
            .where(host_slots.c.until >= sa.func.now())
            .order_by(host_slots.c.host, host_slots.c.slot)
        )
        with self.engine.connect() as conn:
            return [HostSlot(**row._mapping) for row in conn.execute(query)]

    def cluster_lock(self, conn: Connection) -> None:
        """Serialise story assignment across daemons (two daemons, one story, one item)."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(*lock_key(CLUSTER_LOCK))))


class HostSlots:
    """fetch.HostGate over the `host_slots` table: `per_host` requests per host, cluster-wide.

    The blocking store calls run in threads so fetch_all's event loop keeps going; a host
    whose slots are all taken is polled again after a short, growing, jittered pause.
    """

    FIRST_PAUSE = 0.05
    MAX_PAUSE = 0.5

    def __init__(self, store: Coordination, owner: str, per_host: int, lease: timedelta) -> None:
        self.store = store
        self.owner = owner
        self.per_host = per_host
        self.lease = lease
        self._held: defaultdict[str, list[int]] = defaultdict(list)

    async def acquire(self, host: str) -> None:
        key = host[:255]  # the column's width; longer names are not real hosts anyway
        pause = self.FIRST_PAUSE
        while (slot := await self._take(key)) is None:
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, self.MAX_PAUSE)
        self._held[key].append(slot)

    async def release(self, host: str) -> None:
        key = host[:255]
        slot = self._held[key].pop()
        try:
            await asyncio.to_thread(self.store.release_host_slot, key, slot, self.owner)
        except sa.exc.SQLAlchemyError as exc:  # the fetch is done: keep its result
            log.warning("could not release slot %d of %s (its lease frees it): %s", slot, key, exc)

    async def _take(self, key: str) -> int | None:
        taking = asyncio.ensure_future(
            asyncio.to_thread(self.store.take_host_slot, key, self.owner, self.per_host, self.lease)
        )
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The statement may still succeed in its thread: give that slot back at once.
            taking.add_done_callback(partial(self._give_back, key))
            raise

    def _give_back(self, key: str, taking: asyncio.Future[int | None]) -> None:
        if taking.cancelled() or taking.exception() is not None:
            return
        slot = taking.result()
        if slot is not None:
            try:
                self.store.release_host_slot(key, slot, self.owner)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("could not release slot %d of %s: %s", slot, key, exc)
