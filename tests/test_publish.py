"""Publish stage: what readers of feed.xml, atom.xml, feed.json and index.html receive."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import feedparser
import jsonschema
import lxml.html
import pytest
from lxml import etree

from aggregator.config import OutputConfig
from aggregator.models import PublishedItem
from aggregator.publish import DEFAULT_RIGHTS, publish, write_atomic

DATA = Path(__file__).parent / "data" / "publish"
ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
NOW = datetime(2025, 10, 17, 3, 0, tzinfo=UTC)
T0 = datetime(2025, 10, 16, 10, 58, tzinfo=UTC)
NOTICE = "무단 전재 및 재배포 금지"

OUTPUT = OutputConfig(
    title="뉴스 모음",
    link="https://agg.example.org/",
    base_url="https://cdn.example.org/news/",
    rights="Compilation © 2025 Example",
)

ITEMS = (
    PublishedItem(
        guid="urn:uuid:6f1c1c62-3c0e-4d4f-9a0e-000000000001",
        title="한국은행, 기준금리 동결",
        link="https://news.example.kr/article/1001",
        provider="예시뉴스",
        source_url="https://news.example.kr/rss/economy.xml",
        provider_link="https://news.example.kr/",
        author="김기자",
        published=T0,
        updated=T0 + timedelta(hours=2),
        level="full",
        content_html=(
            "<p>한국은행이 기준금리를 연 2.50%로 동결했다.</p>"
            '<p class="credit">출처: <a href="https://news.example.kr/article/1001">예시뉴스</a></p>'
        ),
        summary_text="한국은행이 기준금리를 동결했다.",
        credit="출처: 예시뉴스",
        rule="config:full",
        categories=("경제", "금융"),
        also=(("다른일보", "https://other.example.kr/a/77"), ("KBS", "https://kbs.example/n/5")),
    ),
    PublishedItem(
        guid="urn:uuid:6f1c1c62-3c0e-4d4f-9a0e-000000000002",
        title="서울 아파트값 상승세 둔화",
        link="https://daily.example.kr/view?id=2002&sec=econ",
        provider="예시일보",
        source_url="https://daily.example.kr/rss",
        provider_link="https://daily.example.kr/",
        author="이기자",
        published=T0 - timedelta(hours=1),
        updated=T0 - timedelta(hours=1),
        level="summary",
        content_html=(
            "<p>서울 아파트값 상승세가 3주 연속 둔화했다…</p>"
            f'<p class="credit">출처: 예시일보 · {NOTICE}</p>'
        ),
        summary_text="서울 아파트값 상승세가 3주 연속 둔화했다…",
        credit="출처: 예시일보",
        rule="notice:no-redistribution",
        rights=NOTICE,
    ),
    PublishedItem(
        guid="urn:uuid:6f1c1c62-3c0e-4d4f-9a0e-000000000003",
        title="Q&A: why <script> & \"quotes\" > 'apostrophes' matter",
        link="https://blog.example.com/2025/10/q-a?utm=1&x=2",
        provider="Example Blog",
        source_url="https://blog.example.com/feed.atom",
        author="Jane Doe",
        published=T0 - timedelta(days=1),
        updated=T0 - timedelta(hours=20),
        level="full",
        content_html="<p>Use &amp;amp; and &lt;tags&gt; carefully.</p><p>Source: Example Blog</p>",
        summary_text="",
        credit="Source: Example Blog",
        rule="licence:cc-by",
        rights="CC BY 4.0",
        categories=("html",),
    ),
    PublishedItem(
        guid="urn:uuid:6f1c1c62-3c0e-4d4f-9a0e-000000000004",
        title="정부 보도자료: 인사 발령",
        link="https://gov.example.go.kr/press/4",
        provider="예시부",
        source_url="https://gov.example.go.kr/rss.xml",
        author="",
        published=T0 - timedelta(days=2),
        updated=T0 - timedelta(days=2),
        level="title",
        content_html='<p class="credit">출처: 예시부</p>',
        summary_text="",
        credit="출처: 예시부",
        rule="config:title",
    ),
)


def _published(tmp_path: Path, items: tuple[PublishedItem, ...] = ITEMS) -> Path:
    publish(items, OUTPUT, tmp_path, now=NOW)
    return tmp_path


def _xml(path: Path) -> Any:
    return etree.fromstring(path.read_bytes())


def _by_id(elements: list[Any], key: str) -> dict[str, Any]:
    return {el.findtext(key): el for el in elements}


def test_publish_writes_all_files_and_reports_them(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    written = publish(ITEMS, OUTPUT, out, now=NOW)
    names = ["feed.xml", "atom.xml", "feed.json", "index.html", "_headers"]
    assert written == [out / name for name in names]
    assert all((out / name).stat().st_size > 0 for name in names)


def test_rss_channel_has_self_link_ttl_and_stable_build_date(tmp_path: Path) -> None:
    channel = _xml(_published(tmp_path) / "feed.xml").find("channel")
    assert channel.findtext("title") == OUTPUT.title
    assert channel.findtext("link") == OUTPUT.link  # not the self link
    assert channel.findtext("description") == "뉴스 모음 - merged feed"
    assert channel.findtext("language") == "ko"
    assert channel.findtext("copyright") == OUTPUT.rights
    assert channel.findtext("ttl") == "30"
    assert channel.findtext("generator")
    self_links = channel.findall(f"{ATOM}link[@rel='self']")
    assert [el.get("href") for el in self_links] == ["https://cdn.example.org/news/feed.xml"]
    # The newest item's update time, not the wall clock: unchanged items, unchanged bytes.
    assert parsedate_to_datetime(channel.findtext("lastBuildDate")) == ITEMS[0].updated


def test_rss_items_carry_guid_source_creator_rights_and_zoned_dates(tmp_path: Path) -> None:
    channel = _xml(_published(tmp_path) / "feed.xml").find("channel")
    rss_items = channel.findall("item")
    guids = [el.findtext("guid") for el in rss_items]
    assert guids == [i.guid for i in ITEMS]
    assert len(set(guids)) == len(guids)
    for item, el in zip(ITEMS, rss_items, strict=True):
        assert el.findtext("title") == item.title
        assert el.findtext("link") == item.link
        assert el.find("guid").get("isPermaLink") == "false"
        assert el.findtext("description") == item.content_html
        assert el.find("source").get("url") == item.source_url
        assert el.findtext("source") == item.provider
        assert el.findtext(f"{DC}creator") == (item.author or None)
        assert el.findtext(f"{DC}rights") == item.rights
        assert [c.text for c in el.findall("category")] == list(item.categories)
        assert el.find("author") is None
        pub = el.findtext("pubDate")
        assert re.search(r" [+-]\d{4}$", pub), pub
        assert parsedate_to_datetime(pub) == item.published


def test_atom_entries_carry_full_source_rights_and_content(tmp_path: Path) -> None:
    feed = _xml(_published(tmp_path) / "atom.xml")
    assert feed.findtext(f"{ATOM}id") == "https://cdn.example.org/news/atom.xml"
    assert feed.findtext(f"{ATOM}rights") == OUTPUT.rights
    assert feed.findtext(f"{ATOM}updated") == ITEMS[0].updated.isoformat()
    links = {el.get("rel"): el.get("href") for el in feed.findall(f"{ATOM}link")}
    assert links == {"self": "https://cdn.example.org/news/atom.xml", "alternate": OUTPUT.link}
    entries = feed.findall(f"{ATOM}entry")
    assert [el.findtext(f"{ATOM}id") for el in entries] == [i.guid for i in ITEMS]
    for item, el in zip(ITEMS, entries, strict=True):
        assert el.findtext(f"{ATOM}title") == item.title
        assert [a.get("href") for a in el.findall(f"{ATOM}link")] == [item.link]
        content = el.find(f"{ATOM}content")
        assert (content.get("type"), content.text) == ("html", item.content_html)
        assert el.findtext(f"{ATOM}summary") == (item.summary_text or None)
        assert el.findtext(f"{ATOM}rights") == item.rights
        assert el.findtext(f"{ATOM}published") == item.published.isoformat()
        assert el.findtext(f"{ATOM}updated") == item.updated.isoformat()
        assert all(RFC3339.match(el.findtext(f"{ATOM}{k}")) for k in ("published", "updated"))
        assert [c.get("term") for c in el.findall(f"{ATOM}category")] == list(item.categories)

        source = el.find(f"{ATOM}source")
        assert source.findtext(f"{ATOM}id") == item.source_url
        assert source.findtext(f"{ATOM}title") == item.provider
        assert source.findtext(f"{ATOM}updated") == item.updated.isoformat()
        assert source.findtext(f"{ATOM}rights") == item.rights
        alternate = source.find(f"{ATOM}link[@rel='alternate']").get("href")
        assert alternate == (item.provider_link or item.source_url)
        # Atom requires an author: the entry's own, else the provider via <source>.
        names = [n.text for n in el.iter(f"{ATOM}name")]
        assert names == [item.author or item.provider]


def test_json_feed_is_valid_and_carries_source_extension(tmp_path: Path) -> None:
    raw = (_published(tmp_path) / "feed.json").read_bytes()
    feed = json.loads(raw.decode("utf-8"))
    schema = json.loads((DATA / "jsonfeed-schema-v1.1.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    validator.validate(feed)
    assert "예시뉴스".encode() in raw  # ensure_ascii=False: readable UTF-8
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["home_page_url"] == OUTPUT.link
    assert feed["feed_url"] == "https://cdn.example.org/news/feed.json"
    assert feed["language"] == "ko"
    assert [i["id"] for i in feed["items"]] == [i.guid for i in ITEMS]
    for item, data in zip(ITEMS, feed["items"], strict=True):
        assert data["url"] == item.link
        assert data["title"] == item.title
        assert data["content_html"] == item.content_html
        assert data.get("summary") == (item.summary_text or None)
        assert data["date_published"] == item.published.isoformat()
        assert data["date_modified"] == item.updated.isoformat()
        assert RFC3339.match(data["date_published"]) and RFC3339.match(data["date_modified"])
        assert data.get("authors") == ([{"name": item.author}] if item.author else None)
        assert data.get("tags", []) == list(item.categories)
        assert data["_source"] == {
            "provider": item.provider,
            "url": item.provider_link,
            "feed_url": item.source_url,
            "rights": item.rights,
            "level": item.level,
            "also_reported_by": [{"provider": p, "url": u} for p, u in item.also],
        }


def test_body_is_exactly_content_html_in_every_format(tmp_path: Path) -> None:
    """The restricted item's body must not grow: no summary_text or provider text added."""
    out = _published(tmp_path)
    restricted = ITEMS[1]
    rss = _by_id(_xml(out / "feed.xml").find("channel").findall("item"), "guid")
    atom = _by_id(_xml(out / "atom.xml").findall(f"{ATOM}entry"), f"{ATOM}id")
    assert rss[restricted.guid].findtext("description") == restricted.content_html
    assert rss[restricted.guid].find("{http://purl.org/rss/1.0/modules/content/}encoded") is None
    assert atom[restricted.guid].findtext(f"{ATOM}content") == restricted.content_html
    json_items = json.loads((out / "feed.json").read_text(encoding="utf-8"))["items"]
    assert {i["id"]: i["content_html"] for i in json_items}[restricted.guid] == (
        restricted.content_html
    )
    page = (out / "index.html").read_text(encoding="utf-8")
    for item in ITEMS:
        assert f'<div class="body">{item.content_html}</div>' in page


