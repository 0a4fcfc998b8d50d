"""The user contract, end to end: the real CLI, a real local HTTP server, the real files.

One operator's day: a first `aggregator poll` over every kind of provider (and every kind
of broken one), then a second poll in a new process after one provider adds a story.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.conftest import DATA, run_cli
from tests.feedserver import FeedServer, Route

E2E = DATA / "e2e"
NS = {"atom": "http://www.w3.org/2005/Atom", "dc": "http://purl.org/dc/elements/1.1/"}


def serve(server: FeedServer) -> None:
    rss = "application/rss+xml"
    server.routes.update(
        {
            # EUC-KR label, CP949-only syllable (똠), Korean zone-less dates, 무단 전재 notice.
            "/kit.xml": Route((E2E / "kitnews.xml").read_bytes(), content_type="text/xml"),
            "/blog.xml": Route((E2E / "blog-cc.xml").read_bytes(), "application/atom+xml"),
            "/partner.xml": Route((E2E / "partner.xml").read_bytes(), rss),
            "/secret.xml": Route((E2E / "secret.xml").read_bytes(), rss),
            "/moved.xml": Route(status=301, redirect="/partner-new.xml"),
            "/partner-new.xml": Route((E2E / "partner.xml").read_bytes(), rss),
            "/missing.xml": Route(status=404),
            "/gone.xml": Route(status=410),
            "/broken.xml": Route(b"oops", status=500),
            "/slow.xml": Route((E2E / "partner.xml").read_bytes(), rss, delay=4),
            "/garbage.xml": Route((E2E / "garbage.xml").read_bytes(), rss),
            "/bomb.xml": Route((E2E / "bomb.xml").read_bytes(), rss),
        }
    )


def write_config(tmp_path: Path, server: FeedServer) -> Path:
    feeds = [
        ("한국IT산업뉴스", "/kit.xml", "auto"),
        ("Open Notes", "/blog.xml", "auto"),
        ("파트너 통신", "/partner.xml", "auto"),
        ("비공개 제공사", "/secret.xml", "none"),
        ("이사간 제공사", "/moved.xml", "title"),
        ("없는 피드", "/missing.xml", "auto"),
        ("사라진 피드", "/gone.xml", "auto"),
        ("고장난 피드", "/broken.xml", "auto"),
        ("느린 피드", "/slow.xml", "auto"),
        ("쓰레기 피드", "/garbage.xml", "auto"),
        ("폭탄 피드", "/bomb.xml", "auto"),
    ]
    lines = [
        "output:",
        "  dir: out",
        '  title: "광산 뉴스 모음"',
        '  link: "https://news.example.org/"',
        "  limit: 50",
        "fetch:",
        "  timeout: 2",
        "feeds:",
    ]
    for name, path, level in feeds:
        lines += [
            f"  - name: {name}",
            f"    url: {server.url(path)}",
            f"    redistribution: {level}",
        ]
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def rss_items(out: Path) -> list[ET.Element]:
    return ET.parse(out / "feed.xml").getroot().findall("./channel/item")


def all_outputs(out: Path) -> str:
    return "".join((out / f).read_text(encoding="utf-8") for f in OUTPUTS)


OUTPUTS = ("feed.xml", "atom.xml", "feed.json", "index.html")


@dataclass
class Poll:
    cfg: Path
    server: FeedServer
    stdout: str

    @property
    def out(self) -> Path:
        return self.cfg.parent / "out"


@pytest.fixture
def first_poll(tmp_path: Path, feed_server: FeedServer) -> Poll:
    serve(feed_server)
    cfg = write_config(tmp_path, feed_server)
    result = run_cli("poll", "--config", str(cfg))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1  # some providers are broken on purpose
    return Poll(cfg, feed_server, result.stdout)


def test_first_poll_publishes_every_format_and_reports_each_failure(first_poll: Poll) -> None:
    out = first_poll.out
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob("*.tmp*")) and not list(out.glob(".*"))
    report = {
        line.split()[1]: line for line in first_poll.stdout.splitlines() if line[:1].isupper()
    }
    assert "HTTP 404" in report["없는"]
    assert "HTTP 410" in report["사라진"]
    assert "HTTP 500" in report["고장난"]
    assert "timed out" in report["느린"]
    assert report["쓰레기"].startswith("FAILED")
    assert "entities" in report["폭탄"]
    assert "moved permanently" in report["이사간"]
    assert report["한국IT산업뉴스"].startswith("OK")


def test_korean_feed_decoded_dated_and_cut_to_summary(first_poll: Poll) -> None:
    out = first_poll.out
    items = {i.findtext("title"): i for i in rss_items(out)}
    item = items["똠방각하 데이터센터 3곳 신설"]
    # 2025.10.16 19:58 in Korea time (the feed says <language>ko</language>) = 10:58 UTC.
    published = parsedate_to_datetime(item.findtext("pubDate") or "")
    assert published.isoformat() == "2025-10-16T10:58:00+00:00"
    dated = items["반도체 장비 수출 석 달째 증가"]
    assert parsedate_to_datetime(dated.findtext("pubDate") or "").isoformat() == (
        "2025-10-17T00:05:00+00:00"
    )
    description = re.sub(r"<[^>]+>", "", item.findtext("description") or "")
    assert "광주 광산구에 데이터센터" in description
    assert "무단 전재" in description  # the provider's notice is shown
    assert "기사제공처: 한국IT산업뉴스" in description
    # summary level: the body beyond the excerpt never leaks, in any format
    everything = all_outputs(out)
    assert "UNIQUE-TAIL" not in everything
    assert "\ufffd" not in everything and "Ã" not in everything


def test_cc_blog_is_full_text_with_resolved_links_and_no_scripts(first_poll: Poll) -> None:
    out = first_poll.out
    feed = json.loads((out / "feed.json").read_text(encoding="utf-8"))
    by_title = {i["title"]: i for i in feed["items"]}
    wal = by_title["Making SQLite & WAL work for you"]
    assert "FULLTEXT-MARKER" in wal["content_html"]
    assert 'href="https://notes.example/docs/wal"' in wal["content_html"]
    assert wal["url"] == "https://notes.example/2025/wal.html"
    assert wal["authors"] == [{"name": "Jane Doe"}]
    injected = by_title["Injected"]["content_html"]
    assert "SAFE-TEXT" in injected
    everything = all_outputs(out)
    for bad in ("<script", "onerror", "javascript:", "<iframe", "pwned"):
        assert bad not in everything.lower(), bad


def test_every_item_is_attributed_in_every_format(first_poll: Poll) -> None:
    out = first_poll.out
    items = rss_items(out)
    assert items
    for item in items:
        source = item.find("source")
        assert source is not None and source.text and source.get("url", "").startswith("http")
        assert item.findtext("dc:creator", namespaces=NS)
        assert item.findtext("link", "").startswith("https://")
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "false"
        assert "기사제공처:" in (item.findtext("description") or "")
    atom = ET.parse(out / "atom.xml").getroot()
    for entry in atom.findall("atom:entry", NS):
        assert entry.findtext("atom:source/atom:title", namespaces=NS)
        assert entry.find("atom:source/atom:link", NS) is not None
        assert entry.findtext("atom:author/atom:name", namespaces=NS)
    feed = json.loads((out / "feed.json").read_text(encoding="utf-8"))
    for entry in feed["items"]:
        assert entry["authors"][0]["name"] and entry["_source"]["provider"]
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count("기사제공처:") == len(items)


def test_none_provider_and_duplicates(first_poll: Poll) -> None:
    out = first_poll.out
    everything = all_outputs(out)
    assert "SECRET" not in everything
    links = [i.findtext("link") for i in rss_items(out)]
    assert len(links) == len(set(links))
    # The partner's copy of story 1001 (same link plus utm_*) is the same story: published
    # once, from the provider whose terms allow the most, crediting the partner too.
    story = [i for i in rss_items(out) if "idxno=1001" in (i.findtext("link") or "")]
    assert len(story) == 1
    assert "파트너 통신" in (story[0].findtext("description") or "")
    # the 301-moved provider carries the same stories: still one item each
    titles = [i.findtext("title") for i in rss_items(out)]
    assert titles.count("가을 축제 주말 개막") == 1


def test_second_poll_in_new_process(first_poll: Poll) -> None:
    out = first_poll.out
    cfg, server = first_poll.cfg, first_poll.server
    guids_before = {i.findtext("link"): i.findtext("guid") for i in rss_items(out)}
    server.routes["/kit.xml"] = Route((E2E / "kitnews-2.xml").read_bytes(), content_type="text/xml")
    server.log.clear()
    result = run_cli("poll", "--config", str(cfg))
    assert "Traceback" not in result.stderr, result.stderr
    # unchanged providers answered 304 to our validators
    blog = server.requests("/blog.xml")
    assert blog and blog[0].headers.get("if-none-match") and blog[0].status == 304
    assert server.requests("/partner.xml")[0].status == 304
    # the gone feed is not asked again
    assert server.requests("/gone.xml") == []
    assert "gone" in result.stdout
    after = {i.findtext("link"): i.findtext("guid") for i in rss_items(out)}
    for link, guid in guids_before.items():
        assert after[link] == guid  # old items kept, guids stable
    new = [link for link in after if link and "idxno=1003" in link]
    assert len(new) == 1
    assert rss_items(out)[0].findtext("title") == "새 소식: 광산구 스마트 버스정류장"
    assert re.search(r"1 new", result.stdout)
