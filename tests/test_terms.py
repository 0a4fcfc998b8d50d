"""Terms an operator can stand behind (issue 6), checked where readers see them: the outputs.

- A summary or title item never leaks provider text beyond its excerpt, in any format.
- Every item carries its attribution in every format.
- A terms change in the config applies on the next publish to items already published.
- The credit line template, per-feed overrides and their validation.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import lxml.html
import pytest
from lxml import etree

from aggregator import config
from aggregator.config import FeedConfig, OutputConfig
from aggregator.models import PublishedItem, StoredItem
from aggregator.policy import build_item, excerpt
from aggregator.publish import publish
from tests.conftest import run_cli
from tests.feedserver import FeedServer, Route

NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "dc": "http://purl.org/dc/elements/1.1/",
    "content": "http://purl.org/rss/1.0/modules/content/",
}
T0 = datetime(2025, 10, 16, 10, 58, tzinfo=UTC)
OUTPUT = OutputConfig(title="광산 뉴스 모음", link="https://news.example.org/")

# --- building realistic stored entries ---------------------------------------------------------

_WORDS = {
    True: "경제 정부 발표 시장 금리 수출 지역 주민 기업 투자 계획 회의 결과 전망 올해 지난달",
    False: "the market rates exports plan results outlook council budget growth report",
}


def _sentence(rng: random.Random, korean: bool, spaced: bool) -> str:
    words = [rng.choice(_WORDS[korean].split()) for _ in range(rng.randint(3, 9))]
    text = (" " if spaced else "").join(words)
    return text + rng.choice([".", "다.", "!", "?", ""]) if korean else text.capitalize() + "."


def _prose(rng: random.Random, at_least: int, korean: bool) -> str:
    """Article text of more than `at_least` characters, as HTML paragraphs with markup."""
    paragraphs: list[str] = []
    texts: list[str] = []  # the plain text readers would see, to measure it
    spaced = rng.random() < 0.8
    while len(" ".join(texts)) <= at_least:
        first = " ".join(_sentence(rng, korean, spaced) for _ in range(rng.randint(1, 4)))
        second = _sentence(rng, korean, spaced)
        shape = rng.choice(["<p>{}</p>", "<p><b>{}</b></p>", "<p>{}<br>{}</p>", "<div>{}</div>"])
        paragraphs.append(shape.format(escape(first), escape(second)))
        texts += [first, second] if "<br>" in shape else [first]
    return "".join(paragraphs)


def _secret(n: int) -> str:
    return f"LEAK{n:04d}"


def _case(n: int) -> tuple[FeedConfig, StoredItem, str]:
    """A provider entry whose only mention of the secret lies beyond the excerpt limit."""
    rng = random.Random(n)
    korean = rng.random() < 0.7
    limit = rng.choice([20, 57, 120, 200, 333, 500])
    secret = _secret(n)
    tail = rng.choice(
        [
            f"<p>{secret} 이 문장은 한도 밖에 있다.</p>",
            f"<p>Tail sentence {secret} must stay out.</p>",
            f'<p>링크 <a href="https://x.example/{secret}">{secret}</a></p>',
            f'<figure><img src="https://x.example/{secret}.jpg" alt="{secret}"></figure>',
            f"<p>무단 전재 및 재배포 금지 {secret}</p>",
        ]
    )
    body = _prose(rng, limit + 40, korean) + tail + _prose(rng, rng.randint(0, 300), korean)
    teaser = rng.choice(["", body, _prose(rng, rng.randint(10, 80), korean)])
    level = rng.choice(["summary", "title", "auto"])
    feed_rights = rng.choice([None, "무단 전재 및 재배포 금지", "CC BY-ND 4.0", "공공누리 제3유형"])
    feed = FeedConfig(
        name=rng.choice(["연합뉴스", "Example Wire"]),
        url="https://wire.example/rss",
        redistribution=level,
        excerpt_length=limit,
        images=rng.random() < 0.5,
        credit=rng.choice([None, "제휴 기사"]),
    )
    item = StoredItem(
        id=n,
        cluster_id=n,
        cluster_guid=f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
        feed_name=feed.name,
        feed_url=feed.url,
        key=f"k{n}",
        title=f"기사 {n}",
        first_seen=T0,
        link=f"https://wire.example/a/{n}",
        author=rng.choice(["김기자", "Jane Doe", None]),
        published=T0 - timedelta(minutes=n),
        summary_html=teaser,
        content_html=body,
        feed_rights=feed_rights,
        feed_author="편집국",
        feed_link="https://wire.example/",
    )
    return feed, item, secret


def _build(cases: list[tuple[FeedConfig, StoredItem, str]], language: str) -> list[PublishedItem]:
    items = []
    for feed, stored, _ in cases:
        item, reason = build_item([stored], {feed.name: feed}, language)
        assert item is not None, reason
        items.append(item)
    return items


# --- reading every output format ---------------------------------------------------------------


def _fields(out: Path) -> dict[str, dict[str, list[str]]]:
    """guid -> every reader-visible text of that item, per format and field."""
    found: dict[str, dict[str, list[str]]] = {}

    def add(guid: str, where: str, *values: str | None) -> None:
        found.setdefault(guid, {}).setdefault(where, []).extend(v or "" for v in values)

    rss = etree.parse(str(out / "feed.xml"))
    for el in rss.iterfind("channel/item"):
        guid = el.findtext("guid")
        add(guid, "rss description", el.findtext("description"))
        add(guid, "rss content:encoded", el.findtext("content:encoded", namespaces=NS))
    atom = etree.parse(str(out / "atom.xml"))
    for el in atom.iterfind("atom:entry", NS):
        guid = el.findtext("atom:id", namespaces=NS)
        add(guid, "atom summary", el.findtext("atom:summary", namespaces=NS))
        add(guid, "atom content", el.findtext("atom:content", namespaces=NS))
    for data in json.loads((out / "feed.json").read_text(encoding="utf-8"))["items"]:
        guid = data["id"]
        for key in ("content_html", "content_text", "summary"):
            add(guid, f"json {key}", data.get(key))
    page = lxml.html.fromstring((out / "index.html").read_bytes())
    for article in page.iterfind(".//article"):
        link = article.find(".//h2/a").get("href")
        add(f"page:{link}", "html page", lxml.html.tostring(article, encoding="unicode"))
    return found


def _page_article(out: Path, link: str) -> str:
    return "".join(_fields(out)[f"page:{link}"]["html page"])


# --- no leak -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_restricted_items_never_leak_beyond_their_excerpt_in_any_format(
    tmp_path: Path, seed: int
) -> None:
    """Property over generated entries: whatever the markup, language, limit and teaser, the
    text after the excerpt limit (a unique token) is in no field of any output file."""
    cases = [_case(seed * 25 + i) for i in range(25)]
    language = "ko" if seed % 2 == 0 else "en"
    items = _build(cases, language)
    assert {i.level for i in items} <= {"summary", "title"}
    publish(items, OUTPUT, tmp_path, now=T0)
    everything = "".join(p.read_text(encoding="utf-8") for p in tmp_path.iterdir())
    fields = _fields(tmp_path)
    for (feed, stored, secret), item in zip(cases, items, strict=True):
        assert secret not in everything, (secret, item.level)
        per_format = {**fields[item.guid], **fields[f"page:{item.link}"]}
        assert len(per_format) == 8  # 2 RSS, 2 Atom, 3 JSON, the page
        teaser = stored.summary_html or stored.content_html
        allowed = excerpt(teaser, feed.excerpt_length) if item.level == "summary" else ""
        assert len(item.summary_text) <= feed.excerpt_length
        assert item.summary_text == allowed
        body = item.content_html.split('<p class="credit">')[0]
        assert body == (f"<p>{escape(allowed)}</p>\n" if allowed else "")
        for where, values in per_format.items():
            assert not any(secret in v for v in values), where


# --- attribution ---------------------------------------------------------------------------------


def test_every_item_carries_its_attribution_in_every_format(tmp_path: Path) -> None:
    cases = [_case(n) for n in range(20)]
    full = FeedConfig(name="Open Notes", url="https://notes.example/feed", redistribution="full")
    _, stored, _ = _case(99)
    cases.append((full, replace(stored, feed_name=full.name, feed_url=full.url), ""))
    items = _build(cases, "ko")
    assert {i.level for i in items} == {"full", "summary", "title"}
    publish(items, OUTPUT, tmp_path, now=T0)
    rss_root = etree.parse(str(tmp_path / "feed.xml"))
    rss = {el.findtext("guid"): el for el in rss_root.iterfind("channel/item")}
    atom_root = etree.parse(str(tmp_path / "atom.xml"))
    atom = {
        el.findtext("atom:id", namespaces=NS): el for el in atom_root.iterfind("atom:entry", NS)
    }
    feed = json.loads((tmp_path / "feed.json").read_text(encoding="utf-8"))
    json_items = {i["id"]: i for i in feed["items"]}
    for item in items:
        credit = f"기사제공처: {escape(item.provider)}"
        r = rss[item.guid]
        assert r.findtext("link") == item.link
        assert (r.find("source").get("url"), r.findtext("source")) == (
            item.source_url,
            item.provider,
        )
        assert r.findtext("dc:creator", namespaces=NS) == item.author
        assert r.findtext("dc:rights", namespaces=NS) == item.rights
        assert credit in re.sub(r"<a [^>]+>|</a>", "", r.findtext("description"))
        a = atom[item.guid]
        assert a.find("atom:link", NS).get("href") == item.link
        assert a.findtext("atom:author/atom:name", namespaces=NS) == item.author
        assert a.findtext("atom:source/atom:title", namespaces=NS) == item.provider
        assert a.findtext("atom:source/atom:id", namespaces=NS) == item.source_url
        assert a.findtext("atom:source/atom:rights", namespaces=NS) == item.rights
        assert credit in re.sub(r"<a [^>]+>|</a>", "", a.findtext("atom:content", namespaces=NS))
        j = json_items[item.guid]
        assert (j["url"], j["authors"]) == (item.link, [{"name": item.author}])
        assert j["_source"]["provider"] == item.provider
        assert j["_source"]["rights"] == item.rights
        assert credit in re.sub(r"<a [^>]+>|</a>", "", j["content_html"])
        page = lxml.html.fromstring(_page_article(tmp_path, item.link))
        text = page.text_content()
        assert f"기사제공처: {item.provider} / 기자: {item.author}" in text
        assert f"원문: {item.link}" in text
        assert item.link in [a.get("href") for a in page.iter("a")]
        assert item.rights is None or item.rights in text


# --- configuration: credit template and per-feed overrides ---------------------------------------

CONFIG = """\
output:
  title: "광산 뉴스 모음"
  credit_template: "출처: {provider} ({author} 기자)"
