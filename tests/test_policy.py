"""Policy: redistribution levels, attribution and what readers may see (table-driven, no I/O)."""

from __future__ import annotations

import dataclasses
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.config import FeedConfig
from aggregator.models import StoredItem
from aggregator.parse import parse_feed
from aggregator.policy import build_item, decide, detect, excerpt, why_not
from aggregator.policy.rights import notice_lines

T0 = datetime(2025, 10, 16, 10, 0, tzinfo=UTC)
CC_BY = "https://creativecommons.org/licenses/by/4.0/"
YONHAP = "<저작권자(c) 연합뉴스, 무단 전재-재배포, AI 학습 및 활용 금지>"
KOGL_1 = '본 저작물은 "공공누리" 제1유형:출처표시 조건에 따라 이용할 수 있습니다.'
DATA = Path(__file__).parent / "data" / "policy"


def feed(name: str = "yonhap", **kw: Any) -> FeedConfig:
    return FeedConfig(name=name, url=f"https://{name}.example/rss", **kw)


def stored(feed_name: str = "yonhap", **kw: Any) -> StoredItem:
    values: dict[str, Any] = {
        "id": 1,
        "cluster_id": 7,
        "cluster_guid": "tag:agg.example,2025:story-7",
        "feed_name": feed_name,
        "feed_url": f"https://{feed_name}.example/rss",
        "key": "k1",
        "title": "기준금리 동결",
        "first_seen": T0,
        "link": f"https://{feed_name}.example/a/1",
        "author": "홍길동",
        "summary_html": "<p>한국은행이 기준금리를 동결했다.</p>",
        "feed_link": f"https://{feed_name}.example/",
    }
    values.update(kw)
    return StoredItem(**values)


# --- rights corpus: (feed_rights, feed_license, entry_rights, entry_license, body) -> level ---

