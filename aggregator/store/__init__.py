"""Persistent state: feeds' HTTP/schedule state, entries, and story clusters.

SQLAlchemy Core over SQLite (default, WAL) or PostgreSQL, with the same statements for
both. Each feed's entries are written in one transaction, so a crash mid-poll leaves
either all of that feed's new entries or none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from aggregator import dedupe
from aggregator.models import FeedState, Fetched, ParsedFeed, StoredItem
from aggregator.policy import rights
from aggregator.store import stories
from aggregator.store.coordination import (
    MIGRATION_LOCK,
    Coordination,
    Daemon,
    LeaseLost,
    lock_key,
)
from aggregator.store.schema import (
    UTCDateTime,
    clusters,
    entries,
    entry_matches,
    feeds,
    hosts,
    metadata,
)

__all__ = [
    "Daemon",
    "LeaseLost",
    "SchemaError",
    "Store",
    "StoreResult",
    "UTCDateTime",
    "metadata",
]


@dataclass(frozen=True)
class StoreResult:
    new: int
    updated: int


def _engine_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


#: SQLite write-ahead log pages (4 KB) between automatic checkpoints.
WAL_CHECKPOINT_PAGES = 16384


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA cache_size=-32768")  # 32 MB, not 2: fewer page reads in big indexes
    # Checkpoint every 64 MB of log, not 4: each checkpoint syncs and writes back the pages,
    # and a big cycle's index inserts dirty thousands of pages per feed (halves commit time).
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cur.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_PAGES * 4096}")
    cur.close()


class SchemaError(Exception):
    """The database's schema is not the one this version of the code was written for."""


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


