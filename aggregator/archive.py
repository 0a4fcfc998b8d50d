"""RFC 5005 archived feeds: older items move to immutable pages a returning reader can walk.

The subscription feed (feed.xml, atom.xml) holds the newest `output.limit` items. Older ones
fill pages of `output.archive_page_size` items, `archive/feed-N.xml` and `archive/atom-N.xml`,
N = 1, 2, … in the order pages are made. A complete page is written once and never changes.
Items that do not fill a page yet are in the open page, whose name carries a hash of what it
holds (`archive/feed-N-3f2a….xml`): when it gains an item it is a new document at a new URL,
so no URL ever changes content either; a superseded open page is removed one publish later.
The feed links the open page (else the newest complete one) with `rel="prev-archive"`, and
every page links the complete page before it. So a reader that was away walks `prev-archive`
from the feed until it reaches a page it has already read, and has every item exactly once:
each item is in the feed or in exactly one page, never in two places.

Two things may rewrite a complete page, because the provider's contract wins over
immutability: a page file that went missing is written again, and a page is re-rendered when
the terms of a provider in it change in the config (`redistribution`, `images`,
`excerpt_length`, `credit`, … or the provider's removal): the README promises that such a
change applies to everything published.

Which items are in which page is kept in `archive/.state.json` (a hidden file, never served),
written after the pages it describes; without it the pages themselves are read back. For a
channel it also remembers the items it published, so a channel that keeps few stories need
not read the whole store each time (see `aggregator.site`). The planning here is pure;
`aggregator.site` does the writing.

A first publish over a big store archives every story at once. Only the newest items of an
output can end up in its feed or open page, so only those are held in memory while the stream
is read (`Gathering`); older ones are written to a nameless temporary file (`Spill`) and held
as a `Stub`, enough to plan the pages, until their page is written (`restore`). Memory stays
at a few pages of items whatever the size of the store, and each item is built once.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import pickle
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from aggregator.models import PublishedItem
from aggregator.publish import ARCHIVE_DIR, write_atomic

log = logging.getLogger(__name__)

STATE_FILE = f"{ARCHIVE_DIR}/.state.json"
_ATOM = "{http://www.w3.org/2005/Atom}"
_ATOM_PAGE = re.compile(r"^atom-(\d+)\.xml$")


@dataclass(frozen=True)
class Page:
    """One archive page (complete, or the open one): its items' guids, what it was rendered
    under."""

    number: int
    guids: tuple[str, ...]
    noindex: bool = False
    #: provider name -> `policy.terms_fingerprint` when the page was rendered.
    terms: Mapping[str, str] = field(default_factory=dict)
    #: The open page's `N-hash` (see `open_reference`); None for a complete page.
    name: str | None = None

    @property
    def ref(self) -> int | str:
        """What `publish.archive_name` takes to name the page's files."""
        return self.name or self.number


@dataclass(frozen=True)
class State:
    pages: tuple[Page, ...] = ()  # complete, oldest first
    #: The open page, and the one it replaced (still there for readers mid-walk; removed
    #: when it is replaced in turn).
    open_page: Page | None = None
    replaced: Page | None = None
    #: A channel's rules and every provider's terms (`rules_fingerprint`) when it last
    #: published, and the unarchived items it published then: they stay in the channel when
    #: they lie deeper in the store than a channel reads (see `aggregator.site`).
    rules: str | None = None
    remembered: tuple[PublishedItem, ...] = ()

    @property
    def archived(self) -> frozenset[str]:
        return frozenset(g for page in self.pages for g in page.guids)


