"""Near-duplicate detection cost as the store grows: `python -m bench.dedupe_bench`.

For each size (10k and 100k stored entries) a SQLite store is filled in bulk with generated
Korean articles over 100 feeds: every entry, its cluster and match record, and, for the
entries inside the window (dedupe.WINDOW_ENTRIES, the most recent 50k), the near-duplicate
index rows (main text, numbers, LSH bands) and the feeds' segment counts, exactly as
`Store.store_entries` would have written them. Then, in a fresh process per run (so peak RSS
is the run's own; VmHWM on Linux), 10 feeds each poll 20 new entries through the real
`Store.store_entries`; 10% of them are edited reprints of stored entries from other feeds,
so the match path runs.

Printed: a Markdown table of the median per-entry cost (wall and CPU time of store_entries
divided by the entries stored, after one unmeasured warm-up poll), the peak of Python
allocations during the polls (tracemalloc) and the process's peak RSS, per size, and the
100k/10k ratios. Runs alternate between the sizes. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator import dedupe
from aggregator.models import FeedState, Fetched, ParsedEntry, ParsedFeed
from aggregator.store import Store
from aggregator.store.schema import clusters, entries, entry_matches, feed_segments, near_docs

SIZES = (10_000, 100_000)
FEEDS = 100
NOW = datetime(2025, 10, 28, 12, 0, tzinfo=UTC)
POLL_FEEDS, POLL_ENTRIES, REPRINTS = 10, 20, 0.1

_ENDINGS = ("했다.", "밝혔다.", "전했다.", "예정이다.", "것으로 보인다.", "설명했다.", "늘었다.")


def _vocabulary(rng: random.Random, size: int = 30_000) -> list[str]:
    """Words of 2-4 syllables drawn from 1,500 Hangul syllables (news uses about 2,000)."""
    syllables = [chr(0xAC00 + rng.randrange(11172)) for _ in range(1500)]
    return ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(size)]


def _article(rng: random.Random, words: list[str], cum: list[float]) -> list[str]:
    sentences = []
    for _ in range(rng.randint(5, 9)):
        body = rng.choices(words, cum_weights=cum, k=rng.randint(8, 14))
        if rng.random() < 0.5:
            body.insert(rng.randrange(len(body)), f"{rng.randint(2, 9999):,}억원")
        sentences.append(" ".join(body) + " " + rng.choice(_ENDINGS))
    return sentences


def _zipf(size: int) -> list[float]:
    return list(itertools.accumulate(1 / (rank + 1) for rank in range(size)))


def _html(sentences: list[str], feed: int) -> str:
    paras = [" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]
    footer = [
        f"피드{feed}일보는 독자 여러분의 제보를 기다립니다. 채널을 추가하시면 소식을 받아보실"
        " 수 있습니다.",
        f"ⓒ 피드{feed}일보 무단 전재 및 재배포 금지",
    ]
    return "".join(f"<p>{p}</p>" for p in paras + footer)


def _edit(rng: random.Random, sentences: list[str]) -> list[str]:
    """A copy desk's edit: one sentence dropped, a few words swapped."""
    edited = [s for i, s in enumerate(sentences) if i != rng.randrange(len(sentences))]
    return [s.replace("밝혔다.", "전했다.") for s in edited]


def build(path: Path, size: int, seed: int = 7) -> None:
    """Fill a store with `size` entries as store_entries would have left it."""
    rng = random.Random(seed)
    words = _vocabulary(rng)
    cum = _zipf(len(words))
    store = Store(f"sqlite:///{path}")
    window_start = max(0, size - dedupe.WINDOW_ENTRIES)
    span = timedelta(days=14 if size > dedupe.WINDOW_ENTRIES else 6)
    rows: dict[str, list[dict[str, Any]]] = {"c": [], "e": [], "m": []}
    window: list[tuple[int, str, datetime, list[str], list[str]]] = []
    early: list[list[str]] = []
    with store.engine.begin() as conn:
        for i in range(size):
            feed = i % FEEDS
            seen = NOW - span + span * i / size
            if i >= window_start or not early:
                sentences = _article(rng, words, cum)
                if len(early) < 1000:
                    early.append(sentences)
            else:  # outside the window only the entries table is read: recycle texts
                sentences = [*rng.choice(early), f"{i}번째 기사입니다."]
            html = _html(sentences, feed)
            key = f"https://feed{feed}.example/news/{i}"
            rows["c"].append({"id": i + 1, "guid": f"urn:uuid:bench-{i}", "first_seen": seen})
            rows["e"].append(
                {
                    "id": i + 1,
                    "feed_name": f"feed{feed}",
                    "key_hash": dedupe.key_hash(key),
                    "key": key,
                    "cluster_id": i + 1,
                    "guid": key,
                    "link": key,
                    "norm_link": dedupe.normalize_url(key),
                    "guid_key": dedupe.guid_key(key),
                    "text_hash": dedupe.key_hash(html),
                    "content_hash": dedupe.key_hash(html + "c"),
                    "title": sentences[0][:40],
                    "author": "기자",
                    "published": seen,
                    "sort_date": seen,
                    "first_seen": seen,
                    "summary_html": "",
                    "content_html": html,
                    "categories": "[]",
                }
            )
            rows["m"].append({"entry_id": i + 1, "rule": "first", "score": 1.0})
            if i >= window_start:
                window.append((i + 1, f"feed{feed}", seen, dedupe.segments(html), sentences))
            if len(rows["e"]) >= 5000 or i == size - 1:
                for table, name in ((clusters, "c"), (entries, "e"), (entry_matches, "m")):
                    conn.execute(table.insert(), rows[name])
                rows = {k: [] for k in rows}
        # The window's index rows, boilerplate learnt from each feed's own entries.
        counts = Counter(
            (name, dedupe.segment_hash(s)) for _, name, _, segs, _ in window for s in segs
        )
        docs: list[dict[str, Any]] = []
        bands: list[tuple[int, int]] = []
        for entry_id, name, seen, segs, _ in window:
            hashes = {dedupe.segment_hash(s) for s in segs}
            common = {h for h in hashes if counts[name, h] - 1 >= dedupe.BOILERPLATE_MIN_OTHERS}
            fp = dedupe.fingerprint(segs, common)
            assert fp is not None
            docs.append({"entry_id": entry_id, "seen": seen, "text": fp.text,
                         "numbers": " ".join(sorted(fp.numbers))})  # fmt: skip
            bands.extend((b, entry_id) for b in set(fp.bands))
        conn.execute(near_docs.insert(), docs)
        conn.exec_driver_sql("INSERT INTO near_bands (band, entry_id) VALUES (?, ?)", bands)
        conn.execute(
            feed_segments.insert(),
            [
                {"feed_name": f, "segment": h, "entries": n, "last_seen": NOW}
                for (f, h), n in counts.items()
            ],
        )
    store.close()
    recent = [sentences for *_, sentences in window[-2000:]]
    (path.parent / f"{path.name}.texts.json").write_text(
        json.dumps(recent, ensure_ascii=False), encoding="utf-8"
    )