CORPUS = [
    # permissive licences, by URL and by text
    ("cc-by-url", None, CC_BY, None, None, "", "full"),
    (
        "cc-by-sa-url-deed",
        None,
        "http://creativecommons.org/licenses/by-sa/4.0/deed.ko",
        None,
        None,
        "",
        "full",
    ),
    ("cc0-url", None, "https://creativecommons.org/publicdomain/zero/1.0/", None, None, "", "full"),
    (
        "pd-mark-url",
        None,
        "https://creativecommons.org/publicdomain/mark/1.0/",
        None,
        None,
        "",
        "full",
    ),
    ("cc-by-text", "CC BY 4.0", None, None, None, "", "full"),
    ("cc-by-sa-text", "CC-BY-SA", None, None, None, "", "full"),
    ("cc0-text", "CC0 1.0 Universal", None, None, None, "", "full"),
    (
        "cc-long-name",
        "Creative Commons Attribution 4.0 International",
        None,
        None,
        None,
        "",
        "full",
    ),
    ("kogl-0", "공공누리 제0유형", None, None, None, "", "full"),
    ("kogl-1", "공공누리 제1유형: 출처표시", None, None, None, "", "full"),
    ("kogl-type-1-en", "KOGL Type 1", None, None, None, "", "full"),
    ("kogl-1-url", None, "https://www.kogl.or.kr/info/licenseType1.do", None, None, "", "full"),
    (
        "copyright-plus-licence",
        "Copyright © 2025 Jane Doe. Licensed under CC BY 4.0",
        None,
        None,
        None,
        "",
        "full",
    ),
    (
        "holder-plus-kogl",
        "ⓒ 대한민국 정부",
        "https://www.kogl.or.kr/info/licenseType1.do",
        None,
        None,
        "",
        "full",
    ),
    # no derivatives / non-commercial -> title
    (
        "cc-by-nd-url",
        None,
        "https://creativecommons.org/licenses/by-nd/4.0/",
        None,
        None,
        "",
        "title",
    ),
    ("cc-by-nc-nd-text", "CC BY-NC-ND 4.0", None, None, None, "", "title"),
    (
        "cc-by-nc-url",
        None,
        "https://creativecommons.org/licenses/by-nc/2.0/kr/",
        None,
        None,
        "",
        "title",
    ),
    ("cc-by-nc-sa-text", "CC BY-NC-SA 4.0", None, None, None, "", "title"),
    ("cc-long-nd", "Creative Commons Attribution-NoDerivatives 4.0", None, None, None, "", "title"),
    ("kogl-2", "공공누리 제2유형", None, None, None, "", "title"),
    ("kogl-3", "공공누리 제3유형: 출처표시+변경금지", None, None, None, "", "title"),
    ("kogl-4-url", None, "https://www.kogl.or.kr/info/licenseType4.do", None, None, "", "title"),
    ("kogl-4-short", "KOGL 제4유형", None, None, None, "", "title"),
    # restrictive notices -> summary
    ("no-reprint-1", "무단 전재 및 재배포 금지", None, None, None, "", "summary"),
    ("no-reprint-2", "무단전재-재배포 금지", None, None, None, "", "summary"),
    ("no-reprint-3", "무단전재 및 재배포금지", None, None, None, "", "summary"),
    ("no-reprint-4", "무단전재·재배포 금지", None, None, None, "", "summary"),
    ("no-resale-db", "재판매 및 DB 금지", None, None, None, "", "summary"),
    ("no-ai", "AI 학습 및 활용 금지", None, None, None, "", "summary"),
    ("holder-ko", "저작권자 ⓒ 연합뉴스", None, None, None, "", "summary"),
    ("copyright-arr", "Copyright ⓒ 한국경제. All rights reserved", None, None, None, "", "summary"),
    ("copyright-sign", "Copyright © 2025 The Korea Herald", None, None, None, "", "summary"),
    ("copyright-c", "Copyright (c) 2025 Example Inc.", None, None, None, "", "summary"),
    ("bare-C-year", "(C) 2025 뉴시스", None, None, None, "", "summary"),
    ("arr-only", "All rights reserved.", None, None, None, "", "summary"),
    ("unrecognised", "Yonhap News Agency", None, None, None, "", "summary"),
    ("unknown-licence-url", None, "https://example.com/terms", None, None, "", "summary"),
    ("prose-in-rights-field", "저작권법 개정안이 국회를 통과했다", None, None, None, "", "summary"),
    ("empty", "", None, None, None, "", "summary"),
    ("nothing", None, None, None, None, "", "summary"),
    # conflicts within the feed fail closed
    ("arr-vs-cc", "All rights reserved", CC_BY, None, None, "", "summary"),
    ("cc-vs-nc", "CC BY-NC 4.0", CC_BY, None, None, "", "title"),
    # entry signals only restrict
    (
        "entry-body-notice",
        None,
        CC_BY,
        None,
        None,
        "<p>본문.</p><p>무단 전재 및 재배포 금지</p>",
        "summary",
    ),
    (
        "entry-yonhap-footer",
        None,
        CC_BY,
        None,
        None,
        "<p>본문.</p><p>&lt;저작권자(c) 연합뉴스, 무단 전재-재배포, AI 학습 및 활용 금지&gt;</p>",
        "summary",
    ),
    ("entry-holder", None, CC_BY, "ⓒ 홍길동", None, "", "summary"),
    ("entry-nd", None, CC_BY, None, "https://creativecommons.org/licenses/by-nd/4.0/", "", "title"),
    ("entry-arr", None, CC_BY, "All rights reserved", None, "", "summary"),
    (
        "entry-kogl-4-in-body",
        "공공누리 제1유형",
        None,
        None,
        None,
        "<p>공공누리 제4유형</p>",
        "title",
    ),
    ("entry-cannot-widen", "All rights reserved", None, None, CC_BY, "", "summary"),
    ("entry-cannot-widen-silent-feed", None, None, "CC BY 4.0", CC_BY, "", "summary"),
    # running prose that merely mentions copyright or licences is not a notice
    ("mention-law", None, CC_BY, None, None, "<p>저작권법 개정안이 국회를 통과했다.</p>", "full"),
    (
        "mention-cc",
        None,
        CC_BY,
        None,
        None,
        "<p>The court ruled on Creative Commons licences.</p>",
        "full",
    ),
    (
        "mention-phrase-in-sentence",
        None,
        CC_BY,
        None,
        None,
        "<p>신문협회는 무단 전재 및 재배포 금지를 요구했다.</p>",
        "full",
    ),
    (
        "mention-copyright-word",
        None,
        CC_BY,
        None,
        None,
        "<p>Copyright law reform and the (c) clause of the treaty.</p>",
        "full",
    ),
    (
        "mention-holder-word",
        None,
        CC_BY,
        None,
        None,
        "<p>저작권자의 동의 없이 쓸 수 없다는 판결</p>",
        "full",
    ),
    ("mention-kogl", None, CC_BY, None, None, "<p>공공누리 정책 설명회가 열렸다.</p>", "full"),
    (
        "mention-ai",
        None,
        CC_BY,
        None,
        None,
        "<p>AI 학습에 뉴스를 쓰는 문제가 논란이다.</p>",
        "full",
    ),
    # --- real-world variants added for issue 6 ---
    (
        "arr-foo-inc",
        "Copyright © 2025 Foo Inc. All rights reserved.",
        None,
        None,
        None,
        "",
        "summary",
    ),
    (
        "arr-hankyoreh-caps",
        "Copyright © Hankyoreh. All Rights Reserved.",
        None,
        None,
        None,
        "",
        "summary",
    ),
    ("yonhap-mark-no-space", "ⓒ연합뉴스", None, None, None, "", "summary"),
    ("yonhap-footer-field", YONHAP, None, None, None, "", "summary"),
    (
        "khan-footer",
        "<ⓒ경향신문(www.khan.co.kr), 무단전재 및 재배포 금지>",
        None,
        None,
        None,
        "",
        "summary",
    ),
    (
        "mk-ai-footer",
        "ⓒ 매일경제 & mk.co.kr, 무단 전재, 재배포 및 AI학습 이용 금지",
        None,
        None,
        None,
        "",
        "summary",
    ),
    ("news1-copy", "저작권자 © 뉴스1 무단복제 및 재배포 금지", None, None, None, "", "summary"),
    ("copyright-by", "Copyright by Yonhap", None, None, None, "", "summary"),
    ("some-rights-reserved", "Some rights reserved", None, None, None, "", "summary"),
    ("software-licence", "MIT License", None, None, None, "", "summary"),
    ("kogl-1-official-wording", KOGL_1, None, None, None, "", "full"),
    (
        "kogl-1-paren",
        "본 저작물은 공공누리 제1유형(출처표시)에 따라 이용할 수 있습니다.",
        None,
        None,
        None,
        "",
        "full",
    ),
    ("kogl-terms-1", "공공누리 공공저작물 자유이용허락 출처표시", None, None, None, "", "full"),
    ("kogl-terms-2", "공공누리 출처표시+상업용금지", None, None, None, "", "title"),
    ("kogl-terms-3", "공공누리 출처표시+변경금지", None, None, None, "", "title"),
    ("kogl-terms-4", "공공누리 출처표시-상업용금지-변경금지", None, None, None, "", "title"),
    ("kogl-en-long", "Korea Open Government License Type 1", None, None, None, "", "full"),
    ("public-domain-field", "Public Domain", None, None, None, "", "full"),
    ("public-domain-sentence", "This work is in the public domain.", None, None, None, "", "full"),
    (
        "public-domain-in-prose-field",
        "Public domain photos excluded",
        None,
        None,
        None,
        "",
        "summary",
    ),
    ("cc-lowercase", "cc-by 4.0", None, None, None, "", "full"),
    ("cc-legalcode-url", None, CC_BY + "legalcode.ko", None, None, "", "full"),
    (
        "media-label-noderivs",
        None,
        "Creative Commons Attribution-NoDerivs 3.0",
        None,
        None,
        "",
        "title",
    ),
    (
        "cc-nc-nd-kr-port",
        None,
        "http://creativecommons.org/licenses/by-nc-nd/2.0/kr/",
        None,
        None,
        "",
        "title",
    ),
    ("cc-sa-photos-excepted", "CC BY-SA 4.0 / 사진 제외", None, None, None, "", "full"),
    (
        "two-licences-stricter-wins",
        None,
        CC_BY + " https://creativecommons.org/licenses/by-nc/4.0/",
        None,
        None,
        "",
        "title",
    ),
    (
        "entry-statements-joined",
        None,
        CC_BY,
        "CC BY 4.0 / All rights reserved",
        None,
        "",
        "summary",
    ),
    ("entry-pd-cannot-widen", "All rights reserved", None, "Public Domain", None, "", "summary"),
    # tricky negatives: prose that mentions a notice, a mark or a licence
    (
        "mention-quoted-notice",
        None,
        CC_BY,
        None,
        None,
        "<p>소송에서 '무단 전재 및 재배포 금지' 문구가 쟁점이 됐다.</p>",
        "full",
    ),
    (
        "mention-arr-with-particle",
        None,
        CC_BY,
        None,
        None,
        "<p>All rights reserved라는 문구는 효력이 없다.</p>",
        "full",
    ),
    (
        "mention-copyright-holders",
        None,
        CC_BY,
        None,
        None,
        "<p>Copyright holders met in Seoul on Tuesday.</p>",
        "full",
    ),
    (
        "mention-public-domain",
        None,
        CC_BY,
        None,
        None,
        "<p>The public domain grows every January.</p>",
        "full",
    ),
    (
        "mention-db",
        None,
        CC_BY,
        None,
        None,
        "<p>재판매 시장이 커졌다. DB 금지 조항은 없다.</p>",
        "full",
    ),
    (
        "mention-ai-demand",
        None,
        CC_BY,
        None,
        None,
        "<p>AI 학습 금지를 요구하는 언론사들</p>",
        "full",
    ),
    ("mention-figure-c", None, CC_BY, None, None, "<p>Figure (c) shows the result.</p>", "full"),
]


