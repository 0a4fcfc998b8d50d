"""Coordination of several daemons through the database: leases, heartbeats, locks.

PostgreSQL is the only coordinator (row leases, advisory locks); on SQLite, with one daemon
per store, the same calls are cheap or trivially true.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aggregator.models import FeedState
from aggregator.store.schema import daemons, feeds

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

    def forget_daemon(self, daemon_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(daemons.delete().where(daemons.c.id == daemon_id))
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

    def cluster_lock(self, conn: Connection) -> None:
        """Serialise story assignment across daemons (two daemons, one story, one item)."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(*lock_key(CLUSTER_LOCK))))
