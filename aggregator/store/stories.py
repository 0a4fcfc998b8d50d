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
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from aggregator import dedupe
from aggregator.models import ParsedEntry
from aggregator.policy import rights
from aggregator.store import bulk
from aggregator.store.schema import (
    GUID_NAMESPACE,
    UTCDateTime,
    clusters,
    entries,
    entry_matches,
    feed_segments,
    near_bands,
    near_docs,
)

_CHUNK = 500


class Stored(NamedTuple):
    """What storing the batch needs of an entry already stored for the feed."""

    id: int
    content_hash: str
    first_seen: datetime
    sort_date: datetime


def stored_entries(
    conn: Connection, feed_name: str, batch: Sequence[ParsedEntry]
) -> dict[str, Stored]:
    """key_hash -> the feed's stored entry, for the batch's keys (one query per chunk)."""
    found: dict[str, Stored] = {}
    hashes = list({dedupe.key_hash(e.key) for e in batch})
    for chunk in _chunks(hashes):
        rows = conn.execute(
            sa.select(
                entries.c.key_hash,
                entries.c.id,
                entries.c.content_hash,
                entries.c.first_seen,
                entries.c.sort_date,
            ).where(entries.c.feed_name == feed_name, entries.c.key_hash.in_(chunk))
        )
        found.update({row.key_hash: Stored(*row[1:]) for row in rows})
    return found


def changed(batch: Sequence[ParsedEntry], stored: dict[str, Stored]) -> list[ParsedEntry]:
    """The batch's entries that are new or edited: the only ones that need preparing."""
    return [
        e
        for e in batch
        if (row := stored.get(dedupe.key_hash(e.key))) is None
        or row.content_hash != dedupe.content_hash(e)
    ]


_EXACT = (("same-link", "norm_link"), ("same-guid", "guid_key"), ("same-text", "text_hash"))


def store_batch(
    conn: Connection,
    feed_name: str,
    batch: Sequence[ParsedEntry],
    prepared: dict[str, dedupe.Prepared],
    stored: dict[str, Stored],
    now: datetime,
    near: dict[str, tuple[int, dedupe.Match]],
) -> tuple[list[tuple[str, int, dedupe.Match]], int]:
    """Store the batch in order: (key, id, why) of each new entry, and the number updated.

    Unchanged entries cost no write. A new entry joins the story of the earliest entry
    sharing an exact key (earlier entries of this batch included), else its near match.
    `stored` is kept current as the batch is written.
    """
    placed: list[tuple[str, int, dedupe.Match]] = []
    updated = 0
    pending: list[tuple[ParsedEntry, str, str, dict[str, Any]]] = []
    new: list[dict[str, Any]] = []
    for entry in batch:
        khash, chash = dedupe.key_hash(entry.key), dedupe.content_hash(entry)
        row = stored.get(khash)
        if row is None or row.content_hash != chash:
            # A batch that repeats a key was prepared from its last entry only.
            ready = prepared.get(entry.key)
            same = ready is not None and ready.content_hash == chash
            text = ready.text_hash if ready is not None and same else dedupe.text_hash(entry)
            pending.append((entry, khash, chash, _entry_values(entry, chash, text)))
            if row is None:
                new.append(pending[-1][3])
    earliest = _earliest(conn, new)
    in_batch: dict[str, dict[str, tuple[int, int]]] = {column: {} for _, column in _EXACT}
    changed = False  # an update can change the keys `earliest` was read for
    for entry, khash, chash, values in pending:
        row = stored.get(khash)  # the batch may repeat a key
        if row is not None:
            if row.content_hash == chash:
                continue
            # Re-dating never moves a story up; a date corrected backwards may move it down.
            # The entry stays in its story: a story's membership and guid never change.
            values = values | {"sort_date": min(row.sort_date, _sort_date(entry, row.first_seen))}
            conn.execute(entries.update().where(entries.c.id == row.id), values)
            stored[khash] = row._replace(content_hash=chash, sort_date=values["sort_date"])
            updated += 1
            changed = True
            continue
        if changed:
            found = find_cluster(conn, values, near.get(entry.key))
        else:
            found = _exact_match(values, earliest, in_batch) or near.get(entry.key)
        if found is None:
            cluster_id = new_cluster(conn, feed_name, entry.key, now)
            match = dedupe.Match("first", 1.0)
        else:
            cluster_id, match = found
        sort_date = _sort_date(entry, now)
        inserted = values | {
            "feed_name": feed_name,
            "key_hash": khash,
            "key": entry.key,
            "cluster_id": cluster_id,
            "first_seen": now,
            "sort_date": sort_date,
        }
        for column in _TIMES:
            inserted[column] = bulk.db_time(conn, inserted[column])
        entry_id = bulk.insert_id(conn, _INSERT_ENTRY, inserted)
        stored[khash] = Stored(entry_id, chash, now, sort_date)
        for _, column in _EXACT:
            if values[column] is not None:
                in_batch[column].setdefault(values[column], (entry_id, cluster_id))
        placed.append((entry.key, entry_id, match))
    return placed, updated