@pytest.mark.parametrize(
    ("feed_rights", "feed_license", "rights", "license", "body", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in CORPUS],
)
def test_rights_corpus_decides_level(
    feed_rights: str | None,
    feed_license: str | None,
    rights: str | None,
    license: str | None,
    body: str,
    expected: str,
) -> None:
    item = stored(
        feed_rights=feed_rights,
        feed_license=feed_license,
        rights=rights,
        license=license,
        summary_html=body,
    )
    decision = decide(feed(), item)
    assert decision.level == expected, decision
    assert decision.rule.startswith("auto: ")
    # Publishing decides from the notice lines parsing stored with the entry: the same way.
    lines = notice_lines((body,))
    assert decide(feed(), dataclasses.replace(item, notice_lines=lines)) == decision
    if not (rights or license) and any(s.startswith("entry") for s in decision.signals):
        assert lines, "the line of a notice found in the body must be among the lines"


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 90
    assert len({row[0] for row in CORPUS}) == len(CORPUS)


def _parsed(name: str) -> list[tuple[str, StoredItem]]:
    """A fixture feed through the real parse stage, as the store would hand its entries back."""
    parsed = parse_feed(
        (DATA / name).read_bytes(),
        url=f"https://fixtures.example/{name}",
        content_type="application/xml",
        now=T0,
    )
    return [
        (
            entry.title,
            stored(
                title=entry.title,
                rights=entry.rights,
                license=entry.license,
                summary_html=entry.summary_html,
                content_html=entry.content_html,
                feed_rights=parsed.rights,
                feed_license=parsed.license,
            ),
        )
        for entry in parsed.entries
    ]


