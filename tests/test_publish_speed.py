"""The fast publish paths write what readers got before: same text, same files.

Files are staged and synced in parallel, stories are read a page at a time, a daemon reuses
the items of stories that did not change, an item's text is read once, and RSS and Atom are
made from one set of feedgen entries. Each must be indistinguishable from the slow way it
replaced.
"""

from __future__ import annotations

import gc
import os
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import nh3
import pytest
from lxml import etree

from aggregator import pipeline
from aggregator.config import Config, FeedConfig, OutputConfig
from aggregator.formats import ATOM_NS, Extras, feeds, gc_paused, xml_safe
from aggregator.models import PublishedItem, StoredItem
from aggregator.policy import Memo, build_item, rights, terms_fingerprint, text
from aggregator.publish import Staged, write_files
from aggregator.store import Store
from tests.test_store import entry, save

T0 = datetime(2025, 10, 16, 10, 58, tzinfo=UTC)


def test_excerpt_still_drops_footers_and_notices() -> None:
    html = "<p>첫 문장이다. 둘째 문장이다.</p><p>기사제공: 예시뉴스 무단 전재 및 재배포 금지</p>"
    assert text.excerpt(html, 200) == "첫 문장이다. 둘째 문장이다."


_PIECES = (
    "금리는 3.5%로 유지됐다.",
    "한국은행은 16일 기준금리를 동결했다고 밝혔다",
    "The central bank held its rate, officials said.",
    "R&amp;D 예산 &lt;확정&gt; &quot;발표&quot;",
    '<a href="https://x.example/?a=1&amp;b=2" title="a&lt;b">링크 글</a>',
    "<b>굵은</b> <i>기울인</i> 글",
    "RSS피드 기사제공처 : 한국IT산업뉴스 / 등록기자: 김유미 문화부",
    "무단 전재 및 재배포금지",
    "&lt;저작권자(c) 연합뉴스, 무단 전재-재배포 금지&gt;",
    "Copyright ⓒ 한국경제. All rights reserved",
    "원문보기",
    "무단 전재 <b>및 재배포금지</b> 뒤에 남은 글",
    "등록기자<i>:</i> 김유미 문화부",
    "<b>Copyright</b> ⓒ 2025 All rights reserved",
    "<b>기사</b>제공처 : 예시뉴스",
    "가" * 150,
    unicodedata.normalize("NFD", "한국어 문장이다. ") * 5,
    "<br>",
    "<br><br>",
)


def _body(rng: random.Random) -> str:
    """An article as the parse stage stores it: paragraphs, lists, a table, a figure, footers
    and notices anywhere (also first), some one long paragraph with no block tag at all."""
    blocks = []
    for _ in range(rng.randint(0, 30)):
        words = " ".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 12)))
        shape = rng.random()
        if shape < 0.6:
            blocks.append(f"<p>{words}</p>")
        elif shape < 0.7:
            blocks.append(f"<ul><li>{words}</li><li>{rng.choice(_PIECES)}</li></ul>")
        elif shape < 0.8:
            blocks.append(f"<table><tr><td>{words}</td><td>{rng.choice(_PIECES)}</td></tr></table>")
        elif shape < 0.85:
            blocks.append(
                f'<figure><img src="https://x.example/i.jpg"><figcaption>{words}</figcaption></figure>'
            )
        elif shape < 0.9:
            blocks.append(f"<h2>{words}</h2><div>{words}</div>")
        else:
            blocks.append(words)
    return nh3.clean(("" if rng.random() < 0.8 else " ").join(blocks))


