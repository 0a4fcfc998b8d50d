"""RFC 5005 archived feeds: a reader away for a week catches up from immutable pages.

The pure planning is tested with tables; the promise itself end to end: the real `poll`
command publishes day after day, the real `aggregator serve` process serves the output, and
a small RFC 5005 client (feedparser on what it fetches over HTTP) walks `prev-archive` links
the way the RFC tells readers to: from the subscription feed back to the first page it has
already read.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import httpx
import pytest

from aggregator import archive
from aggregator.models import PublishedItem
from tests.conftest import run_cli
from tests.feedserver import FeedServer, Route
from tests.test_serve import ServeProcess

HOME = "https://news.example.org/"
START = datetime(2025, 9, 1, tzinfo=UTC)


def item(n: int, *, provider: str = "p", noindex: bool = False) -> PublishedItem:
    when = START + timedelta(hours=n)
    return PublishedItem(
        guid=f"urn:uuid:{n:08d}-0000-0000-0000-000000000000",
        title=f"story {n}",
        link=f"https://{provider}.example/{n}",
        provider=provider,
        source_url=f"https://{provider}.example/rss",
        author="기자",
        published=when,
        updated=when,
        level="summary",
        content_html="<p>x</p>",
        summary_text="x",
        credit="c",
        rule="r",
        noindex=noindex,
    )


# --- planning (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "limit", "page", "pages", "open_page"),
    [
        (5, 10, 3, [], []),  # fewer than the limit: nothing moves
        (12, 10, 3, [], [1, 0]),  # 2 beyond the limit: not a whole page yet
        (13, 10, 3, [[2, 1, 0]], []),  # exactly a page beyond
        (17, 10, 3, [[2, 1, 0], [5, 4, 3]], [6]),  # two pages, one left over
        (7, 1, 2, [[1, 0], [3, 2], [5, 4]], []),
    ],
)
def test_plan_keeps_the_limit_and_cuts_whole_pages_from_the_oldest_end(
    count: int, limit: int, page: int, pages: list[list[int]], open_page: list[int]
) -> None:
    items = [item(n) for n in range(count)]
    plan = archive.plan(items[::-1], limit, page)

    def numbers(chunk: Sequence[archive.Listed]) -> list[int]:
        return [int(i.guid[9:17]) for i in chunk]

    assert numbers(plan.feed) == list(range(count - 1, max(count - limit, 0) - 1, -1))
    assert [numbers(p) for p in plan.pages] == pages
    assert numbers(plan.open_page) == open_page


def test_the_open_page_is_renamed_whenever_its_items_or_their_terms_change() -> None:
    terms = {"p": "t1"}
    name = archive.open_reference(4, [item(1), item(2)], terms)
    assert name.startswith("4-")
    assert archive.open_reference(4, [item(2), item(1)], terms) == name  # order is no change
    assert archive.open_reference(4, [item(1)], terms) != name
    assert archive.open_reference(4, [item(1), item(2)], {"p": "t2"}) != name


def gather(
    stream: list[PublishedItem],
    keep: Callable[[PublishedItem], bool],
    archived: frozenset[str],
    limit: int,
    archiving: bool,
    depth: int | None = None,
    hold: int = 1000,
    spill: archive.Spill | None = None,
) -> tuple[list[archive.Listed], int]:
    """What one output gathers, and how many items of the stream it asked for."""
    spill = spill or archive.Spill(Path("/nonexistent"))  # touched only if items are let go
    gathering = archive.Gathering(keep, archived, limit, archiving, hold, spill, depth)
    pulled = 0
    for one in stream:
        pulled += 1
        gathering.offer(one)
        if gathering.done:
            break
    return gathering.found, pulled


def test_gather_stops_after_a_limit_of_archived_items_in_a_row() -> None:
    stream = [item(n) for n in range(30, -1, -1)]  # newest first
    archived = frozenset(i.guid for i in stream[8:])  # everything but the newest 8
    late = replace(item(21), guid="urn:uuid:x")  # arrived late, among the archived
    deep = replace(item(-5), guid="urn:uuid:deep")  # only reachable past the whole archive
    mixed = [*stream[:10], late, *stream[10:], deep]
    found, read = gather(mixed, lambda i: True, archived, 3, True)
    assert [i.guid for i in found] == [item(n).guid for n in range(30, 22, -1)] + [late.guid]
    assert read == 14  # the 8 new, 2 archived, the late one, then 3 archived in a row
    found, read = gather(stream, lambda i: True, frozenset(), 3, False)
    assert len(found) == 3 and read == 3  # without archiving: the newest `limit`
    even = gather(stream, lambda i: i.published.hour % 2 == 0, frozenset(), 3, True, 4)
    assert [i.guid for i in even[0]] == [item(30).guid, item(28).guid]  # depth cap: 4 read
    assert even[1] == 5  # the 5th is asked for, and not read (as a loop breaks)


def test_only_the_newest_items_gathered_are_held_in_memory(tmp_path: Path) -> None:
    order = [9, 8, 3, 7, 6, 5, 4, 2, 1, 0]  # stream order is not quite date order
    with archive.Spill(tmp_path) as spill:
        stream = [item(n) for n in order]
        found, _ = gather(stream, lambda i: True, frozenset(), 2, True, hold=4, spill=spill)
        assert [i.guid for i in found] == [item(n).guid for n in order]
        in_memory = [isinstance(i, PublishedItem) for i in found]
        assert in_memory == [True, True, False, True, True, False, False, False, False, False]
        plan = archive.plan(found, 2, 3)  # the feed and the open page come from those held
        assert [i.guid for i in plan.feed] == [item(9).guid, item(8).guid]
        assert [i.guid for i in plan.open_page] == [item(7).guid, item(6).guid]
        assert [archive.restore(page, spill) for page in plan.pages] == [
            [item(2), item(1), item(0)],
            [item(5), item(4), item(3)],
        ]
        with pytest.raises(ValueError, match="held in memory"):
            archive.plan(found, 5, 3)  # a feed deeper than what was held: a bug, not a stub
    assert list(tmp_path.iterdir()) == []  # the spill has no name, and is gone


# --- a first publish over a big store (aggregator.site) ---------------------------------


def story(n: int) -> PublishedItem:
    """Story n of a store: two providers, some also reported by a third, some noindex."""
    return replace(
        item(n, provider="q" if n % 3 == 0 else "p", noindex=n % 11 == 0),
        title=f"{'홀수' if n % 2 else '짝수'} 기사 {n}",
        content_html=f"<p>{'본문 ' * 200}{n}</p>",
        also=(("r", f"https://r.example/{n}"),) if n % 5 == 0 else (),
    )


def store_order(count: int) -> list[int]:
    """Newest story first, as the store ranks them: not quite the items' date order."""
    order = list(range(count - 1, -1, -1))
    for i in range(0, count - 1, 7):
        order[i], order[i + 1] = order[i + 1], order[i]
    return order