@pytest.mark.parametrize(
    ("name", "title", "item"),
    [
        pytest.param(name, title, item, id=f"{name}:{title}")
        for name in sorted(p.name for p in DATA.glob("*.xml"))
        for title, item in _parsed(name)
    ],
)
def test_rights_fields_read_from_real_feeds(name: str, title: str, item: StoredItem) -> None:
    """Media RSS, dcterms, creativeCommons, Atom rel=license, KOGL: parse -> decide."""
    expected = title.split(":")[0]
    decision = decide(feed(), item)
    assert decision.level == expected, (decision, item.rights, item.license, item.feed_rights)


@pytest.mark.parametrize(
    ("kw", "rule"),
    [
        ({"feed_license": CC_BY}, "auto: feed licence CC BY 4.0 permits full text"),
        (
            {"feed_license": CC_BY, "summary_html": "<p>본문</p><p>무단 전재 및 재배포 금지</p>"},
            "auto: entry notice '무단 전재 및 재배포 금지' reserves rights: restricts to summary",
        ),
        ({}, "auto: no rights statement, defaulting to summary"),
    ],
)
def test_rule_says_in_words_why(kw: dict[str, Any], rule: str) -> None:
    assert decide(feed(), stored(**kw)).rule == rule


def test_signals_and_notice_are_reported() -> None:
    decision = decide(feed(), stored(feed_rights="Copyright ⓒ 연합뉴스. All rights reserved"))
    assert decision.notice == "Copyright ⓒ 연합뉴스. All rights reserved"
    assert "feed notice 'All rights reserved': summary" in decision.signals
    assert any("Copyright ⓒ 연합뉴스" in s for s in decision.signals)
    assert decide(feed(), stored()).notice is None


