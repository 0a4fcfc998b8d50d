"""Parsing in worker processes gives what parsing in place gives, and survives a dead worker."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from multiprocessing import forkserver
from pathlib import Path

import pytest

from aggregator import parallel, parse
from aggregator.parallel import ParseArgs

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _rss(n: int) -> bytes:
    items = "".join(
        f"<item><title>기사 {n}-{i}</title><link>https://p{n}.example/{i}</link>"
        f"<author>기자{i}@p{n}.example</author><pubDate>2025.10.16 19:58</pubDate>"
        f"<description>&lt;p&gt;{n}번 언론사의 {i}번째 기사 본문입니다. 금리는 {i}.5%로 "
        f"동결됐다.&lt;/p&gt;&lt;p&gt;무단 전재 및 재배포금지&lt;/p&gt;</description></item>"
        for i in range(5)
    )
    doc = (
        '<?xml version="1.0" encoding="euc-kr"?><rss version="2.0">'
        f"<channel><title>언론 {n}</title>{items}</channel></rss>"
    )
    return doc.encode("cp949")


def _jobs(count: int) -> list[ParseArgs]:
    jobs: list[ParseArgs] = []
    for n in range(count):
        body = b"<html>not a feed</html>" if n == 3 else _rss(n)
        jobs.append((body, f"https://p{n}.example/rss", None, "Asia/Seoul", NOW))
    jobs.insert(5, None)  # a feed that answered 304: nothing to parse
    return jobs


def _outcome(parsing: parallel.Parsing | None) -> object:
    if parsing is None:
        return None
    try:
        return parsing.result()
    except parse.ParseError as exc:
        return f"ParseError: {exc}"


def test_workers_parse_exactly_as_the_main_process_does() -> None:
    jobs = _jobs(parallel.MIN_BODIES + 4)
    assert len([j for j in jobs if j is not None]) >= parallel.MIN_BODIES
    pooled = [_outcome(p) for p in parallel.parse_ahead(jobs)]
    inline = [_outcome(None if j is None else parallel.Parsing(j)) for j in jobs]
    assert pooled == inline
    assert pooled[5] is None
    assert str(pooled[3]).startswith("ParseError: not a feed")
    feed, prepared = pooled[0]  # type: ignore[misc]
    assert feed.entries[0].title == "기사 0-0"
    assert feed.entries[0].published == datetime(2025, 10, 16, 10, 58, tzinfo=UTC)
    assert set(prepared) == {e.key for e in feed.entries}


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(parallel.WORKERS < 1, reason="one CPU: parsing never leaves the process")
def test_a_killed_worker_only_moves_its_bodies_back_to_the_main_process() -> None:
    jobs = _jobs(parallel.MIN_BODIES + 8)
    parses = parallel.parse_ahead(jobs)
    first = _outcome(next(parses))
    server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    workers = _children(server)
    assert workers, "the workers run under the fork server"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    rest = [_outcome(p) for p in parses]
    inline = [_outcome(None if j is None else parallel.Parsing(j)) for j in jobs]
    assert [first, *rest] == inline
