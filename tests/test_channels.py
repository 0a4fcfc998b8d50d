"""Channels: further feeds chosen by provider, category and keyword, Korean text included.

Selection is a pure function, tested as a table; the channel outputs end to end with the real
`poll` command against a real local feed server.
"""

from __future__ import annotations

import json
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.channels import ChannelConfig, Rules, matches
from aggregator.models import PublishedItem
from tests.conftest import run_cli
from tests.feedserver import FeedServer, Route

CREDIT = (
    '<p class="credit">기사제공처: 연합뉴스 / 기자: 김유미</p>\n<p class="original">원문: x</p>'
)


def story(
    title: str = "오늘의 소식",
    summary: str = "",
    *,
    provider: str = "전자신문",
    also: tuple[tuple[str, str], ...] = (),
    categories: tuple[str, ...] = (),
    level: str = "summary",
    body: str = "",
) -> PublishedItem:
    now = datetime(2025, 10, 16, tzinfo=UTC)
    content = f"{body}\n{CREDIT}" if level == "full" else f"<p>{summary}</p>\n{CREDIT}"
    return PublishedItem(
        guid="urn:uuid:1",
        title=title,
        link="https://p.example/1",
        provider=provider,
        source_url="https://p.example/rss",
        author="김유미",
        published=now,
        updated=now,
        level=level,  # type: ignore[arg-type]
        content_html=content,
        summary_text="" if level == "title" else summary,
        credit="c",
        rule="r",
        also=also,
        categories=categories,
    )


def rules(**kw: list[str]) -> Rules:
    return Rules.of(ChannelConfig(name="c", **kw))  # type: ignore[arg-type]


NFD = unicodedata.normalize("NFD", "반도체 수출")  # decomposed Hangul, as macOS writes it

CASES = [
    # (what, rules, item, kept)
    ("no rules keep everything", rules(), story(), True),
    ("provider", rules(providers=["전자신문"]), story(), True),
    ("other provider", rules(providers=["광산구청"]), story(), False),
    (
        "provider among also-reported",
        rules(providers=["광산구청"]),
        story(also=(("광산구청", "https://g.example/1"),)),
        True,
    ),
    ("category, case-folded", rules(categories=["IT"]), story(categories=("it",)), True),
    ("full-width category", rules(categories=["IT"]), story(categories=("ＩＴ",)), True),
    ("other category", rules(categories=["IT"]), story(categories=("과학",)), False),
    ("no category at all", rules(categories=["IT"]), story(), False),
    ("keyword inside a word", rules(include=["반도체"]), story("반도체주 강세"), True),
    ("keyword in the excerpt", rules(include=["반도체"]), story(summary="차세대반도체 공장"), True),
    ("keyword nowhere", rules(include=["반도체"]), story("지역 축제"), False),
    ("any of several keywords", rules(include=["배터리", "축제"]), story("지역 축제"), True),
    ("full-width latin keyword", rules(include=["ai"]), story("ＡＩ 반도체 투자"), True),
    ("latin keyword with no boundary", rules(include=["AI"]), story("AI반도체"), True),
    ("decomposed Hangul text", rules(include=["반도체"]), story(NFD), True),
    ("spacing differences", rules(include=["반도체  수출"]), story("반도체 수출 증가"), True),
    ("excluded keyword", rules(exclude=["광고"]), story("[광고] 할인 행사"), False),
    (
        "included then excluded",
        rules(include=["반도체"], exclude=["광고"]),
        story("[광고] 반도체"),
        False,
    ),
    (
        "credit lines are not searched (full item)",
        rules(exclude=["연합뉴스"]),
        story("반도체", level="full", body="<p>본문</p>"),
        True,
    ),
    (
        "the whole body is searched for full items",
        rules(include=["마지막 문단"]),
        story("제목", "요약", level="full", body="<p>첫 문단</p><p>마지막 문단</p>"),
        True,
    ),
    (
        "title-only items: the title alone",
        rules(include=["김유미"]),
        story("제목", level="title"),
        False,
    ),
    (
        "every rule must hold",
        rules(providers=["전자신문"], categories=["IT"], include=["반도체"]),
        story("반도체 수출", categories=("과학",)),
        False,
    ),
]