def test_detect_treats_bodies_as_prose_and_fields_as_statements() -> None:
    assert detect([CC_BY], [], bodies=["<p>Some prose about rights.</p>"]).level == "full"
    assert detect([CC_BY], ["Some prose about rights."]).level == "summary"


@pytest.mark.parametrize("level", ["full", "summary", "title", "none"])
def test_explicit_config_wins_over_detection(level: str) -> None:
    item = stored(feed_rights="무단 전재 및 재배포 금지", feed_license=CC_BY)
    decision = decide(feed(redistribution=level), item)
    assert decision.level == level
    assert decision.rule == f"config: redistribution={level}"
    assert decision.notice is not None and "무단 전재 및 재배포 금지" in decision.notice


# --- attribution and eligibility ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("feed_kw", "item_kw", "reason"),
    [
        ({"redistribution": "none"}, {}, "redistribution none"),
        ({}, {"link": None}, "unattributed: no link"),
        ({}, {"link": "javascript:alert(1)"}, "unattributed: no link"),
        ({}, {"link": "ftp://yonhap.example/a"}, "unattributed: no link"),
        ({}, {"author": None}, "unattributed: no author"),
        ({}, {"author": "   ", "feed_author": ""}, "unattributed: no author"),
    ],
)
def test_unpublishable_items_are_not_published(
    feed_kw: dict[str, Any], item_kw: dict[str, Any], reason: str
) -> None:
    item, why = build_item([stored(**item_kw)], {"yonhap": feed(**feed_kw)})
    assert item is None
    assert why == reason


@pytest.mark.parametrize(
    ("config_author", "feed_author", "expected"),
    [("편집국", "연합뉴스", "편집국"), (None, "연합뉴스", "연합뉴스")],
)
def test_author_falls_back_to_config_then_feed(
    config_author: str | None, feed_author: str, expected: str
) -> None:
    item, _ = build_item(
        [stored(author=None, feed_author=feed_author)], {"yonhap": feed(author=config_author)}
    )
    assert item is not None and item.author == expected


def test_removed_provider_is_ignored() -> None:
    assert build_item([stored("gone")], {"yonhap": feed()}) == (None, "no configured provider")
    members = [stored("gone", feed_license=CC_BY), stored("yonhap", id=2)]
    item, _ = build_item(members, {"yonhap": feed()})
    assert item is not None and item.provider == "yonhap" and item.also == ()


# --- representative, guid, also-reported-by ----------------------------------------------------

FEEDS = {
    "a": feed("a", priority=0),
    "b": feed("b", priority=5),
    "c": feed("c", redistribution="full"),
    "d": feed("d", redistribution="none"),
}


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        # most permissive level wins even if seen later
        ([stored("a", id=1), stored("c", id=2, first_seen=T0 + timedelta(hours=1))], "c"),
        # then earliest first_seen
        ([stored("a", id=1, first_seen=T0 + timedelta(minutes=5)), stored("b", id=2)], "b"),
        # then higher priority
        ([stored("a", id=1), stored("b", id=2)], "b"),
        # then feed name
        ([stored("b", id=2), stored("a", id=1, first_seen=T0 - timedelta(seconds=1))], "a"),
        # `none` members never represent
        ([stored("d", id=4), stored("a", id=1, first_seen=T0 + timedelta(days=1))], "a"),
    ],
)
def test_representative_selection(members: list[StoredItem], expected: str) -> None:
    item, _ = build_item(members, FEEDS)
    assert item is not None
    assert item.provider == expected
    assert item.guid == "tag:agg.example,2025:story-7"