feeds:
  - name: 광산일보
    url: https://gwangsan.example/rss.xml
  - name: Partner
    url: https://partner.example/rss.xml
    credit_template: "Via {provider}, by {author}"
"""


def test_overrides_default_fail_closed_and_templates_are_inherited() -> None:
    cfg = config.parse(CONFIG)
    first, partner = cfg.feeds
    assert (first.images, first.credit, first.noindex) == (False, None, "auto")
    assert first.credit_template == "출처: {provider} ({author} 기자)"  # from output
    assert partner.credit_template == "Via {provider}, by {author}"  # its own wins


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{provider} / {reporter}", "output.credit_template: unknown placeholder {reporter}"),
        ("{provider} / {author.__class__}", "unknown placeholder {author.__class__}"),
        ("{provider!r} / {author}", "unknown placeholder {provider!r}"),
        ("{provider} / {}", "unknown placeholder {}"),
        ("Source: {provider}", "must contain {provider}, {author}"),
        ("{provider / {author}", "not a valid template"),
    ],
)
def test_bad_credit_template_is_a_config_error_naming_the_key(template: str, message: str) -> None:
    bad = CONFIG.replace("출처: {provider} ({author} 기자)", template)
    with pytest.raises(config.ConfigError) as error:
        config.parse(bad, "feeds.yaml")
    assert str(error.value).startswith("feeds.yaml:3: ") and message in str(error.value)


def test_check_command_reports_a_bad_credit_template(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(CONFIG.replace("({author} 기자)", "({reporter} 기자)"), encoding="utf-8")
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:3: output.credit_template: unknown placeholder {{reporter}}" in result.stderr


def test_bad_per_feed_override_names_the_feed_key() -> None:
    with pytest.raises(config.ConfigError, match=r":7: feeds\[0\]\.noindex: Input should be"):
        config.parse(
            CONFIG.replace(
                "url: https://gwangsan.example/rss.xml",
                "url: https://gwangsan.example/rss.xml\n    noindex: sometimes",
                1,
            )
        )


# --- a terms change applies on the next publish, through the real CLI ------------------------

TAIL = "FULL-ONLY-TAIL 이 문장은 전문 계약이 끝나면 사라져야 한다."
MIDDLE = "주민 의견을 반영해 설계를 바꿨다. " * 12
PHOTO = '<img src="https://gwangsan.example/photo.jpg" alt="현장">'
FEED = f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
<title>광산일보</title>
<link>https://gwangsan.example/</link>
<description>광산구 소식</description>
<language>ko</language>
<copyright>저작권자 ⓒ 광산일보 무단 전재 및 재배포 금지</copyright>
<item>
<title>광산구 새 도서관 착공</title>
<link>https://gwangsan.example/news/77</link>
<guid>https://gwangsan.example/news/77</guid>
<pubDate>2025.10.16 19:58</pubDate>
<dc:creator>박기자</dc:creator>
<description>광산구가 새 도서관 공사를 시작했다.</description>
<content:encoded><![CDATA[<p>광산구가 새 도서관 공사를 시작했다. {MIDDLE}</p>
<figure>{PHOTO}<figcaption>사진=광산일보</figcaption></figure>
<p>{TAIL}</p>]]></content:encoded>
</item>
</channel>
</rss>
"""
OUTPUTS = ("feed.xml", "atom.xml", "feed.json", "index.html")