@pytest.mark.parametrize(("what", "rule", "item", "kept"), CASES, ids=[c[0] for c in CASES])
def test_channel_selection(what: str, rule: Rules, item: PublishedItem, kept: bool) -> None:
    assert matches(item, rule) is kept


GOOD = """\
output: {dir: out, link: 'https://news.example.org/'}
feeds:
  - name: 전자신문
    url: https://etnews.example/rss
channels:
"""


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "  - {name: it, providers: [전자신문, 없는신문]}\n",
            ":6: channels[0].providers[1]: no feed",
        ),
        ("  - {name: 'IT 뉴스'}\n", ":6: channels[0].name: must be letters, digits"),
        ("  - {name: old, path: archive}\n", ":6: channels[0].path: 'archive' is reserved"),
        ("  - {name: up, path: ../etc}\n", ":6: channels[0].path: must be a relative folder"),
        ("  - {name: it}\n  - {name: it}\n", ":7: channels[1].name: 'it' is listed twice"),
        ("  - {name: it}\n  - {name: ai, path: it/ai}\n", ":7: channels[1].path: folder 'it/ai'"),
        ("  - {name: it, include: ['  ']}\n", ":6: channels[0].include: must not contain a blank"),
        ("  - {name: it, colour: red}\n", ":6: unknown key 'channels[0].colour'"),
    ],
)
def test_channel_mistakes_are_named_with_their_line(
    tmp_path: Path, snippet: str, expected: str
) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(GOOD + snippet, encoding="utf-8")
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 2, result.stdout
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def rss(provider: str, entries: list[tuple[str, str, str]]) -> bytes:
    start = datetime(2025, 10, 16, tzinfo=UTC)
    items = "".join(
        f"<item><title>{title}</title><link>https://{provider}.example/{i}</link>"
        f"<category>{category}</category><author>x@p.example (기자)</author>"
        f"<pubDate>{(start + timedelta(hours=i)).strftime('%a, %d %b %Y %H:%M:%S +0000')}"
        f"</pubDate><description>{body}</description></item>"
        for i, (title, category, body) in enumerate(entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{provider}</title><link>https://{provider}.example/</link>"
        f"<language>ko</language>{items}</channel></rss>"
    ).encode()


def titles(path: Path) -> list[str]:
    return [i.findtext("title") or "" for i in ET.parse(path).getroot().iter("item")]


def test_channels_are_published_beside_the_merged_feed(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/et.xml"] = Route(
        rss(
            "et",
            [
                ("반도체 수출 석 달째 증가", "IT", "수출이 늘었다."),
                ("지역 축제 개막", "지역", "축제가 열렸다."),
                ("[광고] 노트북 할인", "it", "할인 행사."),
            ],
        )
    )
    feed_server.routes["/gs.xml"] = Route(
        rss(
            "gs",
            [
                ("광산구, 반도체 공장 유치", "행정", "공장이 들어선다."),
                ("구정 소식", "행정", "소식."),
            ],
        )
    )
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "output: {dir: out, title: 광산 뉴스, link: 'https://news.example.org/'}\n"
        "feeds:\n"
        f"  - {{name: 전자신문, url: '{feed_server.url('/et.xml')}'}}\n"
        f"  - {{name: 광산구청, url: '{feed_server.url('/gs.xml')}'}}\n"
        "channels:\n"
        "  - {name: it, title: IT 뉴스, categories: [IT], exclude: [광고]}\n"
        "  - {name: local-news, title: 우리 동네, providers: [광산구청], path: news/local,"
        " limit: 1}\n"
        "  - {name: chips, include: [반도체]}\n",
        encoding="utf-8",
    )
    result = run_cli("poll", "--config", str(cfg))
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "out"
    assert len(titles(out / "feed.xml")) == 5  # the merged feed keeps everything
    assert titles(out / "it" / "feed.xml") == ["반도체 수출 석 달째 증가"]
    assert titles(out / "news" / "local" / "feed.xml") == ["구정 소식"]  # limit 1: the newest
    assert sorted(titles(out / "chips" / "feed.xml")) == [
        "광산구, 반도체 공장 유치",
        "반도체 수출 석 달째 증가",
    ]

    channel = ET.parse(out / "it" / "feed.xml").getroot().find("channel")
    assert channel is not None and channel.findtext("title") == "IT 뉴스"
    assert channel.findtext("link") == "https://news.example.org/it/"
    self_link = channel.find("{http://www.w3.org/2005/Atom}link")
    assert self_link is not None and self_link.get("href") == "https://news.example.org/it/feed.xml"
    atom = ET.parse(out / "news" / "local" / "atom.xml").getroot()
    assert atom.findtext("{http://www.w3.org/2005/Atom}title") == "우리 동네"
    feed = json.loads((out / "chips" / "feed.json").read_text(encoding="utf-8"))
    assert feed["title"] == "광산 뉴스 - chips"
    assert feed["feed_url"] == "https://news.example.org/chips/feed.json"

    home = (out / "index.html").read_text(encoding="utf-8")
    assert '<a href="it/">IT 뉴스</a>' in home and '<a href="news/local/">우리 동네</a>' in home
    local = (out / "news" / "local" / "index.html").read_text(encoding="utf-8")
    assert '<a href="../../">광산 뉴스</a>' in local
    assert '<a href="../../news/local/" aria-current="page">우리 동네</a>' in local
    assert 'href="feed.xml"' in local  # autodiscovery of the channel's own feeds


