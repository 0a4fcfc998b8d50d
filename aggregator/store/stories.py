"""Story assignment: which stored story (cluster) a new entry belongs to, and why.

Exact keys first (normalised link, global guid, main-text hash), then near-duplicates found
through MinHash band keys kept in the database (so every daemon shares one index and a
restart forgets nothing). The decisions themselves are pure functions in aggregator.dedupe;
this module only reads and writes the rows they need.
"""

import json
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from aggregator import dedupe
from aggregator.models import ParsedEntry
from aggregator.store.schema import (
    GUID_NAMESPACE,
    clusters,
    entries,
    entry_matches,
    feed_segments,
    near_bands,
    near_docs,
)

_CHUNK = 500


def store_entry(
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
    found = find_cluster(conn, values, near)
    if found is None:
        cluster_id = new_cluster(conn, feed_name, entry.key, now)
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


def find_cluster(
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


def near_matches(
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
            ((d.entry_id, d.feed_name, d.text, frozenset(d.numbers.split())) for d in candidates),
        )
        if match is not None and match.other is not None:
            found[key] = (int(docs[match.other].cluster_id), match)
    return found


def new_cluster(conn: Connection, feed_name: str, key: str, now: datetime) -> int:
    guid = f"urn:uuid:{uuid.uuid5(GUID_NAMESPACE, feed_name + chr(10) + key)}"
    result = conn.execute(clusters.insert().values(guid=guid, first_seen=now))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def fingerprints(
    conn: Connection, feed_name: str, batch: Sequence[ParsedEntry], now: datetime
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
    count_segments(conn, feed_name, batch_counts, now)
    return {key: dedupe.fingerprint(segs, common[key]) for key, segs in fresh.items()}


def count_segments(conn: Connection, feed_name: str, counts: Counter[int], now: datetime) -> None:
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


def record_placements(
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


def prune_near(conn: Connection, now: datetime) -> None:
    """Forget what fell out of the window; every step is an indexed range."""
    newest = conn.execute(sa.select(sa.func.max(near_docs.c.entry_id))).scalar()
    if newest is None:
        return
    expired = conn.execute(
        sa.select(sa.func.max(near_docs.c.entry_id)).where(near_docs.c.seen < now - dedupe.WINDOW)
    ).scalar()
    cutoff = max(expired or 0, newest - dedupe.WINDOW_ENTRIES)
    if cutoff > 0:
        conn.execute(near_bands.delete().where(near_bands.c.entry_id <= cutoff))
        conn.execute(near_docs.delete().where(near_docs.c.entry_id <= cutoff))
    conn.execute(feed_segments.delete().where(feed_segments.c.last_seen < now - dedupe.WINDOW))


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


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