class Store(Coordination):
    """The one way the pipeline reads and writes state."""

    def __init__(self, url: str, *, migrate: bool = False, **engine_kwargs: Any) -> None:
        """Open the store; an empty database gets the current schema (zero set-up).

        An existing database must already be at this code's schema revision, unless
        `migrate` (what `aggregator migrate` does) brings it there.
        """
        self.url = url
        self._publisher_conn: Connection | None = None
        self._publisher_held = False
        self._pruned: datetime | None = None  # when this process last pruned the index
        self._added = 0  # entries indexed since then
        self.engine: Engine = sa.create_engine(_engine_url(url), **engine_kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        problem = None
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(*lock_key(MIGRATION_LOCK))))
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

    def feed_states(
        self, names: Iterable[str] | None = None, *, count_entries: bool = False
    ) -> dict[str, FeedState]:
        """Stored feed states; entry counts (a scan of the entries index) only when asked."""
        query = sa.select(feeds)
        counts = sa.select(entries.c.feed_name, sa.func.count()).group_by(entries.c.feed_name)
        if names is not None:
            names = list(names)
            query = query.where(feeds.c.name.in_(names))
            counts = counts.where(entries.c.feed_name.in_(names))
        state_fields = {f.name for f in fields(FeedState)}
        with self.engine.connect() as conn:
            n: dict[str, int] = dict(conn.execute(counts).tuples().all()) if count_entries else {}
            return {
                row.name: FeedState(
                    **{k: v for k, v in row._mapping.items() if k in state_fields},
                    entries=n.get(row.name, 0),
                )
                for row in conn.execute(query)
            }

    def register_feed(self, state: FeedState) -> None:
        """Add a newly configured feed; a no-op if another daemon registered it first.

        Never an update: overwriting the row could drop a lease another daemon just took.
        """
        try:
            with self.engine.begin() as conn:
                conn.execute(feeds.insert().values(_feed_values(state, None)))
        except sa.exc.IntegrityError:
            pass

    def reset_feed(self, state: FeedState) -> None:
        """Start a feed afresh after its URL changed in the config, once across daemons."""
        changed = sa.or_(feeds.c.config_url.is_(None), feeds.c.config_url != state.config_url)
        with self.engine.begin() as conn:
            conn.execute(
                feeds.update()
                .where(feeds.c.name == state.name, changed)
                .values(_feed_values(state, None))
            )

    def save_feed_state(self, state: FeedState, *, owner: str | None = None) -> None:
        """Write a feed's state; with `owner`, only while that daemon still holds the lease."""
        with self.engine.begin() as conn:
            self._upsert_feed(conn, _feed_values(state, None), owner)

    def _upsert_feed(
        self, conn: Connection, values: dict[str, Any], owner: str | None = None
    ) -> None:
        # Values as parameters, not .values(): one cached statement, no per-call coercion.
        where = feeds.c.name == sa.bindparam("key_name")
        if owner is not None:
            where &= feeds.c.lease_owner == owner
        params = values | {"key_name": values["name"]}
        if conn.execute(feeds.update().where(where), params).rowcount:
            return
        if owner is not None:
            raise LeaseLost(f"{values['name']}: lease expired and was taken by another daemon")
        try:
            with conn.begin_nested():  # another daemon may register the same new feed
                conn.execute(feeds.insert().values(values))
        except sa.exc.IntegrityError:
            conn.execute(feeds.update().where(where), params)

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

    def recent_dates(self, names: Iterable[str]) -> dict[str, list[datetime]]:
        """Each feed's latest entry dates, newest first, to estimate how often it publishes.

        One indexed query per feed on one connection (a window function over all of a
        batch's entries would read every stored entry of those feeds).
        """
        with self.engine.connect() as conn:
            return {name: list(conn.execute(_RECENT, {"feed": name}).scalars()) for name in names}

    # -- entries -------------------------------------------------------------------------

    def store_entries(
        self,
        state: FeedState,
        fetched: Fetched,
        parsed: ParsedFeed,
        now: datetime,
        *,
        owner: str | None = None,
        prepared: dict[str, dedupe.Prepared] | None = None,
    ) -> StoreResult:
        """Save a successful fetch and its entries atomically.

        Unchanged entries cost no write; a new entry joins the cluster of any stored entry
        with the same normalised link, global guid or main text, or of a recent entry of
        another feed whose main text is nearly the same (dedupe), else founds its own.
        `prepared` is dedupe.prepare(parsed.entries), when the caller made it elsewhere
        (else only new and edited entries are prepared, here).
        """
        self._prune(now)
        with self.engine.begin() as conn:
            self._upsert_feed(conn, _feed_values(state, parsed), owner)
            # Up to the lock, only this feed's rows are read and written (its lease is ours).
            stored = stories.stored_entries(conn, state.name, parsed.entries)
            if prepared is None:
                prepared = dedupe.prepare(stories.changed(parsed.entries, stored))
            prints = stories.fingerprints(conn, state.name, prepared, stored, now)
            self.cluster_lock(conn)
            # Near matches never come from the same feed, so one lookup serves the batch.
            near = stories.near_matches(conn, state.name, prints)
            placed, updated = stories.store_batch(
                conn, state.name, parsed.entries, prepared, stored, now, near
            )
            stories.record_placements(
                conn, [(i, match, prints.get(key)) for key, i, match in placed], now
            )
        self._added += len(placed)
        return StoreResult(new=len(placed), updated=updated)

    def _prune(self, now: datetime) -> None:
        """Drop what left the near-duplicate window, every few minutes or thousand entries.

        In a transaction of its own (every daemon prunes), and not on every store: each
        prune is a commit. The window may overrun its bounds by that much, never shrink.
        """
        recent = self._pruned is not None and abs(now - self._pruned) < PRUNE_EVERY
        if recent and self._added < dedupe.WINDOW_ENTRIES // 50:
            return
        with self.engine.begin() as conn:
            stories.prune_near(conn, now)
        self._pruned, self._added = now, 0

    def match_reasons(self, entry_ids: Sequence[int]) -> dict[int, dedupe.Match]:
        """Why each entry is in its story (rule, score, matched entry), for `explain`."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(entry_matches).where(entry_matches.c.entry_id.in_(list(entry_ids)))
            )
            return {r.entry_id: dedupe.Match(r.rule, r.score, r.other_id) for r in rows}

    # -- reading for publish -------------------------------------------------------------

    def latest_clusters(
        self,
        feed_names: Sequence[str],
        limit: int,
        offset: int = 0,
        *,
        guids: Sequence[str] | None = None,
    ) -> list[list[StoredItem]]:
        """Clusters with a member from `feed_names`, newest story first, members loaded.

        With `guids`, only those stories (an archive page read again), in the same order.
        """
        ranked = self.story_ids(feed_names, offset + limit, guids=guids)
        return self.story_members(ranked[offset:])

    def story_ids(
        self,
        feed_names: Sequence[str],
        limit: int | None = None,
        *,
        guids: Sequence[str] | None = None,
    ) -> list[int]:
        """Stories with a member from `feed_names`, newest first (by their oldest such entry's
        sort date), the first `limit` or all of them. A publish ranks at most twice: each
        ranking reads every entry."""
        if not feed_names:
            return []
        story_date = sa.func.min(entries.c.sort_date).label("story_date")
        top = sa.select(entries.c.cluster_id, story_date).where(
            entries.c.feed_name.in_(list(feed_names))
        )
        if guids is not None:
            wanted = sa.select(clusters.c.id).where(clusters.c.guid.in_(list(guids)))
            top = top.where(entries.c.cluster_id.in_(wanted.scalar_subquery()))
        top = (
            top.group_by(entries.c.cluster_id)
            .order_by(story_date.desc(), entries.c.cluster_id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [row.cluster_id for row in conn.execute(top)]

    def story_members(self, ids: Sequence[int]) -> list[list[StoredItem]]:
        """The members of these stories, in the order given (a story without members is left
        out)."""
        members: dict[int, list[StoredItem]] = {i: [] for i in ids}
        with self.engine.connect() as conn:
            for chunk in range(0, len(ids), _CHUNK):
                query = _members_query().where(
                    entries.c.cluster_id.in_(list(ids[chunk : chunk + _CHUNK]))
                )
                for row in conn.execute(query):
                    members[row.cluster_id].append(_stored_item(row._mapping))
        return [members[i] for i in ids if members[i]]

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


#: How often each process prunes the near-duplicate index (also every WINDOW_ENTRIES // 50).
PRUNE_EVERY = timedelta(minutes=5)

#: The latest entry dates of one feed (schedule.next_poll looks at the last 10).
_RECENT = (
    sa.select(entries.c.sort_date)
    .where(entries.c.feed_name == sa.bindparam("feed"))
    .order_by(entries.c.sort_date.desc())
    .limit(10)
)


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


#: Clusters whose members one statement reads (SQLite allows 32766 bound values).
_CHUNK = 5000


def _members_query() -> sa.Select[Any]:
    """Entries with their story guid and provider facts, as policy needs them (only the
    columns a StoredItem holds: fewer dates to parse, less text to copy)."""
    return (
        sa.select(
            *(entries.c[name] for name in _ENTRY_FIELDS),
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


_ITEM_FIELDS = {f.name for f in fields(StoredItem)}
_ENTRY_FIELDS = [c.name for c in entries.columns if c.name in _ITEM_FIELDS]


def _stored_item(row: Any) -> StoredItem:
    values = dict(row)  # `_members_query` selects exactly the StoredItem fields
    categories = values["categories"]
    values["categories"] = (
        tuple(json.loads(categories)) if categories and categories != "[]" else ()
    )
    values["notice_lines"] = _notice_lines(values["notice_lines"])
    return StoredItem(**values)


def _notice_lines(stored: str | None) -> tuple[str, ...] | None:
    """The stored notice lines, if made under today's rules (else None: read the bodies)."""
    if not stored:
        return None
    found = json.loads(stored)
    if found.get("rules") != rights.NOTICE_RULES:
        return None
    return tuple(found["lines"])