def publish(
    out: Path, count: int, made: Callable[[PublishedItem], PublishedItem] = lambda i: i
) -> int:
    """Publish a store of `count` stories to `out` (merged feed and a channel of odd stories),
    building every item anew as the real stream does (each passed to `made`); the reloads
    asked for."""
    from aggregator import config, site

    feeds = ", ".join(f"{{name: {p}, url: 'https://{p}.example/rss'}}" for p in "pqr")
    cfg = config.parse(
        f"output: {{dir: {out}, link: '{HOME}', limit: 3, archive_page_size: 5}}\n"
        f"feeds: [{feeds}]\nchannels:\n  - {{name: odd, limit: 4, include: [홀수]}}\n"
    )
    reloads: list[Sequence[str]] = []

    def reload(guids: Sequence[str]) -> list[PublishedItem]:
        reloads.append(guids)
        return [made(story(int(guid[9:17]))) for guid in guids]

    stream = (made(story(n)) for n in store_order(count))
    site.publish_site(cfg, stream, reload, START)
    return len(reloads)


@dataclass
class Census:
    """How many items were alive at once, at most (of those made where the test sees it)."""

    live: weakref.WeakSet[PublishedItem] = field(default_factory=weakref.WeakSet)
    peak: int = 0

    def __call__(self, item: PublishedItem) -> PublishedItem:
        self.live.add(item)
        self.peak = max(self.peak, len(self.live))
        return item


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_first_publish_over_many_stories_writes_what_holding_them_all_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aggregator import site

    held, bounded = tmp_path / "held", tmp_path / "bounded"
    for count in (60, 64, 69):  # the catch-up, then two steady publishes (< a page new)
        with monkeypatch.context() as patch:
            patch.setattr(site, "HOLD_PAGES", 1000)  # every item held in memory
            assert publish(held, count) == 0
        assert publish(bounded, count) == 0  # no story is built twice
        assert files(bounded) == files(held), count  # pages, feeds, state: every byte
    assert len(json.loads(files(held)["archive/.state.json"])["pages"]) == 13
    assert "odd/archive/atom-6.xml" in files(held)


