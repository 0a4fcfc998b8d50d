"""The plain data that flows between pipeline stages (see aggregator/__init__.py).

Every stage takes these in and hands these on; none of them carries behaviour or a
connection, so each stage can be tested with literal values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Level = Literal["full", "summary", "title", "none"]

#: Most to least permissive; a later signal may only move an entry down this list.
LEVELS: tuple[Level, ...] = ("full", "summary", "title", "none")


@dataclass(frozen=True)
class Fetched:
    """What one HTTP fetch of one feed produced (fetch -> parse/store)."""

    name: str
    url: str
    status: int | None = None
    final_url: str = ""
    body: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    retry_after: datetime | None = None
    permanent_redirect: str | None = None
    elapsed: float = 0.0
    #: The earliest time the server's Cache-Control max-age / Expires allow a re-fetch.
    fresh_until: datetime | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.body is not None


@dataclass(frozen=True)
class ParsedEntry:
    """One entry as the provider published it, cleaned (parse -> dedupe/store).

    `key` is the entry's identity within its feed: the guid/id, else the link, else a hash
    of its text. Titles are plain text; the HTML fields are already sanitised and have
    absolute URLs. Dates are timezone-aware UTC.
    """

    key: str
    title: str
    guid: str | None = None
    link: str | None = None
    author: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    summary_html: str = ""
    content_html: str = ""
    rights: str | None = None
    license: str | None = None
    categories: tuple[str, ...] = ()
    #: policy.rights.notice_lines of the bodies, made while parsing; None: not made.
    notice_lines: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ParsedFeed:
    """Feed-level facts plus its entries (parse -> store)."""

    title: str | None = None
    link: str | None = None
    language: str | None = None
    rights: str | None = None
    license: str | None = None
    author: str | None = None
    ttl: int | None = None
    entries: tuple[ParsedEntry, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredItem:
    """An entry as read back from the store for publishing (store -> policy).

    `cluster_guid` is the published identity of the story this entry belongs to; it is
    fixed when the story is first seen and never changes afterwards.
    """

    id: int
    cluster_id: int
    cluster_guid: str
    feed_name: str
    feed_url: str
    key: str
    title: str
    first_seen: datetime
    guid: str | None = None
    link: str | None = None
    author: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    summary_html: str = ""
    content_html: str = ""
    rights: str | None = None
    license: str | None = None
    categories: tuple[str, ...] = ()
    feed_title: str | None = None
    feed_link: str | None = None
    feed_rights: str | None = None
    feed_license: str | None = None
    feed_author: str | None = None
    #: policy.rights.notice_lines of the bodies as stored (None: not stored, or under other
    #: rules: read the bodies).
    notice_lines: tuple[str, ...] | None = None
    #: The entry's place in the store's order (the earlier of its date and first seen, never
    #: moved up by a re-dating); a story is as old as its oldest publishable entry.
    sort_date: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """Which redistribution level applies to an entry, and why (policy)."""

    level: Level
    rule: str
    signals: tuple[str, ...] = ()
    notice: str | None = None
    #: What the rights signals alone allow (`auto`); differs from `level` under a contract.
    detected: Level | None = None


@dataclass(frozen=True)
class PublishedItem:
    """One item of the merged output, already cut to what its terms allow (policy -> publish).

    `content_html` is exactly what readers may see as the item body (full text or excerpt,
    followed by the credit block); publishers must not add provider text beyond it.
    """

    guid: str
    title: str
    link: str
    provider: str
    source_url: str
    author: str
    published: datetime
    updated: datetime
    level: Level
    content_html: str
    summary_text: str
    credit: str
    rule: str
    provider_link: str | None = None
    rights: str | None = None
    also: tuple[tuple[str, str], ...] = ()
    categories: tuple[str, ...] = field(default_factory=tuple)
    #: Crawlers must not index this republished copy (feeds[].noindex).
    noindex: bool = False
    #: What the terms removed from the provider's entry, in words: made for `explain` only.
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedState:
    """What the store remembers about a feed between polls (store -> schedule/fetch).

    `url` is where we fetch now; `config_url` is what the operator configured. They differ
    only after a permanent redirect was adopted.
    """

    name: str
    url: str
    config_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    status: int | None = None
    error: str | None = None
    errors: int = 0
    last_polled: datetime | None = None
    last_ok: datetime | None = None
    next_poll: datetime | None = None
    retry_until: datetime | None = None
    gone: bool = False
    permanent_redirect: str | None = None
    redirects_seen: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    entries: int = 0
