"""Parse stage: what a reader of the merged feed would see from each kind of provider feed.

Fixtures live in tests/data/parse/; the non-UTF-8 ones are written by make_fixtures.py there.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aggregator.models import ParsedFeed
from aggregator.parse import ParseError, decode, parse_date, parse_feed

DATA = Path(__file__).parent / "data" / "parse"
NOW = datetime(2025, 10, 17, 12, 0, tzinfo=UTC)
SEOUL = ZoneInfo("Asia/Seoul")
KO_URL = "http://www.koreaitnews.example/rss/allArticle.xml"
KO_TITLE = "'똠방각하' 햏·뷁 신조어, 국립국어원 사전 등재 검토"
CREDIT = "RSS피드 기사제공처 : 한국IT산업뉴스 / 등록기자: 김유미 문화부"


def load(name: str, *, url: str = KO_URL, content_type: str | None = None, **kw: Any) -> ParsedFeed:
    return parse_feed((DATA / name).read_bytes(), url=url, content_type=content_type, now=NOW, **kw)


def rss(items: str, channel: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>T</title><link>https://ex.example/</link>{channel}{items}</channel></rss>"
    ).encode()


def one(items: str, channel: str = "", **kw: Any) -> Any:
    feed = parse_feed(rss(items, channel), url="https://ex.example/feed.xml", now=NOW, **kw)
    assert len(feed.entries) == 1
    return feed.entries[0]


# --- 1. hostile XML -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "entity_billion_laughs.xml",
        "entity_quadratic.xml",
        "entity_external_system.xml",
        "entity_lowercase.xml",  # <!doctype / <!entity: expat rejects it, feedparser would not
        "entity_hidden_by_comment.xml",  # a decoy "]>" inside a comment
        "entity_utf16.xml",
    ],
)
def test_documents_declaring_entities_are_refused_before_feedparser_sees_them(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*_: object, **__: object) -> None:
        raise AssertionError("feedparser must not see a document that declares entities")

    monkeypatch.setattr("aggregator.parse.feedparser.parse", never)
    with pytest.raises(ParseError, match=r"declares XML entities.*refused"):
        load(name)


def test_quadratic_blowup_is_refused_fast() -> None:
    # One 30 KB entity referenced 20,000 times: 27 s and 2.4 GB inside feedparser.
    started = time.perf_counter()
    with pytest.raises(ParseError):
        load("entity_quadratic.xml")
    assert time.perf_counter() - started < 0.5


def test_harmless_doctype_of_rss_091_still_parses() -> None:
    feed = load("rss091_netscape_doctype.xml", url="http://oldschool.example.com/rss.xml")
    assert feed.title == "Old School News"
    assert feed.rights == "Copyright 2001, Old School"
    assert [e.title for e in feed.entries] == ["Still here"]


def test_entity_declaration_quoted_inside_cdata_is_article_text_not_an_attack() -> None:
    feed = load("entity_text_in_cdata.xml", url="https://sec.example.org/rss")
    assert feed.entries[0].title == "How XXE works"


def test_body_that_names_a_local_file_is_not_read_from_disk() -> None:
    # feedparser.parse(bytes) first tries open(bytes): a body "/path/feed.xml" would read it.
    path = str(DATA / "rss091_netscape_doctype.xml").encode()
    with pytest.raises(ParseError, match="not a feed"):
        parse_feed(path, url="https://ex.example/feed.xml", now=NOW)


# --- 2. encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("ko_euckr.xml", "application/rss+xml"),  # CP949-only syllables labelled euc-kr
        ("ko_euckr.xml", "text/xml; charset=EUC-KR"),
        ("ko_ks_c_5601.xml", None),
        ("ko_windows949.xml", "text/xml"),  # a label Python does not know
        ("ko_utf8_declared_euckr.xml", "text/xml; charset=euc-kr"),  # the bytes win
        ("ko_no_label.xml", "text/xml"),  # no charset, no declaration
        ("ko_blank_lines.xml", "text/xml"),
        ("ko_bom_utf8.xml", "text/xml; charset=euc-kr"),  # BOM beats the header
        ("ko_utf16.xml", None),
    ],
)
def test_korean_feed_decodes_to_exact_text(name: str, content_type: str | None) -> None:
    feed = load(name, content_type=content_type)
    assert feed.title == "한국IT산업뉴스"
    assert feed.rights == "무단 전재 및 재배포 금지"
    assert [e.title for e in feed.entries[:2]] == [
        KO_TITLE,
        "중소 SW기업 10곳 중 4곳 “AI 도입 검토”",
    ]
    assert CREDIT in feed.entries[0].summary_html
    assert "\ufffd" not in feed.entries[0].summary_html
    assert not feed.warnings


def test_one_truncated_character_costs_one_replacement_character_not_the_document() -> None:
    feed = load("ko_truncated_char.xml", content_type="text/xml")
    assert feed.entries[0].title == KO_TITLE
    assert feed.entries[0].summary_html.count("\ufffd") == 1
    assert "인터넷 신조어\ufffd ‘햏’과 ‘뷁’이" in feed.entries[0].summary_html


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("café".encode("latin-1"), "text/xml; charset=iso-8859-1", "café"),
        # the HTTP charset is consulted before the XML declaration
        (b'<?xml version="1.0" encoding="euc-kr"?>\xb0\xa1', "text/xml; charset=latin1", "°¡"),
        (b"caf\xe9 \x80", None, "café €"),  # not UTF-8, not CP949: windows-1252
        ("뷁".encode("cp949"), "text/plain; charset=x-windows-949", "뷁"),
        ("똠".encode("cp949"), "text/xml; charset=ks_c_5601-1989", "똠"),
        ("햏".encode(), "text/xml; charset=euc-kr", "햏"),
        (b"\xef\xbb\xbfplain", None, "plain"),
    ],
)
def test_decode(body: bytes, content_type: str | None, expected: str) -> None:
    assert decode(body, content_type).rpartition("?>")[2] == expected


# --- 3. sloppy XML and things that are not feeds -------------------------------------------


def test_sloppy_xml_still_comes_through_with_a_warning() -> None:
    feed = load("sloppy_unescaped_amp.xml", url="https://sloppy.example.com/rss")
    assert feed.title == "Tom & Jerry's Weekly"
    entry = feed.entries[0]
    assert entry.title == "Salt & Pepper: a review"
    assert entry.link == "https://sloppy.example.com/salt-pepper?a=1&b=2"
    assert entry.summary_html.startswith("Fish &amp; chips<br>")
    assert any(w.startswith("sloppy XML") for w in feed.warnings)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ((DATA / "not_a_feed.html").read_bytes(), "text/html; charset=utf-8", "(got text/html)"),
        ((DATA / "garbage.bin").read_bytes(), "application/octet-stream", "not a feed"),
        (b"", "application/rss+xml", "empty body"),
        (b"\n  \n", None, "empty body"),
        (b'<?xml version="1.0"?><config><item/></config>', "text/xml", "no RSS/Atom/JSON Feed"),
    ],
)
def test_documents_without_a_feed_are_refused_with_a_clear_reason(
    body: bytes, content_type: str | None, message: str
) -> None:
    with pytest.raises(ParseError, match="not a feed") as caught:
        parse_feed(body, url="https://ex.example/", content_type=content_type, now=NOW)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_empty_but_valid_channel_is_a_feed_with_no_entries() -> None:
    feed = parse_feed(rss(""), url="https://ex.example/feed.xml", now=NOW)
    assert feed.title == "T"
    assert feed.entries == ()


# --- 4. JSON Feed ---------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/feed+json", "application/json", None])
def test_json_feed_11_maps_onto_the_same_model(content_type: str | None) -> None:
    feed = load(
        "jsonfeed_11.json", url="https://notes.example.kr/feed.json", content_type=content_type
    )
    assert (feed.title, feed.link, feed.language, feed.author) == (
        "개발 노트",
        "https://notes.example.kr/",
        "ko-KR",
        "정하늘",
    )
    first, second = feed.entries
    assert first.key == first.guid == "https://notes.example.kr/posts/jsonfeed"
    assert first.link == "https://notes.example.kr/posts/jsonfeed"
    assert first.title == "JSON Feed 1.1 정리"
    assert first.author == "정하늘"
    assert first.published == datetime(2025, 10, 16, 10, 58, tzinfo=UTC)
    assert first.updated == datetime(2025, 10, 17, 0, 5, tzinfo=UTC)
    assert first.content_html == (
        '<p>본문과 <a href="https://notes.example.kr/tags/feed" rel="noopener noreferrer">'
        "태그 링크</a></p>"
    )
    assert first.summary_html == "요약에 든 &lt;b&gt;는 글자일 뿐"  # summary is plain text
    assert first.categories == ("feed", "json")
    # numeric id, content_text only, no title, zone-less date read in Seoul (language ko-KR)
    assert second.key == "42"
    assert second.title == "제목 없이 올린 짧은 메모입니다. 두 번째 줄."
    assert second.content_html == "제목 없이 올린 짧은 메모입니다.\n두 번째 줄."
    assert second.published == datetime(2025, 10, 16, 10, 58, tzinfo=UTC)


def test_json_feed_10_single_author() -> None:
    feed = load("jsonfeed_10.json", url="https://daring.example.com/feed.json")
    assert feed.author == "J. Example"
    entry = feed.entries[0]
    assert (entry.key, entry.author) == ("post-1", "Guest Writer")
    assert entry.content_html == "Plain text with &lt;angle&gt; brackets &amp; ampersands."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ((DATA / "jsonfeed_invalid.json").read_bytes(), "invalid JSON Feed"),
        (b'{"title": "no version", "items": []}', "JSON without a https://jsonfeed.org"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', "'items' is not a list"),
    ],
)
def test_broken_json_feed_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_feed(body, url="https://ex.example/", content_type="application/feed+json")


# --- 5. titles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title_xml", "expected"),
    [
        ("&lt;b&gt;Bold&lt;/b&gt; &amp; co", "Bold & co"),
        ("<![CDATA[<b>Bold</b> &amp; co]]>", "Bold & co"),
        ("AT&amp;amp;T", "AT&T"),  # RSS titles are de facto HTML: resolved exactly once
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("A &lt; B", "A < B"),
        ("  Multi\n   line\ttitle  ", "Multi line title"),
        ("<![CDATA[<script>alert(1)</script>Safe <i>headline</i>]]>", "Safe headline"),
        ("&#48708;&#53944;&#53076;&#51064; 5% &#54616;&#46973;", "비트코인 5% 하락"),
    ],
)
def test_rss_titles_are_plain_text(title_xml: str, expected: str) -> None:
    assert one(f"<item><title>{title_xml}</title><guid>g</guid></item>").title == expected


def test_atom_titles_follow_their_declared_type() -> None:
    feed = load("atom_blog_cc_by.xml", url="https://blog.example.org/atom.xml")
    assert feed.entries[0].title == "Parsing feeds & staying sane"  # type="html"
    atom = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title>'
        "<entry><id>e1</id><title>Escaping AT&amp;amp;T in HTML</title></entry></feed>"
    )
    entry = parse_feed(atom.encode(), url="https://ex.example/atom", now=NOW).entries[0]
    assert entry.title == "Escaping AT&amp;T in HTML"  # type="text": the value is literal


def test_untitled_entries_borrow_their_text_or_say_untitled() -> None:
    long_text = "가나다라마바사 " * 20
    entry = one(
        f"<item><guid>1</guid><description>&lt;p&gt;{long_text}&lt;/p&gt;</description></item>"
    )
    assert entry.title.endswith("…")
    assert len(entry.title) <= 81
    assert entry.title.startswith("가나다라마바사 가나다라마바사")
    assert one("<item><guid>2</guid><title> </title></item>").title == "(untitled)"
    assert load("ko_euckr.xml").entries[2].title == (
        "제목 없이 송고된 단신입니다. 데이터센터 전력 수요가 계속 늘고 있다."
    )


# --- 6. HTML sanitising and URLs ------------------------------------------------------------


def test_script_injection_is_removed_and_text_kept() -> None:
    feed = load("xss_injection.xml", url="https://hostile.example.net/rss.xml")
    entry = feed.entries[0]
    html = entry.summary_html
    for bad in ("<script", "onerror", "onclick", "onload", "javascript:", "<svg", "<iframe",
                "<style", "<form", "<input", "data:", "evil.example", "alert("):  # fmt: skip
        assert bad not in html, bad
    for kept in ("Intro text.", "click me", "related story", "Closing text.", 'alt="photo"'):
        assert kept in html
    assert entry.title == "Safe headline"
    assert entry.link == "https://hostile.example.net/stories/42"
    # relative URLs resolved against the entry link, links opened safely
    assert '<img src="https://hostile.example.net/img/a.png" alt="photo">' in html
    assert (
        '<a href="https://hostile.example.net/stories/related/43" rel="noopener noreferrer">'
        in html
    )


def test_relative_links_and_images_are_made_absolute() -> None:
    ko = load("ko_euckr.xml").entries[0]
    assert ko.link == "http://www.koreaitnews.example/news/articleView.html?idxno=1001"
    assert 'src="http://www.koreaitnews.example/news/photo/202510/1001_1.jpg"' in ko.summary_html

    first, second = load("atom_blog_cc_by.xml", url="https://blog.example.org/atom.xml").entries
    assert first.link == "https://blog.example.org/2025/10/parsing-feeds"
    assert 'href="https://blog.example.org/2025/notes/encoding"' in first.content_html
    assert 'src="https://blog.example.org/2025/10/img/diagram.png"' in first.content_html
    assert "<figure>" in first.content_html and "<figcaption>" in first.content_html
    # xml:base on the entry is the base for both its link and its content
    assert second.link == "https://cdn.example.org/mirror/posts/guest"
    assert 'href="https://cdn.example.org/about"' in second.content_html


def test_plain_text_summary_is_escaped_not_interpreted() -> None:
    entry = load("atom_blog_cc_by.xml", url="https://blog.example.org/atom.xml").entries[0]
    assert entry.summary_html == "Why &lt;b&gt; in a plain summary is text, not markup."


def test_content_encoded_alone_is_not_duplicated_into_summary() -> None:
    entry = one(
        "<item><guid>c</guid><content:encoded><![CDATA[<p>full text</p>]]></content:encoded></item>"
    )
    assert (entry.content_html, entry.summary_html) == ("<p>full text</p>", "")


def test_the_lines_where_a_rights_notice_may_stand_are_taken_while_parsing() -> None:
    entry = one(
        "<item><guid>n</guid><description><![CDATA[<p>금리를 동결했다.</p>"
        "<p>&lt;저작권자 &copy; 한국IT산업뉴스, 무단 전재 및 재배포금지&gt;</p>]]></description>"
        "<content:encoded><![CDATA[<p>본문만 있다.</p>]]></content:encoded></item>"
    )
    assert entry.notice_lines == ("<저작권자 © 한국IT산업뉴스, 무단 전재 및 재배포금지>",)


# --- 7. dates -------------------------------------------------------------------------------


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "default_tz", "expected"),
    [
        # RFC 822 / 2822
        ("Thu, 16 Oct 2025 19:58:00 +0900", UTC, utc(2025, 10, 16, 10, 58)),
        ("Thu, 16 Oct 2025 19:58:00 KST", UTC, utc(2025, 10, 16, 10, 58)),
        ("Thu, 16 Oct 2025 10:58:00 GMT", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("Thu, 16 Oct 2025 06:58:00 EDT", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("Thu, 16 Oct 2025 03:58:00 PDT", UTC, utc(2025, 10, 16, 10, 58)),
        ("Thu, 16 Oct 2025 10:58:00 Z", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("16 Oct 2025 19:58 KST", UTC, utc(2025, 10, 16, 10, 58)),
        ("Oct 16, 2025 7:58 PM +0900", UTC, utc(2025, 10, 16, 10, 58)),
        ("Thu, 16 Oct 2025 19:58:00", SEOUL, utc(2025, 10, 16, 10, 58)),  # no zone
        ("Thu, 16 Oct 2025 10:58:00 -0000", SEOUL, utc(2025, 10, 16, 10, 58)),
        # ISO 8601 / RFC 3339
        ("2025-10-16T19:58:00+09:00", UTC, utc(2025, 10, 16, 10, 58)),
        ("2025-10-16T10:58:00Z", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("2025-10-16t10:58:00.123456z", SEOUL, utc(2025, 10, 16, 10, 58, 0, 123456)),
        ("2025-10-16 19:58:00+0900", UTC, utc(2025, 10, 16, 10, 58)),
        ("2025-10-16T19:58", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("2025-10-16", SEOUL, utc(2025, 10, 15, 15, 0)),
        ("2025-10-17 09:05:00", SEOUL, utc(2025, 10, 17, 0, 5)),
        ("2025-10-17 09:05:00", UTC, utc(2025, 10, 17, 9, 5)),
        # Korean CMS forms
        ("2025.10.16 19:58", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("2025.10.16", SEOUL, utc(2025, 10, 15, 15, 0)),
        ("2025/10/16 19:58", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("2025. 10. 16. 19:58:30", SEOUL, utc(2025, 10, 16, 10, 58, 30)),
        ("2025.10.16(목) 19:58", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("2025년 10월 16일 19:58", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("2025년 10월 16일 오후 7:58", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("2025년 10월 16일 오전 12:30", SEOUL, utc(2025, 10, 15, 15, 30)),
        ("2025년 10월 16일 오후 12:30", SEOUL, utc(2025, 10, 16, 3, 30)),
        ("2025-10-16 오후 7:58:00", SEOUL, utc(2025, 10, 16, 10, 58)),
        ("2025-10-16 오전 9:05:00", SEOUL, utc(2025, 10, 16, 0, 5)),
        ("2025.10.16 19:58 KST", UTC, utc(2025, 10, 16, 10, 58)),
        ("2025/10/16 7:58 PM", SEOUL, utc(2025, 10, 16, 10, 58)),
        # unparseable
        ("sometime last week", UTC, None),
        ("2025.13.45 19:58", SEOUL, None),
        ("", UTC, None),
        (None, UTC, None),
    ],
)
def test_parse_date(raw: str | None, default_tz: tzinfo, expected: datetime | None) -> None:
    result = parse_date(raw, default_tz)
    assert result == expected
    if result is not None:
        assert result.tzinfo is UTC


def test_zone_less_dates_follow_feed_language_unless_the_operator_says_otherwise() -> None:
    ko = load("ko_euckr.xml")  # <language>ko</language>
    assert [e.published for e in ko.entries] == [
        utc(2025, 10, 16, 10, 58),  # 2025.10.16 19:58
        utc(2025, 10, 16, 10, 58),  # 2025년 10월 16일 오후 7:58
        utc(2025, 10, 17, 0, 5),  # 2025-10-17 09:05:00
    ]
    en = load("dates_edge.xml", url="https://dates.example.com/rss")  # en-us -> UTC
    assert en.entries[3].published == utc(2025, 10, 16, 19, 58)
    overridden = load("ko_euckr.xml", timezone="UTC")
    assert overridden.entries[0].published == utc(2025, 10, 16, 19, 58)
    rdf = load("rss10_rdf.xml", url="https://science.example.kr/rss")  # dc:language ko
    assert rdf.entries[1].published == utc(2025, 10, 17, 0, 5)


def test_post_dated_entries_are_clamped_and_unreadable_dates_reported() -> None:
    feed = load("dates_edge.xml", url="https://dates.example.com/rss")
    future, near, garbled = feed.entries[:3]
    assert future.published == future.updated == NOW
    assert near.published == NOW + timedelta(minutes=5)  # within the 10-minute slack
    assert garbled.published is None
    assert any("future date" in w and "2026" in w for w in feed.warnings)
    assert any("unparseable date 'sometime last week'" in w for w in feed.warnings)


def test_dc_date_alone_fills_published() -> None:
    entry = load("rss10_rdf.xml", url="https://science.example.kr/rss").entries[0]
    assert entry.published == entry.updated == utc(2025, 10, 16, 10, 58)


# --- 8. identity, authors, rights and licences ---------------------------------------------


def test_entry_key_is_guid_then_link_then_content_hash() -> None:
    entries = load("ko_euckr.xml").entries
    assert entries[0].key == entries[0].link  # no guid
    assert entries[0].guid is None
    assert entries[1].key == entries[1].guid == "koreaitnews-1002"
    assert entries[2].key.startswith("sha256:") and len(entries[2].key) == 7 + 64
    assert entries[2].link is None
    assert load("ko_euckr.xml").entries[2].key == entries[2].key  # stable


def test_guid_is_kept_verbatim_and_a_non_url_permalink_guid_is_not_a_link() -> None:
    entry = one("<item><title>n</title><guid>  123456 </guid></item>")
    assert (entry.key, entry.guid, entry.link) == ("123456", "123456", None)
    entry = one("<item><title>u</title><guid>https://ex.example/p/1</guid></item>")
    assert entry.link == "https://ex.example/p/1"


@pytest.mark.parametrize(
    ("author_xml", "expected"),
    [
        ("<author>reporter@x.com (Kim)</author>", "Kim"),
        ("<author>kym@koreaitnews.example (김유미)</author>", "김유미"),
        ("<author>김유미 기자 (kym@news.example.kr)</author>", "김유미 기자"),
        ("<author>Kim Minsu &lt;kim@x.com&gt;</author>", "Kim Minsu"),
        ("<author>desk@yna.example.kr</author>", None),
        ("<dc:creator>박정훈</dc:creator>", "박정훈"),
    ],
)
def test_author_names_without_email_addresses(author_xml: str, expected: str | None) -> None:
    entry = one(
        f'<item xmlns:dc="http://purl.org/dc/elements/1.1/"><guid>a</guid>{author_xml}</item>'
    )
    assert entry.author == expected


def test_korean_feed_level_facts() -> None:
    feed = load("ko_euckr.xml")
    assert feed.link == "http://www.koreaitnews.example/"
    assert feed.language == "ko"
    assert feed.rights == "무단 전재 및 재배포 금지"
    assert feed.author == "한국IT산업뉴스 편집국"  # managingEditor without its address
    assert feed.ttl == 60
    assert feed.license is None
    first = feed.entries[0]
    assert (first.author, first.categories) == ("김유미", ("문화", "IT"))
    assert first.summary_html.endswith(f"<p>{CREDIT}</p>")


def test_atom_blog_licence_and_rights() -> None:
    feed = load("atom_blog_cc_by.xml", url="https://blog.example.org/atom.xml")
    assert feed.title == "Lee's Notes"
    assert feed.link == "https://blog.example.org/"
    assert feed.language == "en"
    assert feed.license == "https://creativecommons.org/licenses/by/4.0/"
    assert feed.rights == "© 2025 Lee Minji. Licensed under CC BY 4.0."
    assert feed.author == "Lee Minji"
    first, second = feed.entries
    assert first.categories == ("python", "feeds")
    assert (first.rights, first.license) == (None, None)
    assert second.rights == "© 2025 Park Jiwoo, all rights reserved"
    assert second.license == "https://creativecommons.org/licenses/by-nd/4.0/"
    assert second.author == "Park Jiwoo"


def test_rss_10_rdf_feed() -> None:
    feed = load("rss10_rdf.xml", url="https://science.example.kr/rss")
    assert (feed.title, feed.language, feed.rights) == ("과학기술 소식", "ko", "공공누리 제1유형")
    assert feed.license == "https://www.kogl.or.kr/info/licenseType1.do"  # cc:license
    entry = feed.entries[0]
    assert entry.key == entry.link == "https://science.example.kr/press/501"  # rdf:about
    assert (entry.title, entry.author, entry.categories) == (
        "차세대 위성 발사 일정 확정",
        "우주항공과",
        ("우주",),
    )


def test_entry_rights_and_licences_from_the_common_namespaces() -> None:
    ns = (
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:media="http://search.yahoo.com/mrss/" '
        'xmlns:creativeCommons="http://backend.userland.com/creativeCommonsRssModule"'
    )
    cc = one(
        f"<item {ns}><guid>1</guid><dc:rights>ⓒ 연합뉴스</dc:rights><creativeCommons:license>"
        "http://creativecommons.org/licenses/by/4.0/</creativeCommons:license></item>"
    )
    assert (cc.rights, cc.license) == ("ⓒ 연합뉴스", "http://creativecommons.org/licenses/by/4.0/")
    media = one(
        f"<item {ns}><guid>2</guid><media:copyright>ⓒ 뉴스1</media:copyright>"
        '<media:license href="https://example.kr/terms">이용약관</media:license></item>'
    )
    assert (media.rights, media.license) == ("ⓒ 뉴스1", "https://example.kr/terms")
    dcterms = one(
        f"<item {ns}><guid>3</guid><dcterms:rights>재판매 및 DB 금지</dcterms:rights></item>"
    )
    assert dcterms.rights == "재판매 및 DB 금지"