def test_a_first_publish_holds_a_few_pages_of_items_however_big_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    census = Census()
    read_back = archive.Spill.get  # items read back from disk are counted too
    monkeypatch.setattr(archive.Spill, "get", lambda *args: census(read_back(*args)))
    peaks = []
    for count in (100, 1000):
        census.peak = 0
        publish(tmp_path / str(count), count, census)
        peaks.append(census.peak)
    # Two outputs, each holding limit + 2 pages (13 and 14 items), and a page read back.
    assert peaks[1] == peaks[0] <= 40


# --- end to end -----------------------------------------------------------------------


def rss(stories: list[int], provider: str = "p") -> bytes:
    """The provider's feed: like most, it lists only its 10 newest stories."""
    entries = "".join(
        f"<item><title>{provider} story {n}</title><link>https://{provider}.example/{n}</link>"
        f"<guid>https://{provider}.example/{n}</guid>"
        f"<pubDate>{(START + timedelta(hours=6 * n)).strftime('%a, %d %b %Y %H:%M:%S +0000')}"
        f"</pubDate><description>{provider} 기사 {n} 본문입니다.</description></item>"
        for n in sorted(stories)[-10:]
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{provider}</title><link>https://{provider}.example/</link>{entries}"
        "</channel></rss>"
    ).encode()


@dataclass
class Newsroom:
    """The aggregator's operator: a config, the providers' server, daily polls."""

    tmp: Path
    server: FeedServer
    feeds: list[tuple[str, str]] = field(default_factory=list)
    page_hashes: dict[str, str] = field(default_factory=dict)
    published: set[str] = field(default_factory=set)

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    @property
    def cfg(self) -> Path:
        return self.tmp / "feeds.yaml"

    def write_config(self, levels: dict[str, str] | None = None) -> None:
        lines = [
            f"output: {{dir: out, link: '{HOME}', limit: 5, archive_page_size: 3}}",
            "feeds:",
        ]
        for name, path in self.feeds:
            level = (levels or {}).get(name, "auto")
            lines.append(
                f"  - {{name: {name}, url: '{self.server.url(path)}', author: 기자,"
                f" redistribution: {level}}}"
            )
        self.cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def poll(self) -> None:
        done = run_cli("poll", "--config", str(self.cfg))
        assert done.returncode == 0, done.stdout + done.stderr
        self.check_pages_immutable()
        for doc in self.documents():
            self.published |= {e.link for e in doc.entries}

    def documents(self) -> Iterator[feedparser.FeedParserDict]:
        yield feedparser.parse((self.out / "feed.xml").read_bytes())
        for page in sorted((self.out / "archive").glob("feed-*.xml")):
            yield feedparser.parse(page.read_bytes())

    def check_pages_immutable(self) -> None:
        for page in (self.out / "archive").glob("*.xml"):
            digest = hashlib.sha256(page.read_bytes()).hexdigest()
            assert self.page_hashes.setdefault(page.name, digest) == digest, page.name