def test_guid_is_stable_whoever_represents() -> None:
    first, _ = build_item([stored("a", id=1)], FEEDS)
    later, _ = build_item([stored("a", id=1), stored("c", id=2)], FEEDS)
    assert first is not None and later is not None
    assert (first.provider, later.provider) == ("a", "c")
    assert first.guid == later.guid == "tag:agg.example,2025:story-7"


def test_also_reported_by_lists_other_eligible_members() -> None:
    members = [stored("c", id=3), stored("a", id=1), stored("b", id=2), stored("d", id=4)]
    item, _ = build_item(members, FEEDS)
    assert item is not None and item.provider == "c"
    assert item.also == (("b", "https://b.example/a/1"), ("a", "https://a.example/a/1"))
    assert (
        '<p class="also">함께 보도한 곳: <a href="https://b.example/a/1">b</a>, '
        '<a href="https://a.example/a/1">a</a></p>'
    ) in item.content_html


# --- dates ---------------------------------------------------------------------------------------


def test_redated_entry_does_not_jump_to_the_top() -> None:
    item, _ = build_item(
        [stored(published=T0 + timedelta(days=3), updated=None)], {"yonhap": feed()}
    )
    assert item is not None
    assert item.published == T0 and item.updated == T0
    early, _ = build_item(
        [stored(published=T0 - timedelta(days=1), updated=T0 - timedelta(days=2))],
        {"yonhap": feed()},
    )
    assert early is not None
    assert early.published == T0 - timedelta(days=1) and early.updated == early.published


# --- excerpts ------------------------------------------------------------------------------------

LONG = "<p>" + " ".join(f"문장 {i}번은 여기에서 끝난다." for i in range(60)) + "</p>"


@pytest.mark.parametrize("limit", [20, 33, 50, 77, 120, 200, 500])
def test_excerpt_respects_limit(limit: int) -> None:
    text = excerpt(LONG, limit)
    assert 0 < len(text) <= limit
    assert text.endswith("…")


@pytest.mark.parametrize(
    ("body", "limit", "expected"),
    [
        (
            "<p>첫 문장이다. 두번째 문장은 조금 더 길다. 세번째 문장이 있다.</p>",
            30,
            "첫 문장이다. 두번째 문장은 조금 더 길다.…",
        ),
        (
            "<p>The quick brown fox jumps over the lazy dog again and again</p>",
            30,
            "The quick brown fox jumps…",
        ),
        ("가" * 100, 20, "가" * 19 + "…"),
        ("<p>짧은 글.</p>", 200, "짧은 글."),
        ("<p>a &amp;lt; b &amp; c</p><script>evil()</script>", 200, "a &lt; b & c"),
        ("<p>금리는 3.5%로 유지됐다</p>", 200, "금리는 3.5%로 유지됐다"),
        (
            "<p>본문 첫 줄이다.</p><p>RSS피드 기사제공처 : 뉴스와이어 / 등록기자: 홍길동</p>",
            200,
            "본문 첫 줄이다.",
        ),
        ("<p>본문이다. 무단 전재 및 재배포 금지</p>", 200, "본문이다."),
        (
            "<p>본문이다.<br>&lt;저작권자(c) 연합뉴스, 무단 전재-재배포 금지&gt;</p>",
            200,
            "본문이다.",
        ),
        ("<p>본문이다.</p><p>Copyright ⓒ 한국경제. All rights reserved</p>", 200, "본문이다."),
    ],
)
def test_excerpt_cut_rules(body: str, limit: int, expected: str) -> None:
    assert excerpt(body, limit) == expected


def test_excerpt_never_splits_a_character_from_its_marks() -> None:
    decomposed = unicodedata.normalize("NFD", "한국어" * 20)  # 3 code points per syllable
    text = excerpt(decomposed, 20)
    assert len(text) <= 20 and text == "한국어" * 6 + "한…"
    combining = "q\u0301" * 30  # no precomposed form: stays two code points after NFC
    assert excerpt(combining, 20) == "q\u0301" * 9 + "…"


# --- what readers see ----------------------------------------------------------------------------

SECRET = "이 문장은 요약 한도 밖에 있어 절대 노출되면 안 된다"