def _terms_config(path: Path, server: FeedServer, level: str) -> None:
    path.write_text(
        "output:\n  dir: out\n  link: https://news.example.org/\n"
        '  credit_template: "출처: {provider} ({author} 기자)"\n'
        f"feeds:\n  - name: 광산일보\n    url: {server.url('/gwangsan.xml')}\n"
        f"    redistribution: {level}\n",
        encoding="utf-8",
    )


def _outputs(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text(encoding="utf-8") for name in OUTPUTS}


def test_terms_change_applies_to_items_already_published(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/gwangsan.xml"] = Route(FEED.encode("utf-8"))
    cfg = tmp_path / "feeds.yaml"
    _terms_config(cfg, feed_server, "full")
    first = run_cli("poll", "--config", str(cfg))
    assert first.returncode == 0, first.stdout + first.stderr
    out = tmp_path / "out"
    for name, text in _outputs(out).items():
        assert "FULL-ONLY-TAIL" in text, name  # the syndication contract: full text
        assert "출처: " in text and "광산일보" in text and "박기자 기자" in text, name
        assert "photo.jpg" not in text, name  # images: false by default
    # full text under a contract while the provider reserves rights: ask not to be indexed
    assert '<meta name="robots" content="noindex">' in _outputs(out)["index.html"]
    assert "X-Robots-Tag: noindex" in (out / "_headers").read_text(encoding="utf-8")

    _terms_config(cfg, feed_server, "summary")  # the contract ended
    feed_server.log.clear()
    second = run_cli("poll", "--config", str(cfg))
    assert second.returncode == 0, second.stdout + second.stderr
    assert [r.status for r in feed_server.requests("/gwangsan.xml")] == [304]
    for name, text in _outputs(out).items():
        assert "FULL-ONLY-TAIL" not in text, name
        assert "설계를 바꿨다" not in text, name  # nothing past the teaser either
        assert "광산구가 새 도서관 공사를 시작했다." in text, name
        assert "무단 전재 및 재배포 금지" in text, name  # the provider's notice is shown
        assert "출처: " in text and "박기자 기자" in text, name
    assert "noindex" not in _outputs(out)["index.html"]
    assert "X-Robots-Tag" not in (out / "_headers").read_text(encoding="utf-8")

    explained = run_cli("explain", "--config", str(cfg), "https://gwangsan.example/news/77")
    assert explained.returncode == 0, explained.stderr
    text = explained.stdout
    assert "level: summary (config: redistribution=summary)" in text
    assert "signal: feed notice '무단 전재 및 재배포 금지': summary" in text
    assert re.search(r"what was removed: body cut from [\d,]+ to \d+ characters", text)
    assert "1 image removed (a summary item carries no images)" in text
