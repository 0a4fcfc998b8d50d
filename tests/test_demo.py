"""`aggregator demo` works offline and leaves a browsable output/."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def test_demo_publishes_bundled_samples(tmp_path: Path) -> None:
    result = run_cli("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "output"
    for name in ("feed.xml", "atom.xml", "feed.json", "index.html"):
        assert (out / name).is_file()
    items = json.loads((out / "feed.json").read_text(encoding="utf-8"))["items"]
    titles = {i["title"] for i in items}
    assert "반도체 장비 수출 석 달째 증가" in titles  # EUC-KR sample decoded
    assert "SQLite WAL 모드로 동시성 높이기" in titles  # CC BY blog
    assert not any("secret.example" in i["url"] for i in items)  # redistribution: none
    # the partner's utm-tagged copy of story 1001 is merged into the provider's item
    assert sum("idxno=1001" in i["url"] for i in items) == 1
    assert "index.html" in result.stdout
    assert not list(tmp_path.glob("*.db"))  # the demo store is temporary