@pytest.mark.parametrize("name", ["feed.xml", "atom.xml"])
def test_feedparser_reads_back_titles_links_and_ids(tmp_path: Path, name: str) -> None:
    parsed = feedparser.parse((_published(tmp_path) / name).read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    got = [(e.title, e.link, e.id) for e in parsed.entries]
    assert got == [(i.title, i.link, i.guid) for i in ITEMS]
    assert [e.source.get("title") for e in parsed.entries] == [i.provider for i in ITEMS]
    assert [e.get("rights") for e in parsed.entries] == [i.rights for i in ITEMS]


def test_index_html_escapes_titles_and_links_alternates(tmp_path: Path) -> None:
    page = (_published(tmp_path) / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert '<html lang="ko">' in page
    assert '<meta charset="utf-8">' in page
    assert 'name="viewport"' in page
    alternates = {
        el.get("type"): el.get("href")
        for el in lxml.html.fromstring(page).iterfind(".//head/link[@rel='alternate']")
    }
    assert alternates == {
        "application/rss+xml": "feed.xml",
        "application/atom+xml": "atom.xml",
        "application/feed+json": "feed.json",
    }
    assert "<script" not in page  # the title's "<script>" is text, and the page has no JS
    assert "Q&amp;A: why &lt;script&gt; &amp; &#34;quotes&#34;" in page
    assert 'href="https://daily.example.kr/view?id=2002&amp;sec=econ"' in page
    for item in ITEMS:
        assert item.provider in page
        assert item.author in page
    assert "Updated <time" in page and "2025-10-16 12:58 UTC" in page  # the newest update


def test_empty_item_list_gives_valid_files(tmp_path: Path) -> None:
    publish([], OUTPUT, tmp_path, now=NOW)
    channel = _xml(tmp_path / "feed.xml").find("channel")
    assert channel.findall("item") == []
    assert parsedate_to_datetime(channel.findtext("lastBuildDate")) == NOW
    assert _xml(tmp_path / "atom.xml").findall(f"{ATOM}entry") == []
    for name in ("feed.xml", "atom.xml"):
        assert not feedparser.parse((tmp_path / name).read_bytes()).bozo
    feed = json.loads((tmp_path / "feed.json").read_text(encoding="utf-8"))
    schema = json.loads((DATA / "jsonfeed-schema-v1.1.json").read_text(encoding="utf-8"))
    jsonschema.validate(feed, schema)
    assert feed["items"] == []
    assert "No items yet" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_xml_illegal_control_characters_do_not_stop_publishing(tmp_path: Path) -> None:
    dirty = replace(ITEMS[0], title="제목\x0b끝", content_html="<p>본문\x00</p>")
    publish([dirty], OUTPUT, tmp_path, now=NOW)
    assert _xml(tmp_path / "feed.xml").findtext("channel/item/title") == "제목끝"
    assert _xml(tmp_path / "atom.xml").findtext(f"{ATOM}entry/{ATOM}content") == "<p>본문</p>"
    json_item = json.loads((tmp_path / "feed.json").read_text(encoding="utf-8"))["items"][0]
    assert json_item["title"] == "제목\x0b끝"  # JSON can carry it; only XML cannot


def test_self_links_follow_home_page_without_base_url(tmp_path: Path) -> None:
    output = OutputConfig(title="T", link="https://example.org/news/", language="en")
    publish(ITEMS[:1], output, tmp_path, now=NOW)
    rss_self = _xml(tmp_path / "feed.xml").find(f"channel/{ATOM}link[@rel='self']")
    assert rss_self.get("href") == "https://example.org/news/feed.xml"
    atom = _xml(tmp_path / "atom.xml")
    assert atom.findtext(f"{ATOM}id") == "https://example.org/news/atom.xml"
    feed = json.loads((tmp_path / "feed.json").read_text(encoding="utf-8"))
    assert feed["feed_url"] == "https://example.org/news/feed.json"
    assert '<html lang="en">' in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_unchanged_items_are_not_rewritten(tmp_path: Path) -> None:
    assert len(publish(ITEMS, OUTPUT, tmp_path, now=NOW)) == 5
    assert publish(ITEMS, OUTPUT, tmp_path, now=NOW) == []
    # A later run changes nothing: every document, index.html too, is dated by its items.
    later = NOW + timedelta(minutes=30)
    assert publish(ITEMS, OUTPUT, tmp_path, now=later) == []
    changed = (replace(ITEMS[0], updated=later), *ITEMS[1:])
    written = {p.name for p in publish(changed, OUTPUT, tmp_path, now=later)}
    assert written == {"feed.xml", "atom.xml", "feed.json", "index.html"}
    assert "2025-10-17 03:30 UTC" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_output_is_deterministic(tmp_path: Path) -> None:
    publish(ITEMS, OUTPUT, tmp_path / "a", now=NOW)
    publish(ITEMS, OUTPUT, tmp_path / "b", now=NOW)
    for name in ("feed.xml", "atom.xml", "feed.json", "index.html", "_headers"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_failed_write_keeps_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(ITEMS[1:], OUTPUT, tmp_path, now=NOW)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        publish(ITEMS, OUTPUT, tmp_path, now=NOW)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_failed_fsync_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "feed.xml"
    target.write_bytes(b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        write_atomic(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["feed.xml"]
    assert target.read_bytes() == b"old"


def test_write_atomic_skips_identical_bytes_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "feed.json"
    assert write_atomic(target, b"{}") is True
    assert target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o640)
    assert write_atomic(target, b"{}") is False
    assert write_atomic(target, b"[]") is True
    assert target.read_bytes() == b"[]"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["feed.json"]


# --- the aggregate's own terms: rights statement and noindex --------------------------------------


@pytest.mark.parametrize(
    ("language", "rights", "expected"),
    [
        ("ko", "Compilation © 2025 Example", "Compilation © 2025 Example"),
        ("ko", None, DEFAULT_RIGHTS[True]),
        ("en", None, DEFAULT_RIGHTS[False]),
    ],
)
def test_every_format_carries_the_aggregate_rights_statement(
    tmp_path: Path, language: str, rights: str | None, expected: str
) -> None:
    output = OutputConfig(title="T", link="https://example.org/", language=language, rights=rights)
    publish(ITEMS, output, tmp_path, now=NOW)
    assert _xml(tmp_path / "feed.xml").findtext("channel/copyright") == expected
    assert _xml(tmp_path / "atom.xml").findtext(f"{ATOM}rights") == expected
    feed = json.loads((tmp_path / "feed.json").read_text(encoding="utf-8"))
    assert feed["_rights"] == {"statement": expected}
    page = lxml.html.fromstring((tmp_path / "index.html").read_bytes())
    assert page.findtext(".//footer/p[@class='rights']") == expected


def _robots(page_path: Path) -> list[str]:
    page = lxml.html.fromstring(page_path.read_bytes())
    return [str(el.get("content")) for el in page.iterfind(".//head/meta[@name='robots']")]


def test_noindex_item_marks_page_and_headers_and_clears_when_gone(tmp_path: Path) -> None:
    publish(ITEMS, OUTPUT, tmp_path, now=NOW)
    assert _robots(tmp_path / "index.html") == []
    headers = (tmp_path / "_headers").read_text(encoding="utf-8")
    assert "X-Robots-Tag" not in headers and headers.startswith("#")

    flagged = (replace(ITEMS[0], noindex=True), *ITEMS[1:])
    written = publish(flagged, OUTPUT, tmp_path, now=NOW)
    assert tmp_path / "_headers" in written and tmp_path / "index.html" in written
    assert _robots(tmp_path / "index.html") == ["noindex"]
    rules = [line for line in (tmp_path / "_headers").read_text().splitlines() if line[:1] != "#"]
    assert rules == [
        line
        for name in ("feed.xml", "atom.xml", "feed.json", "index.html", "")
        for line in (f"/news/{name}", "  X-Robots-Tag: noindex")
    ]
    feed = json.loads((tmp_path / "feed.json").read_text(encoding="utf-8"))
    assert feed["_rights"]["robots"] == "noindex"
    schema = json.loads((DATA / "jsonfeed-schema-v1.1.json").read_text(encoding="utf-8"))
    jsonschema.validate(feed, schema)

    publish(ITEMS, OUTPUT, tmp_path, now=NOW)  # the provider left: the request goes too
    assert _robots(tmp_path / "index.html") == []
    assert "X-Robots-Tag" not in (tmp_path / "_headers").read_text(encoding="utf-8")


def test_headers_paths_follow_the_home_page_without_base_url(tmp_path: Path) -> None:
    output = OutputConfig(title="T", link="https://example.org/")
    publish([replace(ITEMS[0], noindex=True)], output, tmp_path, now=NOW)
    assert "/feed.xml\n  X-Robots-Tag: noindex" in (tmp_path / "_headers").read_text()