class Spill:
    """Items let go while gathering, on disk until their archive page is written.

    A temporary file without a name (removed by the system even after a crash) in the output
    folder, created only when a first item is let go; items come back exactly as they went
    (pickle: our own objects, never another's bytes).
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._file: IO[bytes] | None = None

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def put(self, item: PublishedItem) -> tuple[int, int]:
        """Where the item went: offset and size."""
        if self._file is None:
            self._folder.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=self._folder)  # noqa: SIM115 (__exit__)
        self._file.seek(0, os.SEEK_END)
        return self._file.tell(), self._file.write(pickle.dumps(item, pickle.HIGHEST_PROTOCOL))

    def get(self, at: int, size: int) -> PublishedItem:
        assert self._file is not None
        self._file.seek(at)
        item: PublishedItem = pickle.loads(self._file.read(size))
        return item


@dataclass(frozen=True, slots=True)
class Stub:
    """An item older than an output's feed and open page: what planning its page needs
    (`sort_key`, `page_of`), and where the item itself waits in the `Spill`."""

    guid: str
    published: datetime
    provider: str
    also: tuple[tuple[str, str], ...]
    noindex: bool
    at: int
    size: int

    @classmethod
    def of(cls, item: PublishedItem, spill: Spill) -> Stub:
        at, size = spill.put(item)
        return cls(item.guid, item.published, item.provider, item.also, item.noindex, at, size)


#: An item as an output holds it while planning: in memory, or as a stub.
Listed = PublishedItem | Stub


def sort_key(item: Listed) -> tuple[datetime, str]:
    """The feeds' order, newest first when reversed (as the merged output sorts)."""
    return (item.published, item.guid)


