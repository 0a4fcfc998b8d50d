"""Real consumers of the served output: the newsboat feed reader and a headless Chromium.

Both come from Debian's packages (`apt-get install newsboat chromium`; CI installs them).
Without them these tests skip, unless AGGREGATOR_REQUIRE_TOOLS is set (CI sets it): then
they fail. Everything stays on 127.0.0.1: the browser's requests to any other origin
(providers' images in item bodies) are answered by a stub, never sent.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_serve import ROOT, ServeProcess, Site, make_site, request

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
NS = {"atom": "http://www.w3.org/2005/Atom", "dc": "http://purl.org/dc/elements/1.1/"}
FEED_TYPES = {
    "application/rss+xml": "feed.xml",
    "application/atom+xml": "atom.xml",
    "application/feed+json": "feed.json",
}
# 1x1 transparent PNG, the stand-in for every image hosted elsewhere
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def require(available: bool, what: str, install: str) -> None:
    if available:
        return
    if os.environ.get("AGGREGATOR_REQUIRE_TOOLS"):
        pytest.fail(f"{what} is required (AGGREGATOR_REQUIRE_TOOLS) but missing: {install}")
    pytest.skip(f"{what} not installed ({install}); set AGGREGATOR_REQUIRE_TOOLS=1 to fail instead")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("readers"))


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[str]:
    proc = ServeProcess(("serve", "--config", str(site.config)))
    yield proc.url
    code, log = proc.stop()
    assert code == 0, log


def served_items(base: str, name: str) -> set[tuple[str, str, str]]:
    """(title, link, author) of every item in the served feed, read with a plain XML parser."""
    root = ET.fromstring(request(base, f"/{name}").body)
    if name == "feed.xml":
        return {
            (i.findtext("title", ""), i.findtext("link", ""), i.findtext("dc:creator", "", NS))
            for i in root.iter("item")
        }
    items = set()
    for entry in root.iterfind("atom:entry", NS):
        link = next(
            el.get("href", "")
            for el in entry.iterfind("atom:link", NS)
            if el.get("rel", "alternate") == "alternate"
        )
        author = entry.findtext("atom:author/atom:name", "", NS)
        items.add((entry.findtext("atom:title", "", NS), link, author))
    return items


@pytest.mark.parametrize("name", ["feed.xml", "atom.xml"])
def test_newsboat_reads_every_item_with_title_link_and_author(
    server: str, site: Site, tmp_path: Path, name: str
) -> None:
    newsboat = shutil.which("newsboat")
    require(newsboat is not None, "newsboat", "apt-get install newsboat")
    assert newsboat is not None
    url = f"{server}{name}"
    (tmp_path / "urls").write_text(url + "\n", encoding="utf-8")
    (tmp_path / "config").write_text("", encoding="utf-8")
    cache = tmp_path / "cache.db"
    # twice: newsboat keeps a feed's validators from its second reload on
    for _ in range(2):
        done = subprocess.run(
            [newsboat, "-x", "reload", "-u", "urls", "-c", str(cache), "-C", "config"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr
    expected = served_items(server, name)
    assert len(expected) >= 4
    with sqlite3.connect(cache) as db:
        read = set(db.execute("SELECT title, url, author FROM rss_item WHERE feedurl = ?", (url,)))
        etag, lastmodified = db.execute(
            "SELECT etag, lastmodified FROM rss_feed WHERE rssurl = ?", (url,)
        ).fetchone()
    assert read == expected
    assert all(title and link.startswith("http") and author for title, link, author in read)
    # newsboat asks for gzip and keeps our validators for its conditional GETs
    gz = request(server, f"/{name}", headers={"Accept-Encoding": "gzip, deflate"})
    assert etag == gz.headers["etag"]
    assert lastmodified == int((site.out / name).stat().st_mtime)


def test_the_page_renders_in_chromium_with_every_item_and_credit(server: str) -> None:
    require(Path(CHROMIUM).exists(), "chromium", "apt-get install chromium")
    try:
        from playwright.sync_api import Route as PWRoute
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright (Python package)", "pip install '.[dev]'")
        raise
    items = json.loads(request(server, "/feed.json").body)["items"]
    assert items
    elsewhere: list[str] = []

    def stub_other_origins(route: PWRoute) -> None:
        if route.request.url.startswith(server):
            route.continue_()
            return
        elsewhere.append(route.request.url)
        if route.request.resource_type == "image":
            route.fulfill(status=200, content_type="image/png", body=PIXEL)
        else:
            route.fulfill(status=204)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", stub_other_origins)
            answer = page.goto(server, wait_until="networkidle")
            assert answer is not None and answer.status == 200
            assert page.locator("h1").is_visible()
            for item in items:
                article = page.locator("article").filter(
                    has=page.get_by_role("link", name=item["title"], exact=True)
                )
                assert article.count() == 1, item["title"]
                assert article.locator("h2").inner_text() == item["title"]
                assert article.locator("h2").is_visible()
                credit = article.locator(".credit")
                assert credit.is_visible(), item["title"]
                assert credit.inner_text().startswith("기사제공처:")
                assert item["_source"]["provider"] in credit.inner_text()
            alternates = page.eval_on_selector_all(
                "link[rel=alternate]", "links => links.map(l => [l.type, l.href])"
            )
            assert {t for t, _ in alternates} == set(FEED_TYPES)
            for ctype, href in alternates:
                assert href == f"{server}{FEED_TYPES[ctype]}"
                served = request(server, f"/{FEED_TYPES[ctype]}")
                assert served.status == 200
                assert served.headers["content-type"] == f"{ctype}; charset=utf-8"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "index.png", full_page=True)
            # narrow screen: the page reflows instead of scrolling sideways
            page.set_viewport_size({"width": 375, "height": 800})
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0
            page.screenshot(path=ARTIFACTS / "index-narrow.png", full_page=True)
        finally:
            browser.close()
    assert errors == []