def test_a_channel_follows_a_config_change_on_the_next_publish(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/et.xml"] = Route(
        rss("et", [("반도체 수출 증가", "IT", "수출."), ("배터리 공장", "IT", "공장.")])
    )
    cfg = tmp_path / "feeds.yaml"
    url = feed_server.url("/et.xml")
    base = f"output: {{dir: out}}\nfeeds:\n  - {{name: 전자신문, url: '{url}'}}\n"
    cfg.write_text(base + "channels:\n  - {name: it, include: [반도체]}\n", encoding="utf-8")
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    assert titles(tmp_path / "out" / "it" / "feed.xml") == ["반도체 수출 증가"]
    cfg.write_text(base + "channels:\n  - {name: it, include: [배터리]}\n", encoding="utf-8")
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    assert titles(tmp_path / "out" / "it" / "feed.xml") == ["배터리 공장"]


def test_a_channel_keeps_its_items_without_reading_the_whole_store_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aggregator import config, site

    monkeypatch.setattr(site, "MIN_DEPTH", 10)
    monkeypatch.setattr(site, "CHANNEL_DEPTH", 1)
    start = datetime(2025, 10, 1, tzinfo=UTC)
    stream = [  # newest first; only the oldest few match the channel
        replace(
            story(f"{'드문 소식' if n < 8 else '소식'} {n}"),
            guid=f"urn:uuid:{n}",
            published=start + timedelta(hours=n),
            updated=start + timedelta(hours=n),
        )
        for n in range(99, -1, -1)
    ]
    pulled: list[int] = []

    def again(guids: Sequence[str]) -> list[PublishedItem]:
        return [item for item in stream if item.guid in guids]

    def source() -> Iterator[PublishedItem]:
        for item in stream:
            pulled.append(1)
            yield item

    def publish(include: str) -> list[str]:
        text = f"output: {{dir: {tmp_path / 'out'}, limit: 5, archive_page_size: 2}}\nfeeds: []\n"
        cfg = config.parse(
            text + f"channels:\n  - {{name: rare, limit: 3, include: [{include}]}}\n"
        )
        pulled.clear()
        site.publish_site(cfg, source(), again, datetime.now(UTC))
        return titles(tmp_path / "out" / "rare" / "feed.xml")

    assert publish("드문") == ["드문 소식 7", "드문 소식 6", "드문 소식 5"]
    assert len(pulled) == 100  # a new channel reads everything once
    feed = (tmp_path / "out" / "rare" / "feed.xml").read_bytes()
    assert publish("드문") == ["드문 소식 7", "드문 소식 6", "드문 소식 5"]
    assert len(pulled) < 20  # then only the newest stories
    assert (tmp_path / "out" / "rare" / "feed.xml").read_bytes() == feed
    assert publish("소식 9") == ["소식 99", "소식 98", "소식 97"]  # changed rules: read again
    assert len(pulled) == 100