@pytest.mark.parametrize("level", ["summary", "title"])
def test_restricted_provider_never_leaks_body_text_in_any_field(level: str) -> None:
    body = "<p>" + "앞부분 문장이 이어진다. " * 20 + SECRET + ".</p>"
    member = stored(summary_html=body, content_html=body, feed_rights="무단 전재 및 재배포 금지")
    item, _ = build_item([member], {"yonhap": feed(redistribution=level, excerpt_length=100)})
    assert item is not None and item.level == level
    for value in dataclasses.astuple(item):
        assert "절대 노출" not in str(value)
    assert "앞부분" not in item.content_html if level == "title" else "앞부분" in item.content_html
    assert item.summary_text == ("" if level == "title" else excerpt(body, 100))


def test_credit_block_korean() -> None:
    member = stored(
        content_html="<p>전문</p>", feed_rights="저작권자 ⓒ 연합뉴스", author="홍길동 <기자>"
    )
    item, reason = build_item([member], {"yonhap": feed(redistribution="full")})
    assert item is not None and reason == "published full from yonhap"
    assert item.content_html == (
        "<p>전문</p>\n"
        '<p class="credit">기사제공처: <a href="https://yonhap.example/">yonhap</a>'
        " / 기자: 홍길동 &lt;기자&gt;</p>\n"
        '<p class="rights">저작권자 ⓒ 연합뉴스</p>\n'
        '<p class="original">원문: <a href="https://yonhap.example/a/1">https://yonhap.example/a/1</a></p>'
    )
    assert item.credit == "기사제공처: yonhap / 기자: 홍길동 <기자>"
    assert (item.provider_link, item.source_url) == (
        "https://yonhap.example/",
        "https://yonhap.example/rss",
    )
    assert item.rights == "저작권자 ⓒ 연합뉴스"


def test_credit_block_english_summary() -> None:
    member = stored(feed_link=None)
    item, _ = build_item([member], {"yonhap": feed()}, language="en")
    assert item is not None and item.level == "summary"
    assert item.content_html == (
        "<p>한국은행이 기준금리를 동결했다.</p>\n"
        '<p class="credit">Source: yonhap / Author: 홍길동</p>\n'
        '<p class="original">Original: <a href="https://yonhap.example/a/1">https://yonhap.example/a/1</a></p>'
    )
    assert item.credit == "Source: yonhap / Author: 홍길동"
    assert item.provider_link is None


def test_title_level_shows_only_the_credit_block() -> None:
    item, _ = build_item([stored()], {"yonhap": feed(redistribution="title")})
    assert item is not None
    assert item.content_html.startswith('<p class="credit">')
    assert item.summary_text == "" and item.title == "기준금리 동결"


def test_full_level_falls_back_to_summary_html() -> None:
    item, _ = build_item([stored(feed_license=CC_BY)], {"yonhap": feed()})
    assert item is not None and item.level == "full"
    assert item.content_html.startswith(
        '<p>한국은행이 기준금리를 동결했다.</p>\n<p class="credit">'
    )
    assert item.rule == "auto: feed licence CC BY 4.0 permits full text"


# --- per-feed overrides: credit template, extra credit, images ---------------------------------


def test_credit_template_and_extra_credit_are_applied_and_escaped() -> None:
    member = stored(content_html="<p>전문</p>")
    template = "<출처> {provider} · {author} 기자 {{제휴}}"
    conf = feed(redistribution="full", credit_template=template, credit="사진 제공: 연합&뉴스")
    item, _ = build_item([member], {"yonhap": conf})
    assert item is not None
    assert item.credit == "<출처> yonhap · 홍길동 기자 {제휴} / 사진 제공: 연합&뉴스"
    assert (
        '<p class="credit">&lt;출처&gt; <a href="https://yonhap.example/">yonhap</a>'
        " · 홍길동 기자 {제휴} / 사진 제공: 연합&amp;뉴스</p>"
    ) in item.content_html


@pytest.mark.parametrize(("language", "word"), [("ko", "기사제공처: "), ("en-US", "Source: ")])
def test_default_credit_template_follows_output_language(language: str, word: str) -> None:
    item, _ = build_item([stored()], {"yonhap": feed(credit="Partner feed")}, language)
    assert item is not None and item.credit.startswith(word)
    assert item.credit.endswith(" / Partner feed")


