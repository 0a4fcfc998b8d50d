"""Persistent state: feeds' HTTP/schedule state, entries, and story clusters.

SQLAlchemy Core over SQLite (default, WAL) or PostgreSQL, with the same statements for
both. Each feed's entries are written in one transaction, so a crash mid-poll leaves
either all of that feed's new entries or none.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from aggregator import dedupe
from aggregator.models import FeedState, Fetched, ParsedEntry, ParsedFeed, StoredItem

#: Namespace for cluster guids: uuid5(NAMESPACE, feed name + entry key) never changes.
GUID_NAMESPACE = uuid.UUID("5b0e8f3a-6a43-4a8e-9d55-2f6f1c1e0a77")


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on SQLite (which has no zones) and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

feeds = sa.Table(
    "feeds",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("config_url", sa.Text),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("body_hash", sa.String(64)),
    sa.Column("status", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("errors", sa.Integer, nullable=False, default=0),
    sa.Column("last_polled", UTCDateTime),
    sa.Column("last_ok", UTCDateTime),
    sa.Column("next_poll", UTCDateTime),
    sa.Column("retry_until", UTCDateTime),
    sa.Column("gone", sa.Boolean, nullable=False, default=False),
    sa.Column("permanent_redirect", sa.Text),
    sa.Column("redirects_seen", sa.Integer, nullable=False, default=0),
    # Row lease: the daemon polling this feed right now, and until when the claim holds.
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("title", sa.Text),
    sa.Column("link", sa.Text),
    sa.Column("language", sa.String(35)),
    sa.Column("rights", sa.Text),
    sa.Column("license", sa.Text),
    sa.Column("author", sa.Text),
    sa.Column("ttl", sa.Integer),
)

#: Every daemon of the cluster, for `aggregator status` and for sharing per-host limits.
daemons = sa.Table(
    "daemons",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("heartbeat", UTCDateTime, nullable=False),
    sa.Column("polled", sa.Integer, nullable=False, default=0),
    sa.Column("publisher", sa.Boolean, nullable=False, default=False),
)

#: Per-host throttling (429/503 Retry-After), shared by every feed on the host.
hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("host", sa.String(255), primary_key=True),
    sa.Column("retry_until", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text),
)

clusters = sa.Table(
    "clusters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("guid", sa.String(100), nullable=False, unique=True),
    sa.Column("first_seen", UTCDateTime, nullable=False),
)

entries = sa.Table(
    "entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feed_name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("cluster_id", sa.Integer, sa.ForeignKey("clusters.id"), nullable=False),
    sa.Column("guid", sa.Text),
    sa.Column("link", sa.Text),
    sa.Column("norm_link", sa.Text),
    sa.Column("guid_key", sa.Text),
    sa.Column("text_hash", sa.String(64)),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("author", sa.Text),
    sa.Column("published", UTCDateTime),
    sa.Column("updated", UTCDateTime),
    sa.Column("sort_date", UTCDateTime, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("summary_html", sa.Text, nullable=False),
    sa.Column("content_html", sa.Text, nullable=False),
    sa.Column("rights", sa.Text),
    sa.Column("license", sa.Text),
    sa.Column("categories", sa.Text, nullable=False),
    sa.UniqueConstraint("feed_name", "key_hash", name="uq_entries_feed_key"),
    sa.Index("ix_entries_norm_link", "norm_link"),
    sa.Index("ix_entries_guid_key", "guid_key"),
    sa.Index("ix_entries_text_hash", "text_hash"),
    sa.Index("ix_entries_cluster", "cluster_id"),
    sa.Index("ix_entries_sort", "sort_date"),
    sa.Index("ix_entries_feed_sort", "feed_name", "sort_date"),
)


#: Why each entry is in its story (dedupe.RULES), for `aggregator explain`.
entry_matches = sa.Table(
    "entry_matches",
    metadata,
    sa.Column("entry_id", sa.Integer, sa.ForeignKey("entries.id"), primary_key=True),
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("other_id", sa.Integer),
)

#: The near-duplicate index over recent entries (dedupe.WINDOW, dedupe.WINDOW_ENTRIES):
#: main text and numbers for the precise check, LSH band keys for the indexed lookup.
near_docs = sa.Table(
    "near_docs",
    metadata,
    sa.Column("entry_id", sa.Integer, sa.ForeignKey("entries.id"), primary_key=True),
    sa.Column("seen", UTCDateTime, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("numbers", sa.Text, nullable=False),
    sa.Index("ix_near_docs_seen", "seen"),
)

near_bands = sa.Table(
    "near_bands",
    metadata,
    sa.Column("band", sa.BigInteger, primary_key=True),
    sa.Column("entry_id", sa.Integer, primary_key=True),
    sa.Index("ix_near_bands_entry", "entry_id"),
    sqlite_with_rowid=False,  # the primary key is the table: one B-tree less to update
)

#: How many entries of a feed contain each segment (hashed): recurring ones are boilerplate.
feed_segments = sa.Table(
    "feed_segments",
    metadata,
    sa.Column("feed_name", sa.String(200), primary_key=True),
    sa.Column("segment", sa.BigInteger, primary_key=True),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Index("ix_feed_segments_seen", "last_seen"),
)

#: Keeps IN (...) lists under every database's parameter limit.
_CHUNK = 500


@dataclass(frozen=True)
class StoreResult:
    new: int
    updated: int


def _engine_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


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


class SchemaError(Exception):
    """The database's schema is not the one this version of the code was written for."""


