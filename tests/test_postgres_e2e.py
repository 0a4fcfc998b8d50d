"""The same poll against PostgreSQL: the store URL is the only difference."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DATA, run_cli
from tests.feedserver import FeedServer, Route


def test_poll_twice_on_postgresql(tmp_path: Path, feed_server: FeedServer, pg_url: str) -> None:
    feed_server.routes["/kit.xml"] = Route(
        (DATA / "e2e" / "kitnews.xml").read_bytes(), content_type="text/xml"
    )
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        f"store: {{url: '{pg_url}'}}\n"
        "output: {dir: out, link: 'https://news.example.org/'}\n"
        f"feeds:\n  - name: 한국IT산업뉴스\n    url: {feed_server.url('/kit.xml')}\n",
        encoding="utf-8",
    )
    first = run_cli("poll", "--config", str(cfg))
    assert first.returncode == 0, first.stderr
    assert "2 new" in first.stdout
    ids = [i["id"] for i in json.loads((tmp_path / "out" / "feed.json").read_text())["items"]]
    feed_server.routes["/kit.xml"] = Route(
        (DATA / "e2e" / "kitnews-2.xml").read_bytes(), content_type="text/xml"
    )
    second = run_cli("poll", "--config", str(cfg))
    assert second.returncode == 0, second.stderr
    assert "1 new" in second.stdout
    after = [i["id"] for i in json.loads((tmp_path / "out" / "feed.json").read_text())["items"]]
    assert after[1:] == ids and len(after) == 3
    assert not list(tmp_path.glob("*.db"))
