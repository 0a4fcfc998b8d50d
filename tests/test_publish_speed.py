"""The fast publish paths write what readers got before: same text, same files.

Files are staged and synced in parallel, stories are read a page at a time, and a daemon
reuses the items of stories that did not change. Each must be indistinguishable from the
slow way it replaced.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import FeedConfig
from aggregator.models import StoredItem
from aggregator.policy import Memo, terms_fingerprint, text
from aggregator.publish import Staged, write_files
from aggregator.store import Store
from tests.test_store import entry, save

T0 = datetime(2025, 10, 16, 10, 58, tzinfo=UTC)


def test_excerpt_still_drops_footers_and_notices() -> None:
    html = "<p>첫 문장이다. 둘째 문장이다.</p><p>기사제공: 예시뉴스 무단 전재 및 재배포 금지</p>"
    assert text.excerpt(html, 200) == "첫 문장이다. 둘째 문장이다."


def test_staged_files_replace_together(tmp_path: Path) -> None:
    (tmp_path / "same").write_bytes(b"same")
    files = {tmp_path / f"f{i}": f"{i}".encode() for i in range(40)} | {tmp_path / "same": b"same"}
    written = write_files(files)
    assert sorted(written) == sorted(p for p in files if p.name != "same")
    assert all(p.read_bytes() == data for p, data in files.items())
    assert oct((tmp_path / "f1").stat().st_mode & 0o777) == oct(0o644)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_staged_failure_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_bytes(b"old")
    real = os.replace
    calls = []

    def failing_replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"), Staged() as batch:
        for i in range(5):
            batch.add(tmp_path / f"f{i}", b"new")
        batch.commit()
    # Each file is old or new, whole; no temp file is left.
    assert {(tmp_path / f"f{i}").read_bytes() for i in range(5)} <= {b"old", b"new"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_staged_without_commit_writes_nothing(tmp_path: Path) -> None:
    with Staged() as batch:
        batch.add(tmp_path / "a", b"a")
    assert list(tmp_path.iterdir()) == []


def _entry(**changes: object) -> StoredItem:
    values: dict[str, object] = {
        "id": 1,
        "cluster_id": 1,
        "cluster_guid": "urn:story:1",
        "feed_name": "wire",
        "feed_url": "https://wire.example/rss",
        "key": "k1",
        "title": "제목",
        "first_seen": T0,
        "link": "https://wire.example/1",
        "author": "김기자",
        "published": T0,
        "content_html": "<p>본문 첫 문장이다. 둘째 문장이다.</p><p>무단 전재 및 재배포 금지</p>",
    }
    return StoredItem(**{**values, **changes})  # type: ignore[arg-type]


def test_memo_builds_an_item_again_only_when_its_entries_or_terms_changed() -> None:
    feeds = {"wire": FeedConfig(name="wire", url="https://wire.example/rss")}
    terms = {"wire": terms_fingerprint(feeds["wire"])}
    memo = Memo()
    memo.start(keep=10)
    first, _ = memo.build([_entry()], feeds, "ko", terms)
    assert first is not None and first.level == "summary" and first.rights
    assert memo.build([_entry()], feeds, "ko", terms)[0] is first  # found, not built
    edited = memo.build([_entry(content_html="<p>고친 본문.</p>")], feeds, "ko", terms)[0]
    assert edited is not None and "고친 본문" in edited.content_html
    assert edited.rights is None  # the notice went with the edit: terms recomputed
    full = {"wire": feeds["wire"].model_copy(update={"redistribution": "full"})}
    as_full = memo.build([_entry()], full, "ko", {"wire": terms_fingerprint(full["wire"])})[0]
    assert as_full is not None and as_full.level == "full"
    english = memo.build([_entry()], feeds, "en", terms)[0]
    assert english is not None and "Source: wire" in english.content_html
    # A publish keeps what the one before it used, and no more.
    memo.start(keep=10)
    memo.start(keep=10)
    assert memo.build([_entry()], feeds, "ko", terms)[0] is not first


def test_memo_keeps_only_the_newest_stories_for_the_next_publish() -> None:
    feeds = {"wire": FeedConfig(name="wire", url="https://wire.example/rss")}
    terms = {"wire": terms_fingerprint(feeds["wire"])}
    memo = Memo()
    memo.start(keep=2)
    stories = [[_entry(key=f"k{i}", link=f"https://wire.example/{i}")] for i in range(4)]
    built = [memo.build(s, feeds, "ko", terms)[0] for s in stories]
    memo.start(keep=2)
    again = [memo.build(s, feeds, "ko", terms)[0] for s in stories]
    assert [a is b for a, b in zip(again, built, strict=True)] == [True, True, False, False]


def test_stories_read_again_by_guid_are_those_stories_with_all_members(tmp_path: Path) -> None:
    """An archive page read again: one read by guid, the same entries as the full read."""
    store = Store(f"sqlite:///{tmp_path / 'test.db'}")
    try:
        save(store, "a", *(entry(str(i), published=T0 - timedelta(hours=i)) for i in range(6)))
        save(store, "b", entry("x", link="https://a.example/2"))  # joins story 2
        everything = store.latest_clusters(["a", "b"], 10)
        wanted = [everything[4][0].cluster_guid, everything[2][0].cluster_guid, "urn:none"]
        again = store.latest_clusters(["a", "b"], 3, guids=wanted)
        assert again == [everything[2], everything[4]]  # story order, every member
        assert len(everything[2]) == 2
        assert store.latest_clusters(["b"], 3, guids=wanted) == [everything[2]]
    finally:
        store.close()