#: PostgreSQL advisory lock keys: schema migration, story assignment, publishing.
_MIGRATION_LOCK = 0x61677231
_CLUSTER_LOCK = 0x61677232
_PUBLISHER_LOCK = 0x61677233


def _alembic_config(conn: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "aggregator:migrations")
    cfg.attributes["connection"] = conn
    return cfg


def schema_versions(conn: Connection) -> tuple[str | None, str]:
    """(the database's revision, the newest revision this code knows)."""
    head = ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()
    assert head is not None
    return MigrationContext.configure(conn).get_current_revision(), head


class Store:
    """The one way the pipeline reads and writes state."""

    def __init__(self, url: str, *, migrate: bool = False, **engine_kwargs: Any) -> None:
        """Open the store; an empty database gets the current schema (zero set-up).

        An existing database must already be at this code's schema revision, unless
        `migrate` (what `aggregator migrate` does) brings it there.
        """
        self.url = url
        self._publisher_conn: Connection | None = None
        self._publisher_held = False
        self.engine: Engine = sa.create_engine(_engine_url(url), **engine_kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        problem = None
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            current, head = schema_versions(conn)
            fresh = current is None and not sa.inspect(conn).has_table("feeds")
            if migrate or fresh:
                alembic_command.upgrade(_alembic_config(conn), "head")
            elif current != head:
                script = ScriptDirectory.from_config(_alembic_config(conn))
                known = {rev.revision for rev in script.walk_revisions()}
                problem = (
                    f"the database schema is at revision {current}, this version needs "
                    f"{head}: run `aggregator migrate` first"
                    if current in known
                    else f"the database schema revision {current or '(none)'} is unknown to "
                    f"this version (newest known: {head}); use the aggregator version that "
                    "created it, or a newer one"
                )
        if problem:
            self.engine.dispose()
            raise SchemaError(problem)

    def close(self) -> None:
        if self._publisher_conn is not None:
            self._publisher_conn.close()
            self._publisher_conn = None
        self.engine.dispose()

    # -- feeds ---------------------------------------------------------------------------

    def feed_states(self, names: Iterable[str] | None = None) -> dict[str, FeedState]:
        query = sa.select(feeds)
        if names is not None:
            query = query.where(feeds.c.name.in_(list(names)))
        counts = sa.select(entries.c.feed_name, sa.func.count()).group_by(entries.c.feed_name)
        state_fields = {f.name for f in fields(FeedState)}
        with self.engine.connect() as conn:
            n = {name: count for name, count in conn.execute(counts)}
            return {
                row.name: FeedState(
                    **{k: v for k, v in row._mapping.items() if k in state_fields},
                    entries=n.get(row.name, 0),
                )
                for row in conn.execute(query)
            }

    def save_feed_state(
        self, state: FeedState, meta: ParsedFeed | None = None, *, owner: str | None = None
    ) -> None:
        """Write a feed's state; with `owner`, only while that daemon still holds the lease."""
        with self.engine.begin() as conn:
            self._upsert_feed(conn, _feed_values(state, meta), owner)

    def _upsert_feed(
        self, conn: Connection, values: dict[str, Any], owner: str | None = None
    ) -> None:
        where = feeds.c.name == values["name"]
        if owner is not None:
            where &= feeds.c.lease_owner == owner
        if conn.execute(feeds.update().where(where).values(values)).rowcount:
            return
        if owner is not None:
            raise LeaseLost(f"{values['name']}: lease expired and was taken by another daemon")
        try:
            with conn.begin_nested():  # another daemon may register the same new feed
                conn.execute(feeds.insert().values(values))
        except sa.exc.IntegrityError:
            conn.execute(feeds.update().where(where).values(values))

    # -- leases and daemons (several daemons on one PostgreSQL) ---------------------------

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
            sa.select(sa.func.pg_try_advisory_lock(_PUBLISHER_LOCK))
        ).scalar()
        self._publisher_conn.commit()
        if held:
            # The lock is re-entrant per session: keep exactly one level held.
            if self._publisher_held:
                self._publisher_conn.execute(sa.select(sa.func.pg_advisory_unlock(_PUBLISHER_LOCK)))
                self._publisher_conn.commit()
            self._publisher_held = True
        return bool(held)

    def cluster_lock(self, conn: Connection) -> None:
        """Serialise story assignment across daemons (two daemons, one story, one item)."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CLUSTER_LOCK)))

    def host_throttles(self, now: datetime) -> dict[str, datetime]:
        """Hosts that asked us to wait, and until when."""
        query = sa.select(hosts.c.host, hosts.c.retry_until).where(hosts.c.retry_until > now)
        with self.engine.connect() as conn:
            return {row.host: row.retry_until for row in conn.execute(query)}

    def throttle_host(self, host: str, until: datetime, reason: str) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(
                hosts.update().where(hosts.c.host == host).values(retry_until=until, reason=reason)
            ).rowcount
            if not updated:
                conn.execute(hosts.insert().values(host=host, retry_until=until, reason=reason))

    def recent_dates(self, feed_name: str, limit: int = 10) -> list[datetime]:
        """The feed's latest entry dates, newest first, to estimate how often it publishes."""
        query = (
            sa.select(entries.c.sort_date)
            .where(entries.c.feed_name == feed_name)
            .order_by(entries.c.sort_date.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [row.sort_date for row in conn.execute(query)]

    # -- entries -------------------------------------------------------------------------

    def store_entries(
        self,
        state: FeedState,
        fetched: Fetched,
        parsed: ParsedFeed,
        now: datetime,
        *,
        owner: str | None = None,
    ) -> StoreResult:
        """Save a successful fetch and its entries atomically.

        Unchanged entries cost no write; a new entry joins the cluster of any stored entry
        with the same normalised link, global guid or main text, or of a recent entry of
        another feed whose main text is nearly the same (dedupe), else founds its own.
        """
        new = updated = 0
        with self.engine.begin() as conn:
            self._upsert_feed(conn, _feed_values(state, parsed), owner)
            self.cluster_lock(conn)
            self._prune_near(conn, now)
            fingerprints = self._fingerprints(conn, state.name, parsed.entries, now)
            # Near matches never come from the same feed, so one lookup serves the batch.
            near = self._near_matches(conn, state.name, fingerprints)
            placed: list[tuple[int, dedupe.Match, dedupe.Fingerprint | None]] = []
            for entry in parsed.entries:
                outcome = self._store_entry(conn, state.name, entry, now, near.pop(entry.key, None))
                if isinstance(outcome, tuple):
                    placed.append((*outcome, fingerprints.get(entry.key)))
                new += isinstance(outcome, tuple)
                updated += outcome == "updated"
            self._record_placements(conn, placed, now)
        return StoreResult(new=new, updated=updated)

    def _store_entry(
        self,
        conn: Connection,
        feed_name: str,
        entry: ParsedEntry,
        now: datetime,
        near: tuple[int, dedupe.Match] | None,
    ) -> str | tuple[int, dedupe.Match]:
        """ "unchanged", "updated", or for a new entry its id and why it is in its story."""
        khash = dedupe.key_hash(entry.key)
        chash = dedupe.content_hash(entry)
        row = conn.execute(
            sa.select(
                entries.c.id, entries.c.content_hash, entries.c.first_seen, entries.c.sort_date
            ).where(entries.c.feed_name == feed_name, entries.c.key_hash == khash)
        ).first()
        values = _entry_values(entry, chash)
        if row is not None:
            if row.content_hash == chash:
                return "unchanged"
            # Re-dating never moves a story up; a date corrected backwards may move it down.
            # The entry stays in its story: a story's membership and guid never change.
            values["sort_date"] = min(row.sort_date, _sort_date(entry, row.first_seen))
            conn.execute(entries.update().where(entries.c.id == row.id).values(values))
            return "updated"
        found = self._find_cluster(conn, values, near)
        if found is None:
            cluster_id = self._new_cluster(conn, feed_name, entry.key, now)
            match = dedupe.Match("first", 1.0)
        else:
            cluster_id, match = found
        result = conn.execute(
            entries.insert().values(
                values
                | {
                    "feed_name": feed_name,
                    "key_hash": khash,
                    "key": entry.key,
                    "cluster_id": cluster_id,
                    "first_seen": now,
                    "sort_date": _sort_date(entry, now),
                }
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0]), match

    # -- cluster assignment --------------------------------------------------------------

    def _find_cluster(
        self,
        conn: Connection,
        values: dict[str, Any],
        near: tuple[int, dedupe.Match] | None,
    ) -> tuple[int, dedupe.Match] | None:
        """The story a new entry joins and why: exact keys first, then its near match."""
        for rule, column in (
            ("same-link", "norm_link"),
            ("same-guid", "guid_key"),
            ("same-text", "text_hash"),
        ):
            if values[column] is None:
                continue
            found = conn.execute(
                sa.select(entries.c.id, entries.c.cluster_id)
                .where(entries.c[column] == values[column])
                .order_by(entries.c.id)
                .limit(1)
            ).first()
            if found is not None:
                return int(found.cluster_id), dedupe.Match(rule, 1.0, int(found.id))
        return near

    def _near_matches(
        self,
        conn: Connection,
        feed_name: str,
        fingerprints: dict[str, dedupe.Fingerprint | None],
    ) -> dict[str, tuple[int, dedupe.Match]]:
        """Entry key -> (cluster, match) for the batch's near-duplicates of other feeds' entries.

        Candidates are the indexed entries sharing LSH bands with an entry, most shared
        first (at most dedupe.MAX_CANDIDATES each); dedupe.best_match verifies them.
        """
        owners: dict[int, list[str]] = {}
        for key, fp in fingerprints.items():
            for band in fp.bands if fp else ():
                owners.setdefault(band, []).append(key)
        shared: dict[str, Counter[int]] = {}
        for chunk in _chunks(list(owners)):
            rows = conn.execute(
                sa.select(near_bands.c.band, near_bands.c.entry_id)
                .join(entries, entries.c.id == near_bands.c.entry_id)
                .where(near_bands.c.band.in_(chunk), entries.c.feed_name != feed_name)
            )
            for band, entry_id in rows:
                for key in owners[band]:
                    shared.setdefault(key, Counter())[entry_id] += 1
        tops = {
            key: sorted(counts, key=lambda i: (-counts[i], -i))[: dedupe.MAX_CANDIDATES]
            for key, counts in shared.items()
        }
        docs: dict[int, Any] = {}
        for chunk in _chunks(sorted({i for top in tops.values() for i in top})):
            rows = conn.execute(
                sa.select(
                    near_docs.c.entry_id,
                    near_docs.c.text,
                    near_docs.c.numbers,
                    entries.c.feed_name,
                    entries.c.cluster_id,
                )
                .join(entries, entries.c.id == near_docs.c.entry_id)
                .where(near_docs.c.entry_id.in_(chunk))
            )
            docs.update({row.entry_id: row for row in rows})
        found = {}
        for key, top in tops.items():
            fp = fingerprints[key]
            assert fp is not None
            candidates = [docs[i] for i in top if i in docs]
            match = dedupe.best_match(
                fp,
                feed_name,
                (
                    (d.entry_id, d.feed_name, d.text, frozenset(d.numbers.split()))
                    for d in candidates
                ),
            )
            if match is not None and match.other is not None:
                found[key] = (int(docs[match.other].cluster_id), match)
        return found

    def _new_cluster(self, conn: Connection, feed_name: str, key: str, now: datetime) -> int:
        guid = f"urn:uuid:{uuid.uuid5(GUID_NAMESPACE, feed_name + chr(10) + key)}"
        result = conn.execute(clusters.insert().values(guid=guid, first_seen=now))
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def _fingerprints(
        self, conn: Connection, feed_name: str, batch: Sequence[ParsedEntry], now: datetime
    ) -> dict[str, dedupe.Fingerprint | None]:
        """Fingerprints of the batch's new entries, the feed's boilerplate left out.

        Boilerplate is learnt from the feed's stored entries and from the batch itself
        (a feed's first poll already shows its footer many times); the batch's segments
        are then counted for later polls.
        """
        by_hash = {dedupe.key_hash(e.key): e for e in batch}
        stored: set[str] = set()
        for chunk in _chunks(list(by_hash)):
            stored.update(
                conn.execute(
                    sa.select(entries.c.key_hash).where(
                        entries.c.feed_name == feed_name, entries.c.key_hash.in_(chunk)
                    )
                ).scalars()
            )
        fresh = {
            e.key: dedupe.segments(e.content_html or e.summary_html)
            for h, e in by_hash.items()
            if h not in stored
        }
        hashes = {key: {dedupe.segment_hash(s) for s in segs} for key, segs in fresh.items()}
        batch_counts = Counter(h for hs in hashes.values() for h in hs)
        counts: dict[int, int] = {}
        for chunk in _chunks(list(batch_counts)):
            rows = conn.execute(
                sa.select(feed_segments.c.segment, feed_segments.c.entries).where(
                    feed_segments.c.feed_name == feed_name, feed_segments.c.segment.in_(chunk)
                )
            )
            counts.update({row.segment: row.entries for row in rows})
        common = dedupe.recurring_segments(hashes, counts)
        self._count_segments(conn, feed_name, batch_counts, now)
        return {key: dedupe.fingerprint(segs, common[key]) for key, segs in fresh.items()}

    def _count_segments(
        self, conn: Connection, feed_name: str, counts: Counter[int], now: datetime
    ) -> None:
        if not counts:
            return
        insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
        stmt = insert(feed_segments)
        stmt = stmt.on_conflict_do_update(
            index_elements=["feed_name", "segment"],
            set_={
                "entries": feed_segments.c.entries + stmt.excluded.entries,
                "last_seen": stmt.excluded.last_seen,
            },
        )
        conn.execute(
            stmt,
            [
                {"feed_name": feed_name, "segment": h, "entries": n, "last_seen": now}
                for h, n in counts.items()
            ],
        )

    def _record_placements(
        self,
        conn: Connection,
        placed: list[tuple[int, dedupe.Match, dedupe.Fingerprint | None]],
        now: datetime,
    ) -> None:
        """Why each new entry is in its story, and its rows in the near-duplicate index."""
        if not placed:
            return
        conn.execute(
            entry_matches.insert(),
            [
                {"entry_id": i, "rule": m.rule, "score": m.score, "other_id": m.other}
                for i, m, _ in placed
            ],
        )
        indexed = [(i, fp) for i, _, fp in placed if fp is not None]
        if not indexed:
            return
        conn.execute(
            near_docs.insert(),
            [
                {
                    "entry_id": i,
                    "seen": now,
                    "text": fp.text,
                    "numbers": " ".join(sorted(fp.numbers)),
                }
                for i, fp in indexed
            ],
        )
        conn.execute(
            near_bands.insert(),
            [{"band": b, "entry_id": i} for i, fp in indexed for b in set(fp.bands)],
        )

    def _prune_near(self, conn: Connection, now: datetime) -> None:
        """Forget what fell out of the window; every step is an indexed range."""
        newest = conn.execute(sa.select(sa.func.max(near_docs.c.entry_id))).scalar()
        if newest is None:
            return
        expired = conn.execute(
            sa.select(sa.func.max(near_docs.c.entry_id)).where(
                near_docs.c.seen < now - dedupe.WINDOW
            )
        ).scalar()
        cutoff = max(expired or 0, newest - dedupe.WINDOW_ENTRIES)
        if cutoff > 0:
            conn.execute(near_bands.delete().where(near_bands.c.entry_id <= cutoff))
            conn.execute(near_docs.delete().where(near_docs.c.entry_id <= cutoff))
        conn.execute(feed_segments.delete().where(feed_segments.c.last_seen < now - dedupe.WINDOW))

    def match_reasons(self, entry_ids: Sequence[int]) -> dict[int, dedupe.Match]:
        """Why each entry is in its story (rule, score, matched entry), for `explain`."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(entry_matches).where(entry_matches.c.entry_id.in_(list(entry_ids)))
            )
            return {r.entry_id: dedupe.Match(r.rule, r.score, r.other_id) for r in rows}

    # -- reading for publish -------------------------------------------------------------

    def latest_clusters(
        self, feed_names: Sequence[str], limit: int, offset: int = 0
    ) -> list[list[StoredItem]]:
        """Clusters with a member from `feed_names`, newest story first, members loaded."""
        if not feed_names:
            return []
        story_date = sa.func.min(entries.c.sort_date).label("story_date")
        top = (
            sa.select(entries.c.cluster_id, story_date)
            .where(entries.c.feed_name.in_(list(feed_names)))
            .group_by(entries.c.cluster_id)
            .order_by(story_date.desc(), entries.c.cluster_id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            ids = [row.cluster_id for row in conn.execute(top)]
            if not ids:
                return []
            query = _members_query().where(entries.c.cluster_id.in_(ids))
            members: dict[int, list[StoredItem]] = {i: [] for i in ids}
            for row in conn.execute(query):
                members[row.cluster_id].append(_stored_item(row._mapping))
        return [members[i] for i in ids]

    def find_entries(self, needle: str) -> list[StoredItem]:
        """Entries whose guid, link or published guid is `needle` (for `explain`)."""
        norm = dedupe.normalize_url(needle)
        with self.engine.connect() as conn:
            cluster_ids = [
                row[0]
                for row in conn.execute(
                    sa.select(entries.c.cluster_id)
                    .join(clusters, clusters.c.id == entries.c.cluster_id)
                    .where(
                        sa.or_(
                            entries.c.guid == needle,
                            entries.c.link == needle,
                            entries.c.norm_link == norm,
                            clusters.c.guid == needle,
                        )
                    )
                )
            ]
        found: list[StoredItem] = []
        for cid in dict.fromkeys(cluster_ids):
            found.extend(self._cluster_members(cid))
        return found

    def _cluster_members(self, cluster_id: int) -> list[StoredItem]:
        query = _members_query().where(entries.c.cluster_id == cluster_id)
        with self.engine.connect() as conn:
            return [_stored_item(row._mapping) for row in conn.execute(query)]


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _feed_values(state: FeedState, meta: ParsedFeed | None) -> dict[str, Any]:
    values = {f.name: getattr(state, f.name) for f in fields(FeedState) if f.name != "entries"}
    if meta is not None:
        values |= {
            "title": meta.title,
            "link": meta.link,
            "language": meta.language,
            "rights": meta.rights,
            "license": meta.license,
            "author": meta.author,
            "ttl": meta.ttl,
        }
    return values


def _members_query() -> sa.Select[Any]:
    """Entries with their story guid and provider facts, as policy needs them."""
    return (
        sa.select(
            entries,
            clusters.c.guid.label("cluster_guid"),
            feeds.c.url.label("feed_url"),
            feeds.c.title.label("feed_title"),
            feeds.c.link.label("feed_link"),
            feeds.c.rights.label("feed_rights"),
            feeds.c.license.label("feed_license"),
            feeds.c.author.label("feed_author"),
        )
        .join(clusters, clusters.c.id == entries.c.cluster_id)
        .join(feeds, feeds.c.name == entries.c.feed_name)
        .order_by(entries.c.id)
    )


def _sort_date(entry: ParsedEntry, first_seen: datetime) -> datetime:
    # A provider that re-dates an old entry must not push it to the top of the merged feed.
    return min(entry.published or first_seen, first_seen)


def _entry_values(entry: ParsedEntry, chash: str) -> dict[str, Any]:
    return {
        "guid": entry.guid,
        "link": entry.link,
        "norm_link": dedupe.normalize_url(entry.link),
        "guid_key": dedupe.guid_key(entry.guid),
        "text_hash": dedupe.text_hash(entry),
        "content_hash": chash,
        "title": entry.title,
        "author": entry.author,
        "published": entry.published,
        "updated": entry.updated,
        "summary_html": entry.summary_html,
        "content_html": entry.content_html,
        "rights": entry.rights,
        "license": entry.license,
        "categories": json.dumps(list(entry.categories), ensure_ascii=False),
    }


_ITEM_FIELDS = {f.name for f in fields(StoredItem)}


def _stored_item(row: Any) -> StoredItem:
    values = {k: v for k, v in row.items() if k in _ITEM_FIELDS}
    values["categories"] = tuple(json.loads(row["categories"] or "[]"))
    return StoredItem(**values)