class Reader:
    """An RFC 5005 client: the subscription feed, then prev-archive to a page already read."""

    def __init__(self, server: str, kind: str) -> None:
        self.server, self.kind = server, kind
        self.pages_read: set[str] = set()
        self.links: list[str] = []  # every entry read, duplicates kept

    def fetch(self, url: str) -> feedparser.FeedParserDict:
        local = url.replace(HOME, self.server)
        response = httpx.get(local, timeout=10)
        assert response.status_code == 200, url
        return feedparser.parse(response.content)

    def catch_up(self) -> list[str]:
        read: list[str] = []
        doc = self.fetch(HOME + self.kind)
        assert "fh_archive" not in doc.feed  # the subscription feed is no archive
        read += [e.link for e in doc.entries]
        prev = _rel(doc, "prev-archive")
        while prev is not None and prev not in self.pages_read:
            page = self.fetch(prev)
            assert "fh_archive" in page.feed, prev
            assert _rel(page, "current") == HOME + self.kind
            assert _rel(page, "self") == prev
            read += [e.link for e in page.entries]
            self.pages_read.add(prev)
            prev = _rel(page, "prev-archive")
        self.links += read
        return read


def _rel(doc: feedparser.FeedParserDict, rel: str) -> str | None:
    return next((link.href for link in doc.feed.get("links", []) if link.rel == rel), None)


@pytest.fixture
def newsroom(tmp_path: Path, feed_server: FeedServer) -> Newsroom:
    room = Newsroom(tmp_path, feed_server, [("p", "/p.xml")])
    room.write_config()
    return room


def test_reader_away_for_a_week_recovers_every_item_exactly_once(newsroom: Newsroom) -> None:
    stories: list[int] = []

    def day(d: int) -> None:
        stories.extend(range(4 * d, 4 * d + 4))
        newsroom.server.routes["/p.xml"] = Route(rss(stories))
        newsroom.poll()

    day(0)
    serve = ServeProcess(("serve", "--config", str(newsroom.cfg)))
    try:
        readers = [Reader(serve.url, kind) for kind in ("feed.xml", "atom.xml")]
        firsts = [reader.catch_up() for reader in readers]
        assert all(len(first) == 4 for first in firsts)
        daily = Reader(serve.url, "atom.xml")  # one who reads every day, for comparison
        for d in range(1, 8):  # the readers are away
            day(d)
            walk = daily.catch_up()
            assert len(walk) == len(set(walk)), f"day {d}: an item was read twice"
            if d == 4:  # a new provider arrives with an entry dated just before the archive
                newsroom.feeds.append(("late", "/late.xml"))
                newsroom.server.routes["/late.xml"] = Route(rss([13], "late"))
                newsroom.write_config()
                newsroom.poll()
            if d == 6:
                newsroom.poll()  # nothing new: no page changes, none is added
        agains = [reader.catch_up() for reader in readers]
    finally:
        code, log = serve.stop()
    assert code == 0 and "Traceback" not in log
    for reader, first, again in zip(readers, firsts, agains, strict=True):
        # Each item is in exactly one of the documents walked (those the reader saw in the
        # feed before it left are in pages now; RFC 5005 readers dedupe by entry id).
        assert len(again) == len(set(again)), f"{reader.kind}: an item was read twice"
        everything = set(first) | set(again)
        assert {f"https://p.example/{n}" for n in range(32)} <= everything
        assert "https://late.example/13" in everything
        assert everything == newsroom.published  # nothing ever published is missed
        assert len(reader.pages_read) >= 8
        main = feedparser.parse((newsroom.out / reader.kind).read_bytes())
        assert len(main.entries) == 5  # the feed does not grow with the backlog
    assert set(daily.links) == newsroom.published
    assert any("-" in url.rsplit("/", 1)[1][5:] for url in daily.pages_read)  # open pages read
    open_pages = [p for p in (newsroom.out / "archive").glob("atom-*-*.xml")]
    assert 1 <= len(open_pages) <= 2  # the open page, and the one it replaced


