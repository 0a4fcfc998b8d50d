"""The store behaves the same on SQLite (the default) and PostgreSQL (for scale-out)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig

from aggregator.models import FeedState, Fetched, ParsedEntry, ParsedFeed
from aggregator.policy import rights
from aggregator.store import SchemaError, Store, schema_versions

NOW = datetime(2025, 10, 17, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store(url)
    yield s
    s.close()


def entry(key: str, **kw: object) -> ParsedEntry:
    values: dict[str, object] = {
        "title": f"title {key}",
        "guid": key,
        "link": f"https://a.example/{key}",
        "author": "김유미",
        "published": NOW - timedelta(hours=1),
        "summary_html": f"<p>text of {key}</p>",
    }
    values.update(kw)
    return ParsedEntry(key=key, **values)  # type: ignore[arg-type]


def save(store: Store, name: str, *entries: ParsedEntry, now: datetime = NOW) -> tuple[int, int]:
    state = FeedState(name=name, url=f"https://{name}.example/rss", status=200, last_ok=now)
    fetched = Fetched(name=name, url=state.url, status=200, body=b"")
    result = store.store_entries(state, fetched, ParsedFeed(title=name, entries=entries), now)
    return result.new, result.updated


def test_repolled_entry_is_stored_once_and_changes_update_it(store: Store) -> None:
    assert save(store, "a", entry("1"), entry("2")) == (2, 0)
    assert save(store, "a", entry("1"), entry("2")) == (0, 0)
    assert save(store, "a", entry("1", title="corrected"), entry("2")) == (0, 1)
    clusters = store.latest_clusters(["a"], 10)
    assert sorted(m.title for c in clusters for m in c) == ["corrected", "title 2"]


def test_same_link_from_two_providers_joins_one_story(store: Store) -> None:
    save(store, "a", entry("x", link="https://news.example/story?id=7"))
    save(
        store,
        "b",
        entry("b-1", link="http://NEWS.example/story?id=7&utm_source=rss&fbclid=abc#top"),
        entry("b-2", link="https://news.example/story?id=8"),
    )
    clusters = store.latest_clusters(["a", "b"], 10)
    sizes = sorted(len(c) for c in clusters)
    assert sizes == [1, 2]
    merged = next(c for c in clusters if len(c) == 2)
    assert {m.feed_name for m in merged} == {"a", "b"}
    assert merged[0].cluster_guid == merged[1].cluster_guid


def test_short_numeric_guids_do_not_merge_different_stories(store: Store) -> None:
    save(store, "a", entry("123", link="https://a.example/1"))
    save(store, "b", entry("123", link="https://b.example/other"))
    assert len(store.latest_clusters(["a", "b"], 10)) == 2


def test_story_guid_is_stable_across_reopen_and_new_members(store: Store) -> None:
    save(store, "a", entry("1", link="https://n.example/s1"))
    guid = store.latest_clusters(["a"], 10)[0][0].cluster_guid
    save(store, "b", entry("z", link="https://n.example/s1"))
    again = Store(store.url)
    try:
        members = again.latest_clusters(["a", "b"], 10)[0]
    finally:
        again.close()
    assert {m.cluster_guid for m in members} == {guid}
    assert guid.startswith("urn:uuid:")


def test_newest_first_and_limit(store: Store) -> None:
    save(store, "a", *(entry(str(i), published=NOW - timedelta(hours=i)) for i in range(5)))
    clusters = store.latest_clusters(["a"], 3)
    assert [c[0].key for c in clusters] == ["0", "1", "2"]
    assert [c[0].key for c in store.latest_clusters(["a"], 3, offset=3)] == ["3", "4"]


def test_redated_entry_does_not_jump_to_top(store: Store) -> None:
    save(store, "a", entry("old", published=NOW - timedelta(days=3)))
    save(store, "a", entry("new", published=NOW - timedelta(hours=1)), now=NOW)
    later = NOW + timedelta(days=1)
    save(
        store,
        "a",
        entry("old", published=later),
        entry("new", published=NOW - timedelta(hours=1)),
        now=later,
    )
    assert [c[0].key for c in store.latest_clusters(["a"], 10)] == ["new", "old"]


def test_feed_state_round_trip(store: Store) -> None:
    until = NOW + timedelta(minutes=5)
    state = FeedState(
        name="a",
        url="https://a.example/rss",
        etag='"x"',
        last_modified="Fri",
        errors=2,
        retry_until=until,
        gone=True,
        status=410,
    )
    store.save_feed_state(state)
    got = store.feed_states()["a"]
    assert (got.etag, got.errors, got.retry_until, got.gone, got.status) == (
        '"x"',
        2,
        until,
        True,
        410,
    )
    assert got.retry_until is not None and got.retry_until.tzinfo is not None


def test_find_entries_by_link_or_guid(store: Store) -> None:
    save(store, "a", entry("g1", link="https://n.example/s1"))
    save(store, "b", entry("g2", link="https://n.example/s1?utm_medium=x"))
    found = store.find_entries("https://n.example/s1")
    assert {m.feed_name for m in found} == {"a", "b"}
    assert store.find_entries(found[0].cluster_guid)
    assert store.find_entries("nothing-like-this") == []


def test_fresh_database_gets_the_current_schema_version(store: Store) -> None:
    with store.engine.connect() as conn:
        current, head = schema_versions(conn)
    assert current == head


def test_unknown_schema_version_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(SchemaError, match="revision ffff is unknown"):
        Store(store.url)


def test_schema_and_migrations_agree(store: Store) -> None:
    """A table or column added without a migration would break `aggregator migrate`."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "aggregator:migrations")
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        alembic_command.check(cfg)  # raises if the models differ from the migrations


def test_unchanged_entries_cost_no_entry_writes(store: Store) -> None:
    """A changed feed body whose entries are all the same writes only the feed's own state."""
    batch = [entry(str(i), summary_html=f"<p>{'본문 ' * 30} story {i}</p>") for i in range(5)]
    save(store, "a", *batch)
    writes: list[str] = []

    def record(conn: object, cursor: Any, statement: str, *args: object) -> None:
        changed = statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        if changed and cursor.rowcount:  # rows actually written
            writes.append(statement.split("(")[0].split(" SET")[0].strip())

    sa.event.listen(store.engine, "after_cursor_execute", record)
    try:
        assert save(store, "a", *batch) == (0, 0)
    finally:
        sa.event.remove(store.engine, "after_cursor_execute", record)
    assert writes and all(w.split()[-1].strip('"') == "feeds" for w in writes), writes


def test_notice_lines_are_stored_and_ignored_once_made_under_other_rules(store: Store) -> None:
    """Lines made by parsing stand in for the bodies at publish time, but only under the
    rules that made them: lines from an older version's rules are not trusted (fail closed)."""
    body = "<p>한국은행이 기준금리를 동결했다.</p><p>무단 전재 및 재배포금지</p>"
    lines = rights.notice_lines(("", body))
    assert lines == ("무단 전재 및 재배포금지",)
    save(store, "a", entry("1", summary_html="", content_html=body, notice_lines=lines))
    [[item]] = store.latest_clusters(["a"], 10)
    assert item.notice_lines == lines
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE entries SET notice_lines = :v"),
            {"v": '{"rules": "older", "lines": []}'},
        )
    [[item]] = store.latest_clusters(["a"], 10)
    assert item.notice_lines is None
    found = rights.detect([], [], bodies=[item.summary_html, item.content_html])
    assert any("무단 전재" in str(s) for s in found.signals)  # read from the body again