def _earliest(conn: Connection, new: list[dict[str, Any]]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per exact-key column, value -> (id, cluster) of the earliest stored entry having it."""
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for _, column in _EXACT:
        found[column] = {}
        wanted = list({v[column] for v in new if v[column] is not None})
        for chunk in _chunks(wanted):
            rows = conn.execute(
                sa.select(entries.c[column], entries.c.id, entries.c.cluster_id)
                .where(entries.c[column].in_(chunk))
                .order_by(entries.c.id)
            )
            for value, entry_id, cluster_id in rows:
                found[column].setdefault(value, (entry_id, cluster_id))
    return found


def _exact_match(
    values: dict[str, Any],
    earliest: dict[str, dict[str, tuple[int, int]]],
    in_batch: dict[str, dict[str, tuple[int, int]]],
) -> tuple[int, dedupe.Match] | None:
    # Stored entries are older than the batch's, so they come first within a rule.
    for rule, column in _EXACT:
        value = values[column]
        if value is None:
            continue
        hit = earliest[column].get(value) or in_batch[column].get(value)
        if hit is not None:
            return hit[1], dedupe.Match(rule, 1.0, hit[0])
    return None


def find_cluster(
    conn: Connection,
    values: dict[str, Any],
    near: tuple[int, dedupe.Match] | None,
) -> tuple[int, dedupe.Match] | None:
    """The story a new entry joins and why: exact keys first, then its near match."""
    for rule, column in _EXACT:
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

    Candidates are the indexed entries of other feeds sharing LSH bands with an entry,
    most shared first (at most dedupe.MAX_CANDIDATES each); dedupe.best_match verifies
    them. Each band contributes its dedupe.BAND_READ newest entries only: phrases every
    article uses ("...에 따르면", "according to") make a few bands hold thousands of
    entries, and reading them all made the lookup grow with the index. A real duplicate
    shares many bands, so it is still found through the others. The feed's own indexed
    entries are left out here rather than by a join (an entries row per shared band).
    """
    own = set(
        conn.execute(
            sa.select(near_docs.c.entry_id)
            .join(entries, entries.c.id == near_docs.c.entry_id)
            .where(entries.c.feed_name == feed_name)
        ).scalars()
    )
    tops: dict[str, list[int]] = {}
    for key, fp in fingerprints.items():
        if fp is not None:
            bands = sorted(set(fp.bands))
            params = {f"b{i}": bands[i] if i < len(bands) else None for i in range(_BANDS)}
            ranked = bulk.scalars(conn, _RANKED, params | {"n": dedupe.MAX_CANDIDATES + len(own)})
            top = [i for i in ranked if i not in own][: dedupe.MAX_CANDIDATES]
            if top:
                tops[key] = top
    # Numbers first: most candidates are unrelated stories that only share a band, and their
    # numbers disagree (dedupe.numbers_agree), so their text (kilobytes each) is never read.
    facts: dict[int, tuple[str, int, frozenset[str]]] = {}
    for chunk in _chunks(sorted({i for top in tops.values() for i in top})):
        rows = conn.execute(
            sa.select(
                near_docs.c.entry_id,
                near_docs.c.numbers,
                entries.c.feed_name,
                entries.c.cluster_id,
            )
            .join(entries, entries.c.id == near_docs.c.entry_id)
            .where(near_docs.c.entry_id.in_(chunk))
        )
        # Split once: a document is often a candidate of several entries of the batch.
        facts.update(
            {r.entry_id: (r.feed_name, r.cluster_id, frozenset(r.numbers.split())) for r in rows}
        )
    worth: dict[str, list[int]] = {}
    for key, top in tops.items():
        fp = fingerprints[key]
        assert fp is not None
        worth[key] = [
            i
            for i in top
            if i in facts
            and facts[i][0] != feed_name
            and dedupe.numbers_agree(fp.numbers, facts[i][2])
        ]
    texts: dict[int, str] = {}
    for chunk in _chunks(sorted({i for ids in worth.values() for i in ids})):
        query = sa.select(near_docs.c.entry_id, near_docs.c.text)
        for entry_id, text in conn.execute(query.where(near_docs.c.entry_id.in_(chunk))):
            texts[entry_id] = text
    found = {}
    for key, ids in worth.items():
        fp = fingerprints[key]
        assert fp is not None
        match = dedupe.best_match(
            fp, feed_name, ((i, facts[i][0], texts[i], facts[i][2]) for i in ids if i in texts)
        )
        if match is not None and match.other is not None:
            found[key] = (int(facts[match.other][1]), match)
    return found


_BANDS = dedupe.BANDS + dedupe.LEAD_BANDS  # the text's bands and the lead's
#: Entry ids sharing each of an entry's bands, newest first, at most BAND_READ per band.
_SHARED = sa.union_all(
    *(
        sa.select(
            sa.select(near_bands.c.entry_id)
            .where(near_bands.c.band == sa.bindparam(f"b{i}"))
            .order_by(near_bands.c.entry_id.desc())
            .limit(dedupe.BAND_READ)
            .subquery(f"s{i}")
            .c.entry_id
        )
        for i in range(_BANDS)
    )
).subquery("shared")
#: ...counted: the entries sharing the most bands first, the newest first among equals.
_RANKED = (
    sa.select(_SHARED.c.entry_id)
    .group_by(_SHARED.c.entry_id)
    .order_by(sa.func.count().desc(), _SHARED.c.entry_id.desc())
    .limit(sa.bindparam("n"))
)


def new_cluster(conn: Connection, feed_name: str, key: str, now: datetime) -> int:
    guid = f"urn:uuid:{uuid.uuid5(GUID_NAMESPACE, feed_name + chr(10) + key)}"
    return bulk.insert_id(
        conn, _INSERT_CLUSTER, {"guid": guid, "first_seen": bulk.db_time(conn, now)}
    )


#: One new row each, straight to the driver (bulk.insert_id): a story and an entry per new
#: entry were two SQLAlchemy executes, most of their cost.
_INSERT_CLUSTER = (
    clusters.insert()
    .values(guid=sa.bindparam("guid"), first_seen=sa.bindparam("first_seen"))
    .returning(clusters.c.id)
)
_ENTRY_COLUMNS = [c.name for c in entries.columns if c.name != "id"]
_INSERT_ENTRY = (
    entries.insert()
    .values({name: sa.bindparam(name) for name in _ENTRY_COLUMNS})
    .returning(entries.c.id)
)
#: The entry columns that hold datetimes, converted with bulk.db_time.
_TIMES = tuple(c.name for c in entries.columns if isinstance(c.type, UTCDateTime))


def fingerprints(
    conn: Connection,
    feed_name: str,
    prepared: dict[str, dedupe.Prepared],
    stored: dict[str, Stored],
    now: datetime,
) -> dict[str, dedupe.Fingerprint | None]:
    """Fingerprints of the batch's new entries, the feed's boilerplate left out.

    Boilerplate is learnt from the feed's stored entries and from the batch itself
    (a feed's first poll already shows its footer many times); the batch's segments
    are then counted for later polls. A prepared fingerprint is kept when it left out
    the same segments, which is always so on a feed's first poll.
    """
    fresh = {key: p for key, p in prepared.items() if p.key_hash not in stored}
    hashes = {key: p.segment_hashes for key, p in fresh.items()}
    batch_counts = Counter(h for hs in hashes.values() for h in hs)
    counts: dict[int, int] = {}
    # A feed's first poll has no counts to read: one probe instead of a lookup per segment.
    if batch_counts and _has_segments(conn, feed_name):
        for chunk in _chunks(list(batch_counts)):
            rows = conn.execute(
                sa.select(feed_segments.c.segment, feed_segments.c.entries).where(
                    feed_segments.c.feed_name == feed_name, feed_segments.c.segment.in_(chunk)
                )
            )
            counts.update({row.segment: row.entries for row in rows})
    common = dedupe.recurring_segments(hashes, counts)
    count_segments(conn, feed_name, batch_counts, now)
    return {
        key: p.fingerprint
        if common[key] == p.assumed_common
        else dedupe.fingerprint(p.segments, common[key])
        for key, p in fresh.items()
    }


def _has_segments(conn: Connection, feed_name: str) -> bool:
    found = conn.execute(
        sa.select(feed_segments.c.segment).where(feed_segments.c.feed_name == feed_name).limit(1)
    ).first()
    return found is not None


def count_segments(conn: Connection, feed_name: str, counts: Counter[int], now: datetime) -> None:
    if not counts:
        return
    seen = bulk.db_time(conn, now)
    bulk.executemany(
        conn,
        _UPSERT_SEGMENTS[conn.dialect.name],
        [
            {"feed_name": feed_name, "segment": h, "entries": n, "last_seen": seen}
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
    bulk.executemany(
        conn,
        _INSERT_MATCH,
        [
            {"entry_id": i, "rule": m.rule, "score": m.score, "other_id": m.other}
            for i, m, _ in placed
        ],
    )
    indexed = [(i, fp) for i, _, fp in placed if fp is not None]
    seen = bulk.db_time(conn, now)
    bulk.executemany(
        conn,
        _INSERT_DOC,
        [
            {"entry_id": i, "seen": seen, "text": fp.text, "numbers": " ".join(sorted(fp.numbers))}
            for i, fp in indexed
        ],
    )
    bulk.executemany(
        conn, _INSERT_BAND, [{"band": b, "entry_id": i} for i, fp in indexed for b in set(fp.bands)]
    )


def _upsert_segments(insert: Any) -> Any:
    stmt = insert(feed_segments)
    return stmt.on_conflict_do_update(
        index_elements=["feed_name", "segment"],
        set_={
            "entries": feed_segments.c.entries + stmt.excluded.entries,
            "last_seen": stmt.excluded.last_seen,
        },
    )


_UPSERT_SEGMENTS = {
    "sqlite": _upsert_segments(sqlite_insert),
    "postgresql": _upsert_segments(postgresql_insert),
}
_INSERT_MATCH = entry_matches.insert()
_INSERT_DOC = near_docs.insert()
_INSERT_BAND = near_bands.insert()


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


def _entry_values(entry: ParsedEntry, chash: str, text_hash: str | None) -> dict[str, Any]:
    return {
        "guid": entry.guid,
        "link": entry.link,
        "norm_link": dedupe.normalize_url(entry.link),
        "guid_key": dedupe.guid_key(entry.guid),
        "text_hash": text_hash,
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
        "notice_lines": None
        if entry.notice_lines is None
        else json.dumps(
            {"rules": rights.NOTICE_RULES, "lines": list(entry.notice_lines)}, ensure_ascii=False
        ),
    }