IMG = '<img src="https://yonhap.example/p.jpg" alt="a > b">'
PHOTO_BODY = (
    f"<p>본문 앞.</p><figure>{IMG}<figcaption>사진=연합뉴스</figcaption></figure>"
    f"<p>본문 뒤.{IMG}</p>"
)


@pytest.mark.parametrize(("images", "kept"), [(False, 0), (True, 2)])
def test_images_are_stripped_from_full_text_unless_allowed(images: bool, kept: int) -> None:
    member = stored(content_html=PHOTO_BODY)
    item, _ = build_item(
        [member], {"yonhap": feed(redistribution="full", images=images)}, explain=True
    )
    assert item is not None and item.level == "full"
    assert item.content_html.count("<img") == kept
    assert "본문 앞." in item.content_html and "본문 뒤." in item.content_html
    assert ("사진=연합뉴스" in item.content_html) is images  # the photo's caption goes with it
    assert images or 'b">' not in item.content_html  # no tail of a half-removed tag
    assert item.removed == (() if images else ("2 images removed (images: false)",))


def test_removed_says_what_the_terms_took_away() -> None:
    body = "<p>" + "가나다라마바사. " * 50 + f"</p>{IMG}"
    summary, _ = build_item(
        [stored(content_html=body)], {"yonhap": feed(excerpt_length=50)}, explain=True
    )
    assert summary is not None and summary.level == "summary"
    assert summary.removed == (
        f"body cut from 449 to {len(summary.summary_text)} characters"
        " (the entry's own summary, excerpt_length 50)",
        "1 image removed (a summary item carries no images)",
    )
    title, _ = build_item(
        [stored(content_html=body)], {"yonhap": feed(redistribution="title")}, explain=True
    )
    assert title is not None
    assert title.removed[0] == "body removed (449 characters): title and credit only"
    full, _ = build_item(
        [stored()], {"yonhap": feed(redistribution="full", images=True)}, explain=True
    )
    assert full is not None and full.removed == ()
    alone, _ = build_item(
        [stored(summary_html=body)], {"yonhap": feed(excerpt_length=50)}, explain=True
    )
    assert alone is not None
    assert alone.removed[0] == f"body cut from 449 to {len(alone.summary_text)} characters" + (
        " (excerpt_length 50)"
    )
    published, _ = build_item([stored(content_html=body)], {"yonhap": feed(excerpt_length=50)})
    assert published is not None and published.removed == ()  # publishing never shows it


@pytest.mark.parametrize(
    ("kw", "item_kw", "expected"),
    [
        # a contract grants full text while the provider's own notice reserves rights
        ({"redistribution": "full"}, {"feed_rights": "무단 전재 및 재배포 금지"}, True),
        ({"redistribution": "full"}, {}, True),  # no statement: the provider allows less
        ({"redistribution": "full"}, {"feed_license": CC_BY}, False),
        ({}, {"feed_license": CC_BY}, False),  # auto full under CC BY
        ({}, {"feed_rights": "무단 전재 및 재배포 금지"}, False),  # a summary is fine to index
        ({"redistribution": "full", "noindex": False}, {"feed_rights": "ⓒ 연합뉴스"}, False),
        ({"noindex": True}, {"feed_license": CC_BY}, True),
    ],
)
def test_noindex_auto_and_explicit(
    kw: dict[str, Any], item_kw: dict[str, Any], expected: bool
) -> None:
    item, _ = build_item([stored(**item_kw)], {"yonhap": feed(**kw)})
    assert item is not None and item.noindex is expected


def test_why_not_names_the_reason_per_entry() -> None:
    assert why_not(feed(), stored(author=None)) == "unattributed: no author"
    assert why_not(feed(redistribution="none"), stored()) == "redistribution none"
    assert why_not(feed(), stored()) is None


def test_decision_keeps_what_detection_alone_would_allow() -> None:
    decision = decide(feed(redistribution="full"), stored(feed_rights="무단 전재 및 재배포 금지"))
    assert (decision.level, decision.detected) == ("full", "summary")
