"""The database schema: every table the store uses, on SQLite and PostgreSQL alike.

Changing anything here needs an Alembic migration (aggregator/migrations); a test checks
that the two agree.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

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

#: Cluster-wide per-host concurrency (fetch.per_host) on PostgreSQL: a row is one request in
#: flight to `host`, by daemon `owner`, in slot 0..per_host-1. Released slots are deleted;
#: `until` (database clock) frees the slot of a daemon that died mid-request.
host_slots = sa.Table(
    "host_slots",
    metadata,
    sa.Column("host", sa.String(255), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("until", UTCDateTime, nullable=False),
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
    # policy.rights.notice_lines of the bodies, as JSON {"rules": ..., "lines": [...]}.
    sa.Column("notice_lines", sa.Text),
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
