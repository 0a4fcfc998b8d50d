"""OPML both ways: `output/sources.opml` lists the providers; `import-opml` adds feeds to the
config without disturbing a single comment, quote or line the operator wrote."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from aggregator import config
from tests.conftest import DATA, run_cli
from tests.feedserver import FeedServer, Route

OPML = DATA / "opml"


def operator_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "feeds.yaml"
    shutil.copy(OPML / "feeds.yaml", cfg)
    return cfg


def test_import_adds_new_feeds_after_the_existing_ones_keeping_every_line(
    tmp_path: Path,
) -> None:
    cfg = operator_config(tmp_path)
    before = cfg.read_text(encoding="utf-8")
    result = run_cli("import-opml", str(OPML / "reader-export.opml"), "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    after = cfg.read_text(encoding="utf-8")
    assert after.startswith(before)  # comments, quotes, indentation, order: all untouched
    assert after[len(before) :] == (
        "- name: 광주일보\n"
        "  url: https://www.kwangju.co.kr/rss/all.xml\n"
        "  redistribution: auto\n"
        "- name: 광산구청 보도자료\n"  # from a nested folder
        "  url: https://www.gwangsan.go.kr/rss/press.xml\n"
        "  redistribution: auto\n"
        "- name: Planet Python (planet.python.example)\n"  # the name was taken
        "  url: https://planet.python.example/rss20.xml\n"
        "  redistribution: auto\n"
    )
    lines = result.stdout.splitlines()
    assert "SKIPPED  http://hani.co.kr/rss/  (already in the config as '한겨레')" in lines
    assert any("utm_source=reader" in line and "'Planet Python'" in line for line in lines)
    assert "SKIPPED  gopher://old.example/feed  (not an http(s) URL)" in lines
    assert lines[-1] == f"3 feeds added to {cfg}, 3 skipped"
    assert run_cli("check", "--config", str(cfg)).returncode == 0


def test_import_twice_adds_nothing_the_second_time(tmp_path: Path) -> None:
    cfg = operator_config(tmp_path)
    assert run_cli("import-opml", str(OPML / "reader-export.opml"), "-c", str(cfg)).returncode == 0
    once = cfg.read_bytes()
    again = run_cli("import-opml", str(OPML / "reader-export.opml"), "-c", str(cfg))
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1].startswith("0 feeds added")
    assert cfg.read_bytes() == once


def test_import_with_a_level_and_a_legacy_korean_encoding(tmp_path: Path) -> None:
    cfg = operator_config(tmp_path)
    result = run_cli(
        "import-opml", str(OPML / "euc-kr.opml"), "-c", str(cfg), "--redistribution", "title"
    )
    assert result.returncode == 0, result.stderr
    feed = config.load(cfg).feed("똠방 뉴스")
    assert feed is not None and feed.redistribution == "title"


def test_import_into_a_new_config_file_creates_it(tmp_path: Path) -> None:
    cfg = tmp_path / "new.yaml"
    result = run_cli("import-opml", str(OPML / "euc-kr.opml"), "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    assert [f.name for f in config.load(cfg).feeds] == ["똠방 뉴스"]


def test_bad_input_is_refused_and_the_config_is_left_alone(tmp_path: Path) -> None:
    cfg = operator_config(tmp_path)
    before = cfg.read_bytes()
    bad_xml = tmp_path / "bad.opml"
    bad_xml.write_text("<opml><body><outline", encoding="utf-8")
    cases = [
        (OPML / "entities.opml", "declares XML entities"),
        (bad_xml, "not an OPML file"),
        (tmp_path / "missing.opml", "cannot read"),
    ]
    for path, message in cases:
        result = run_cli("import-opml", str(path), "-c", str(cfg))
        assert result.returncode == 2, (path, result.stdout)
        assert message in result.stderr and "Traceback" not in result.stderr
    assert cfg.read_bytes() == before
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_an_invalid_config_is_not_written_to(tmp_path: Path) -> None:
    cfg = operator_config(tmp_path)
    broken = cfg.read_text(encoding="utf-8").replace("  author:", "  colour: red\n  author:")
    cfg.write_text(broken, encoding="utf-8")
    result = run_cli("import-opml", str(OPML / "reader-export.opml"), "-c", str(cfg))
    assert result.returncode == 2
    assert "unknown key 'feeds[1].colour'" in result.stderr
    assert cfg.read_text(encoding="utf-8") == broken


def test_sources_opml_lists_published_providers_and_imports_back(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    e2e = DATA / "e2e"
    feed_server.routes["/kit.xml"] = Route((e2e / "kitnews.xml").read_bytes(), "text/xml")
    feed_server.routes["/secret.xml"] = Route((e2e / "secret.xml").read_bytes())
    feed_server.routes["/blog.xml"] = Route((e2e / "blog-cc.xml").read_bytes())
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "output: {dir: out, title: 광산 뉴스 모음}\nfeeds:\n"
        f"  - {{name: 한국IT산업뉴스, url: '{feed_server.url('/kit.xml')}'}}\n"
        f"  - {{name: 비공개 제공사, url: '{feed_server.url('/secret.xml')}',"
        " redistribution: none}\n"
        f"  - {{name: Open Notes, url: '{feed_server.url('/blog.xml')}'}}\n",
        encoding="utf-8",
    )
    assert run_cli("poll", "--config", str(cfg)).returncode == 0
    root = ET.parse(tmp_path / "out" / "sources.opml").getroot()
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "광산 뉴스 모음 - sources"
    outlines = {o.get("text"): o.attrib for o in root.iter("outline")}
    assert set(outlines) == {"한국IT산업뉴스", "Open Notes"}  # `none` providers are not named
    kit = outlines["한국IT산업뉴스"]
    assert kit["type"] == "rss" and kit["xmlUrl"] == feed_server.url("/kit.xml")
    assert kit["htmlUrl"].startswith("http")  # the provider's home page, from its feed

    fresh = tmp_path / "fresh.yaml"
    imported = run_cli("import-opml", str(tmp_path / "out" / "sources.opml"), "-c", str(fresh))
    assert imported.returncode == 0, imported.stderr
    names = [(f.name, f.url) for f in config.load(fresh).feeds]
    assert names == [
        ("한국IT산업뉴스", feed_server.url("/kit.xml")),
        ("Open Notes", feed_server.url("/blog.xml")),
    ]