def rules_fingerprint(rules: object) -> str:
    """A short hash of `rules` (JSON-able: its text must not depend on set order)."""
    return hashlib.sha256(json.dumps(rules, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def providers(items: Iterable[PublishedItem]) -> set[str]:
    """Every provider an item names: its representative and the "also reported by" ones."""
    return {name for item in items for name in (item.provider, *(n for n, _ in item.also))}


class Gathering:
    """One output's kept items not archived yet, offered the newest-first stream item by item
    (every output reads the same pass) until it has read as far as it needs (`done`).

    Without archiving that is the newest `limit`. With it, every unarchived item down to where
    `limit` archived items in a row show the rest is archived already (an entry arriving late
    with an old date is still found when it lands among recent pages). `depth` caps how many
    items of the stream are read at all (a channel that keeps few items would read it all);
    with it, `seen` collects the guids read. Only the newest `hold` items found stay in
    memory, the others go to `spill`: a first publish would otherwise hold the whole store.
    """

    def __init__(
        self,
        keep: Callable[[PublishedItem], bool],
        archived: frozenset[str],
        limit: int,
        archiving: bool,
        hold: int,
        spill: Spill,
        depth: int | None = None,
    ) -> None:
        self.keep, self.archived, self.limit, self.archiving = keep, archived, limit, archiving
        self.hold, self.spill, self.depth = hold, spill, depth
        self.found: list[Listed] = []
        self.seen: set[str] | None = set() if depth is not None else None
        self.done = False
        self._read = self._archived_run = 0
        self._held: list[tuple[tuple[datetime, str], int, PublishedItem]] = []  # oldest first

    def offer(self, item: PublishedItem) -> None:
        if self.depth is not None and self._read >= self.depth:
            self.done = True  # as the stream's next item is offered, like a loop's break
            return
        self._read += 1
        if self.seen is not None:
            self.seen.add(item.guid)
        if not self.keep(item):
            return
        if item.guid in self.archived:
            self._archived_run += 1
            if len(self.found) >= self.limit and self._archived_run >= self.limit:
                self.done = True
            return
        heapq.heappush(self._held, (sort_key(item), len(self.found), item))
        self.found.append(item)
        if len(self._held) > self.hold:  # the oldest one held goes to disk
            _, at, oldest = heapq.heappop(self._held)
            self.found[at] = Stub.of(oldest, self.spill)
        self._archived_run = 0
        if not self.archiving and len(self.found) >= self.limit:
            self.done = True


@dataclass(frozen=True)
class Plan:
    feed: list[PublishedItem]  # the subscription feed's, newest first
    pages: list[list[Listed]]  # new complete pages, oldest page first (see `restore`)
    open_page: list[PublishedItem]  # fewer than a page, waiting for more


def plan(unarchived: Sequence[Listed], limit: int, page_size: int) -> Plan:
    """Split the unarchived items between the feed, new complete pages and the open page.

    The feed keeps the newest `limit`; the older ones fill whole pages of `page_size` from
    the oldest end, oldest page first; the rest (fewer than a page, the newest of the older
    ones) make the open page. Each page lists its items newest first, like every feed.
    """
    ordered = sorted(unarchived, key=sort_key, reverse=True)
    feed, older = ordered[:limit], ordered[limit:][::-1]
    whole = len(older) // page_size * page_size
    chunks = [older[i : i + page_size][::-1] for i in range(0, whole, page_size)]
    return Plan(held(feed), chunks, held(older[whole:][::-1]))


def held(items: Sequence[Listed]) -> list[PublishedItem]:
    """A feed's or open page's items: always among the newest, so held in memory."""
    full = [item for item in items if isinstance(item, PublishedItem)]
    if len(full) != len(items):
        raise ValueError("the feed and the open page need items held in memory (Gathering.hold)")
    return full


def restore(chunk: Sequence[Listed], spill: Spill) -> list[PublishedItem]:
    """A new complete page's items, those let go read back from the spill."""
    return [spill.get(i.at, i.size) if isinstance(i, Stub) else i for i in chunk]


def open_reference(number: int, items: Sequence[PublishedItem], terms: Mapping[str, str]) -> str:
    """`N-hash`: the open page's name part, new whenever its items or their terms change."""
    lines = sorted(
        f"{item.guid} {' '.join(terms.get(p, '') for p in sorted(providers([item])))}"
        for item in items
    )
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return f"{number}-{digest[:12]}"


def stale(page: Page, terms: Mapping[str, str]) -> bool:
    """A provider in the page has other terms now (or was removed): re-render it."""
    return any(terms.get(name, "") != fingerprint for name, fingerprint in page.terms.items())


def page_of(
    number: int,
    items: Sequence[PublishedItem],
    terms: Mapping[str, str],
    guids: Sequence[str],
    name: str | None = None,
) -> Page:
    return Page(
        number,
        tuple(guids),
        any(item.noindex for item in items),
        {provider: terms.get(provider, "") for provider in sorted(providers(items))},
        name,
    )


def load(out_dir: Path) -> State:
    """The archive state of the output in `out_dir`; read back from the pages if need be."""
    path = out_dir / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return State(
            tuple(_page(p) for p in data["pages"]),
            _page(data["open_page"]) if data.get("open_page") else None,
            _page(data["replaced"]) if data.get("replaced") else None,
            data.get("rules"),
            tuple(_item(i) for i in data.get("remembered", ())),
        )
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s is unreadable (%s); reading the archive pages instead", path, exc)
    return _recover(out_dir)


def _page(data: Mapping[str, Any]) -> Page:
    return Page(
        int(data["number"]),
        tuple(data["guids"]),
        bool(data["noindex"]),
        dict(data["terms"]),
        data.get("name"),
    )


def _json_item(item: PublishedItem) -> dict[str, Any]:
    data = asdict(item)
    return data | {"published": item.published.isoformat(), "updated": item.updated.isoformat()}


def _item(data: Mapping[str, Any]) -> PublishedItem:
    return PublishedItem(
        **{
            **data,
            "published": datetime.fromisoformat(data["published"]),
            "updated": datetime.fromisoformat(data["updated"]),
            "also": tuple((name, url) for name, url in data["also"]),
            "categories": tuple(data["categories"]),
            "removed": tuple(data["removed"]),
        }
    )


def _recover(out_dir: Path) -> State:
    """Rebuild the state from the Atom pages (their entry ids are the item guids)."""
    pages: list[Page] = []
    folder = out_dir / ARCHIVE_DIR
    numbered = [(m, p) for p in folder.glob("atom-*.xml") if (m := _ATOM_PAGE.match(p.name))]
    for match, path in sorted(numbered, key=lambda mp: int(mp[0].group(1))):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            log.warning("archive page %s is unreadable; its items may be archived again", path)
            continue
        guids = [entry.findtext(f"{_ATOM}id") or "" for entry in root.iter(f"{_ATOM}entry")]
        pages.append(Page(int(match.group(1)), tuple(guids)))
    if pages:
        log.warning("archive state of %s recovered from %d pages", out_dir, len(pages))
    return State(tuple(pages))


def save(out_dir: Path, state: State) -> bool:
    def page(p: Page | None) -> dict[str, Any] | None:
        if p is None:
            return None
        data = {"number": p.number, "guids": list(p.guids), "noindex": p.noindex}
        return data | {"terms": dict(p.terms), "name": p.name}

    data = {
        "version": 1,
        "pages": [page(p) for p in state.pages],
        "open_page": page(state.open_page),
        "replaced": page(state.replaced),
        "rules": state.rules,
        "remembered": [_json_item(i) for i in state.remembered],
    }
    text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    (out_dir / ARCHIVE_DIR).mkdir(parents=True, exist_ok=True)
    return write_atomic(out_dir / STATE_FILE, text.encode("utf-8"))