def test_excerpt_of_the_opening_is_the_excerpt_of_the_whole_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Excerpts read a body's opening only; they must equal the excerpt of the whole body."""
    rng = random.Random(8)
    cases = [(_body(rng), rng.choice([20, 33, 80, 200, 201, 500, 1500, 5000])) for _ in range(1500)]
    fast = [text.excerpt(body, limit) for body, limit in cases]
    assert sum(len(body) > 3 * text._HEAD_MIN for body, _ in cases) > 500  # the opening is cut
    # Not sanitised: the parser moves text a table holds outside its cells before the table.
    raw = ["<table><td>" + "a<br>" * 120 + "</td>X", "<p>앞</p><table><td>셀</td>" + "글 " * 400]
    raw_fast = [text.excerpt(body, 5) for body in raw]
    monkeypatch.setattr(text, "_HEAD_MIN", 10**9)  # never cut: every body read whole
    rights.text_of.cache_clear()
    slow = [text.excerpt(body, limit) for body, limit in cases]
    assert fast == slow
    assert raw_fast == [text.excerpt(body, 5) for body in raw]
    assert sum(s.endswith("…") for s in slow) > 300 and sum(not s for s in slow) < 150


def test_staged_files_replace_together(tmp_path: Path) -> None:
    (tmp_path / "same").write_bytes(b"same")
    files = {tmp_path / f"f{i}": f"{i}".encode() for i in range(40)} | {tmp_path / "same": b"same"}
    written = write_files(files)
    assert sorted(written) == sorted(p for p in files if p.name != "same")
    assert all(p.read_bytes() == data for p, data in files.items())
    assert oct((tmp_path / "f1").stat().st_mode & 0o777) == oct(0o644)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_staged_failure_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_bytes(b"old")
    real = os.replace
    calls = []

    def failing_replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"), Staged() as batch:
        for i in range(5):
            batch.add(tmp_path / f"f{i}", b"new")
        batch.commit()
    # Each file is old or new, whole; no temp file is left.
    assert {(tmp_path / f"f{i}").read_bytes() for i in range(5)} <= {b"old", b"new"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_staged_without_commit_writes_nothing(tmp_path: Path) -> None:
    with Staged() as batch:
        batch.add(tmp_path / "a", b"a")
    assert list(tmp_path.iterdir()) == []


def _entry(**changes: object) -> StoredItem:
    values: dict[str, object] = {
        "id": 1,
        "cluster_id": 1,
        "cluster_guid": "urn:story:1",
        "feed_name": "wire",
        "feed_url": "https://wire.example/rss",
        "key": "k1",
        "title": "제목",
        "first_seen": T0,
        "link": "https://wire.example/1",
        "author": "김기자",
        "published": T0,
        "content_html": "<p>본문 첫 문장이다. 둘째 문장이다.</p><p>무단 전재 및 재배포 금지</p>",
    }
    return StoredItem(**{**values, **changes})  # type: ignore[arg-type]


def test_memo_builds_an_item_again_only_when_its_entries_or_terms_changed() -> None:
    feeds = {"wire": FeedConfig(name="wire", url="https://wire.example/rss")}
    terms = {"wire": terms_fingerprint(feeds["wire"])}
    memo = Memo()
    memo.start(keep=10)
    first, _ = memo.build([_entry()], feeds, "ko", terms)
    assert first is not None and first.level == "summary" and first.rights
    assert memo.build([_entry()], feeds, "ko", terms)[0] is first  # found, not built
    edited = memo.build([_entry(content_html="<p>고친 본문.</p>")], feeds, "ko", terms)[0]
    assert edited is not None and "고친 본문" in edited.content_html
    assert edited.rights is None  # the notice went with the edit: terms recomputed
    full = {"wire": feeds["wire"].model_copy(update={"redistribution": "full"})}
    as_full = memo.build([_entry()], full, "ko", {"wire": terms_fingerprint(full["wire"])})[0]
    assert as_full is not None and as_full.level == "full"
    english = memo.build([_entry()], feeds, "en", terms)[0]
    assert english is not None and "Source: wire" in english.content_html
    # A publish keeps what the one before it used, and no more.
    memo.start(keep=10)
    memo.start(keep=10)
    assert memo.build([_entry()], feeds, "ko", terms)[0] is not first


def test_memo_keeps_only_the_newest_stories_for_the_next_publish() -> None:
    feeds = {"wire": FeedConfig(name="wire", url="https://wire.example/rss")}
    terms = {"wire": terms_fingerprint(feeds["wire"])}
    memo = Memo()
    memo.start(keep=2)
    stories = [[_entry(key=f"k{i}", link=f"https://wire.example/{i}")] for i in range(4)]
    built = [memo.build(s, feeds, "ko", terms)[0] for s in stories]
    memo.start(keep=2)
    again = [memo.build(s, feeds, "ko", terms)[0] for s in stories]
    assert [a is b for a, b in zip(again, built, strict=True)] == [True, True, False, False]


def test_stories_read_again_by_guid_are_those_stories_with_all_members(tmp_path: Path) -> None:
    """An archive page read again: one read by guid, the same entries as the full read."""
    store = Store(f"sqlite:///{tmp_path / 'test.db'}")
    try:
        save(store, "a", *(entry(str(i), published=T0 - timedelta(hours=i)) for i in range(6)))
        save(store, "b", entry("x", link="https://a.example/2"))  # joins story 2
        everything = store.latest_clusters(["a", "b"], 10)
        wanted = [everything[4][0].cluster_guid, everything[2][0].cluster_guid, "urn:none"]
        again = store.latest_clusters(["a", "b"], 3, guids=wanted)
        assert again == [everything[2], everything[4]]  # story order, every member
        assert len(everything[2]) == 2
        assert store.latest_clusters(["b"], 3, guids=wanted) == [everything[2]]
    finally:
        store.close()


# --- the item's text, read once -----------------------------------------------------------------


def _lines_one_by_one(fragment: str) -> tuple[str, ...]:
    """The straightforward definition `rights.text_of` must keep: each line split and joined."""
    block = r"(?=<(?:br|p|div|li|h[1-6]|tr|blockquote|/p|/div|/li|/h[1-6]|/tr)\b)"
    raw = unescape(nh3.clean(re.sub(block, "\n", fragment, flags=re.I), tags=set()))
    raw = unicodedata.normalize("NFC", raw)
    return tuple(line for line in (" ".join(r.split()) for r in raw.splitlines()) if line)


@pytest.mark.parametrize(
    "fragment",
    [
        "<p>첫 문장이다.</p>\n<p>둘째 문장이다. 저작권자 ⓒ 예시뉴스</p>",
        "<p>  spaces\tand tabs  </p><p>\u00a0nbsp\u3000ideographic\u2003em </p>",
        "line\r\nbreaks\rof\u2028every\u2029kind\x1cand\x85more<br>",
        "<p></p>\n\n<p> </p><p>only one</p>\n \n",
        "<p>soft\u00adhyphen and zero\u200bwidth</p><p>CC BY 4.0 All rights reserved</p>",
        "",
        "   ",
    ],
)
def test_body_text_lines_are_those_read_line_by_line(fragment: str) -> None:
    found = rights.text_of(fragment)
    assert found.lines == _lines_one_by_one(fragment)
    assert list(found.maybe) == [i for i, s in enumerate(found.lines) if rights.maybe_rights(s)]


def test_credit_line_follows_changed_terms() -> None:
    """Credit lines are cached by everything they are made of: new terms, new line."""
    feeds = {"wire": FeedConfig(name="wire", url="https://wire.example/rss", credit="사진 A")}
    first, _ = build_item([_entry()], feeds)
    feeds["wire"] = feeds["wire"].model_copy(update={"credit": "사진 B"})
    second, _ = build_item([_entry()], feeds)
    assert first is not None and first.credit.endswith(" / 사진 A")
    assert second is not None and second.credit.endswith(" / 사진 B")
    assert "사진 B" in second.content_html and "사진 A" not in second.content_html


# --- RSS and Atom from one set of feedgen entries ------------------------------------------------

_ITEM = PublishedItem(
    guid="urn:story:1",
    title="제목",
    link="https://wire.example/1",
    provider="wire",
    source_url="https://wire.example/rss",
    provider_link="https://wire.example/",
    author="김기자",
    published=T0,
    updated=T0 + timedelta(hours=1),
    level="summary",
    content_html='<p>요약.</p>\n<p class="credit">기사제공처: wire</p>',
    summary_text="요약.",
    credit="기사제공처: wire",
    rule="auto",
    rights="무단 전재 및 재배포 금지",
    categories=("경제",),
)


def test_rss_and_atom_made_from_shared_entries_keep_to_their_own_fields() -> None:
    """Atom's summary must not turn into RSS's description, nor RSS's source into Atom's."""
    output = OutputConfig(title="모음", link="https://agg.example/")
    docs = dict(
        feeds([_ITEM], output, T0, ("feed.xml", Extras()), ("atom.xml", Extras(archive=True)))
    )
    item = etree.fromstring(docs["feed.xml"]).find("channel/item")
    assert item.findtext("description") == _ITEM.content_html  # the body, not the summary
    assert item.find("{http://purl.org/rss/1.0/modules/content/}encoded") is None
    assert item.find("source").get("url") == _ITEM.source_url
    assert [child.tag.rsplit("}")[-1] for child in item][-4:] == [
        "pubDate",
        "source",
        "creator",
        "rights",
    ]
    entry = etree.fromstring(docs["atom.xml"]).find(f"{{{ATOM_NS}}}entry")
    sources = entry.findall(f"{{{ATOM_NS}}}source")
    assert len(sources) == 1 and sources[0].findtext(f"{{{ATOM_NS}}}id") == _ITEM.source_url
    assert entry.findtext(f"{{{ATOM_NS}}}summary") == "요약."
    assert entry.find("{http://purl.org/dc/elements/1.1/}creator") is None


def test_xml_safe_returns_a_clean_item_as_it_is() -> None:
    assert xml_safe(_ITEM) is _ITEM
    dirty = xml_safe(replace(_ITEM, categories=("a\x0bb",)))
    assert dirty.categories == ("ab",) and dirty.title == _ITEM.title


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_gives_the_collector_back_as_it_was(enabled: bool) -> None:
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


class _CountingStore(Store):
    """The real store, counting its rankings and the stories read per call."""

    rankings: list[int | None]
    reads: list[int]

    def story_ids(
        self,
        feed_names: Sequence[str],
        limit: int | None = None,
        *,
        guids: Sequence[str] | None = None,
    ) -> list[int]:
        self.rankings.append(limit)
        return super().story_ids(feed_names, limit, guids=guids)

    def story_members(self, ids: Sequence[int]) -> list[list[StoredItem]]:
        self.reads.append(len(ids))
        return super().story_members(ids)


def test_publishing_reads_the_store_in_pages_and_ranks_everything_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A steady publish ranks only the newest `limit` stories; a catch-up ranks every story
    once more and reads their entries a bounded page at a time, each story once, in order."""
    monkeypatch.setattr(pipeline, "PUBLISH_PAGE", 7)
    store = _CountingStore(f"sqlite:///{tmp_path / 'test.db'}")
    store.rankings, store.reads = [], []
    try:
        save(store, "a", *(entry(str(i), published=T0 - timedelta(hours=i)) for i in range(30)))
        config = Config.model_validate(
            {
                "output": {"dir": str(tmp_path / "out"), "link": "https://x.example/", "limit": 5},
                "feeds": [{"name": "a", "url": "https://a.example/rss", "author": "기자"}],
            }
        )
        stream = pipeline.collect_items(config, store)
        newest = [next(stream) for _ in range(5)]
        assert store.rankings == [5] and store.reads == [5]
        rest = list(stream)
        assert store.rankings == [5, None] and store.reads == [5, 7, 7, 7, 4]
        everything = store.latest_clusters(["a"], 100)
        assert [i.guid for i in newest + rest] == [c[0].cluster_guid for c in everything]
    finally:
        store.close()