def measure(path: Path, run: int) -> dict[str, float]:
    """One run in this process: 10 feeds poll 20 new entries each through the real store."""
    rng = random.Random(1000 + run)
    words = _vocabulary(random.Random(7))
    cum = _zipf(len(words))
    recent: list[list[str]] = json.loads(
        (path.parent / f"{path.name}.texts.json").read_text(encoding="utf-8")
    )
    store = Store(f"sqlite:///{path}")
    polls = []
    for f in range(POLL_FEEDS + 1):
        feed = FEEDS + run * (POLL_FEEDS + 1) + f  # new feeds: reprints come from other feeds
        batch = []
        for n in range(POLL_ENTRIES):
            reprint = rng.random() < REPRINTS
            sentences = _edit(rng, rng.choice(recent)) if reprint else _article(rng, words, cum)
            link = f"https://feed{feed}.example/run{run}/{n}"
            batch.append(
                ParsedEntry(
                    key=link, title=sentences[0][:40], guid=link, link=link, author="기자",
                    published=NOW, content_html=_html(sentences, feed),
                )
            )  # fmt: skip
        polls.append((f"feed{feed}", tuple(batch)))

    def poll(name: str, batch: tuple[ParsedEntry, ...]) -> int:
        state = FeedState(name=name, url=f"https://{name}.example/rss", status=200)
        fetched = Fetched(name=name, url=state.url, status=200, body=b"")
        return store.store_entries(state, fetched, ParsedFeed(entries=batch), NOW).new

    poll(*polls.pop())  # warm-up: statement caches, first pages; not measured
    tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    stored = sum(poll(name, batch) for name, batch in polls)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    store.close()
    return {
        "wall_ms": wall / stored * 1000,
        "cpu_ms": cpu / stored * 1000,
        "tracemalloc_mib": peak / 2**20,
        "rss_mib": _peak_rss_kib() / 1024,
    }


def _peak_rss_kib() -> int:
    """This process's peak RSS. Linux's ru_maxrss would carry over the parent's peak."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
        )
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.run)))
        return
    runs: dict[int, list[dict[str, float]]] = {size: [] for size in SIZES}
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {size: Path(tmp) / f"store-{size}.db" for size in SIZES}
        for size, db in dbs.items():
            started = time.perf_counter()
            build(db, size)
            took = time.perf_counter() - started
            print(f"built {size:,} entries in {took:.0f} s", file=sys.stderr)
        for run in range(args.runs):  # sizes interleaved: noise on the machine hits both
            for size, db in dbs.items():
                cmd = [sys.executable, "-m", "bench.dedupe_bench", "--measure", str(db)]
                done = subprocess.run(
                    [*cmd, "--run", str(run)], capture_output=True, text=True, check=True
                )
                runs[size].append(json.loads(done.stdout))
    med = {
        size: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for size, rs in runs.items()
    }
    print(
        f"| stored entries | per entry, wall (median of {args.runs}) | per entry, CPU "
        "| Python peak (tracemalloc) | peak RSS |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in SIZES:
        r = med[size]
        print(
            f"| {size:,} | {r['wall_ms']:.2f} ms | {r['cpu_ms']:.2f} ms "
            f"| {r['tracemalloc_mib']:.1f} MiB | {r['rss_mib']:.0f} MiB |"
        )
    small, large = (med[s] for s in SIZES)
    print(
        f"| ratio {SIZES[1] // 1000}k/{SIZES[0] // 1000}k (target <= 1.5) "
        + "".join(
            f"| {large[k] / small[k]:.2f} "
            for k in ("wall_ms", "cpu_ms", "tracemalloc_mib", "rss_mib")
        )
        + "|"
    )


if __name__ == "__main__":
    main()