def test_a_story_first_reported_early_leaves_the_feed_for_the_archive_not_for_nowhere(
    newsroom: Newsroom,
) -> None:
    """A headline-only provider reported story 19 days before the full-text provider whose
    copy represents it. The story must stay in the feed or move to an archive page like any
    other; it used to vanish from both once enough archived stories lay above it in the
    store's order, which ranked it by the early report."""
    early = (START - timedelta(days=3)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    newsroom.feeds.append(("early", "/early.xml"))
    newsroom.server.routes["/early.xml"] = Route(
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>early</title>'
        "<link>https://early.example/</link><item><title>p story 19</title>"
        "<link>https://p.example/19</link><guid>https://early.example/a</guid>"
        f"<pubDate>{early}</pubDate><description>p 기사 19 본문입니다.</description></item>"
        "</channel></rss>".encode()
    )
    newsroom.write_config({"early": "title"})
    for newest in (19, 23, 27):
        newsroom.server.routes["/p.xml"] = Route(rss(list(range(10, newest + 1))))
        newsroom.poll()
        shown = {e.link for doc in newsroom.documents() for e in doc.entries}
        assert "https://p.example/19" in shown
        assert shown == newsroom.published


def test_a_page_is_rewritten_only_when_the_terms_of_a_provider_in_it_change(
    newsroom: Newsroom,
) -> None:
    newsroom.feeds.append(("q", "/q.xml"))
    newsroom.server.routes["/p.xml"] = Route(rss(list(range(8))))
    newsroom.server.routes["/q.xml"] = Route(rss([100, 101], "q"))  # newest: stay in the feed
    newsroom.write_config()
    newsroom.poll()
    pages = sorted((newsroom.out / "archive").glob("*-1.xml"))  # the complete page
    assert [p.name for p in pages] == ["atom-1.xml", "feed-1.xml"]
    before = {p.name: p.read_bytes() for p in pages}
    assert b"p story 0" in before["feed-1.xml"]

    newsroom.write_config({"q": "title"})  # q is in no page: the pages stay as they are
    newsroom.page_hashes.clear()
    newsroom.poll()
    assert {p.name: p.read_bytes() for p in pages} == before

    newsroom.write_config({"p": "none"})  # p's contract ended: its items leave the pages too
    newsroom.page_hashes.clear()
    newsroom.poll()
    for page in pages:
        doc = feedparser.parse(page.read_bytes())
        assert doc.entries == [] and "fh_archive" in doc.feed, page.name
    state = json.loads((newsroom.out / "archive" / ".state.json").read_text(encoding="utf-8"))
    assert len(state["pages"][0]["guids"]) == 3  # the page keeps its place in the sequence


def test_a_lost_page_is_written_again(newsroom: Newsroom) -> None:
    newsroom.server.routes["/p.xml"] = Route(rss(list(range(9))))
    newsroom.poll()
    page = newsroom.out / "archive" / "atom-1.xml"
    original = page.read_bytes()
    page.unlink()
    newsroom.page_hashes.clear()
    newsroom.poll()
    assert page.read_bytes() == original


def test_archiving_off_keeps_the_feed_at_the_limit_and_writes_no_pages(
    newsroom: Newsroom,
) -> None:
    text = newsroom.cfg.read_text(encoding="utf-8").replace(
        "archive_page_size: 3", "archive: false"
    )
    newsroom.cfg.write_text(text, encoding="utf-8")
    newsroom.server.routes["/p.xml"] = Route(rss(list(range(10))))
    newsroom.poll()
    assert len(feedparser.parse((newsroom.out / "feed.xml").read_bytes()).entries) == 5
    assert not (newsroom.out / "archive").exists()
    assert b"prev-archive" not in (newsroom.out / "atom.xml").read_bytes()
