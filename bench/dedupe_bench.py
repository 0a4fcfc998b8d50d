"""Near-duplicate detection cost as the store grows: `python -m bench.dedupe_bench`.

For each size (10k and 100k stored entries) a SQLite store is filled in bulk with generated
Korean articles over 100 feeds: every entry, its cluster and match record, and, for the
entries inside the window (dedupe.WINDOW_ENTRIES, the most recent 50k), the near-duplicate
index rows (main text, numbers, LSH bands) and the feeds' segment counts, exactly as
`Store.store_entries` would have written them. Then, in a fresh process per run (so peak RSS
is the run's own), 10 feeds each poll 20 new entries through the real `Store.store_entries`;
10% of them are edited reprints of stored entries from other feeds, so the match path runs.

Printed: a Markdown table of the median per-entry cost (wall time of store_entries divided
by entries stored), the peak of Python allocations during the polls (tracemalloc) and the
process's peak RSS, per size, and the 100k/10k ratios. About 1-2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
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
from aggregator.store import (
    Store,
    clusters,
    entries,
    entry_matches,
    feed_segments,
    near_bands,
    near_docs,
)

SIZES = (10_000, 100_000)
FEEDS = 100
NOW = datetime(2025, 10, 28, 12, 0, tzinfo=UTC)
POLL_FEEDS, POLL_ENTRIES, REPRINTS = 10, 20, 0.1

_SYLLABLES = (
    "가나다라마바사아자차카타파하기니디리미비시이지치국민정부경제시장기업투자금융은행"
    "서울지역사회교육학교의료병원환경에너지전력반도체산업수출무역노동고용임금주택부동산"
    "가격물가금리정책위원회대통령국회법안예산세금기술개발연구데이터인공지능통신플랫폼"
)
_ENDINGS = ("했다.", "밝혔다.", "전했다.", "예정이다.", "것으로 보인다.", "설명했다.", "늘었다.")


def _vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    return ["".join(rng.choices(_SYLLABLES, k=rng.randint(2, 4))) for _ in range(size)]


def _article(rng: random.Random, words: list[str], weights: list[float]) -> list[str]:
    sentences = []
    for _ in range(rng.randint(5, 9)):
        body = rng.choices(words, weights, k=rng.randint(8, 14))
        if rng.random() < 0.5:
            body.insert(rng.randrange(len(body)), f"{rng.randint(2, 9999):,}억원")
        sentences.append(" ".join(body) + " " + rng.choice(_ENDINGS))
    return sentences


def _html(sentences: list[str], feed: int) -> str:
    paras = [" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]
    footer = [
        f"피드{feed}일보는 독자 여러분의 제보를 기다립니다. 채널을 추가하시면 소식을 받아보실 수 있습니다.",
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
    weights = [1 / (rank + 1) for rank in range(len(words))]
    store = Store(f"sqlite:///{path}")
    window_start = max(0, size - dedupe.WINDOW_ENTRIES)
    span = timedelta(days=14 if size > dedupe.WINDOW_ENTRIES else 6)
    rows: dict[str, list[dict[str, Any]]] = {"c": [], "e": [], "m": [], "d": [], "b": []}
    segment_counts: Counter[tuple[str, int]] = Counter()
    texts: list[list[str]] = []
    with store.engine.begin() as conn:
        for i in range(size):
            feed = i % FEEDS
            seen = NOW - span + span * i / size
            sentences = _article(rng, words, weights)
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
                segs = dedupe.segments(html)
                segment_counts.update((f"feed{feed}", dedupe.segment_hash(s)) for s in segs)
                fp = dedupe.fingerprint(segs, frozenset())
                assert fp is not None
                numbers = " ".join(sorted(fp.numbers))
                rows["d"].append(
                    {"entry_id": i + 1, "seen": seen, "text": fp.text, "numbers": numbers}
                )
                rows["b"].extend({"band": b, "entry_id": i + 1} for b in set(fp.bands))
                texts.append(sentences)
            if len(rows["e"]) >= 5000 or i == size - 1:
                for table, name in ((clusters, "c"), (entries, "e"), (entry_matches, "m")):
                    conn.execute(table.insert(), rows[name])
                if rows["d"]:
                    conn.execute(near_docs.insert(), rows["d"])
                    conn.execute(near_bands.insert(), rows["b"])
                rows = {k: [] for k in rows}
        conn.execute(
            feed_segments.insert(),
            [
                {"feed_name": f, "segment": h, "entries": n, "last_seen": NOW}
                for (f, h), n in segment_counts.items()
            ],
        )
    store.close()
    (path.parent / f"{path.name}.texts.json").write_text(
        json.dumps(texts[-2000:], ensure_ascii=False), encoding="utf-8"
    )


def measure(path: Path, run: int) -> dict[str, float]:
    """One run in this process: 10 feeds poll 20 new entries each through the real store."""
    rng = random.Random(1000 + run)
    words = _vocabulary(random.Random(7))
    weights = [1 / (rank + 1) for rank in range(len(words))]
    recent: list[list[str]] = json.loads(
        (path.parent / f"{path.name}.texts.json").read_text(encoding="utf-8")
    )
    store = Store(f"sqlite:///{path}")
    polls = []
    for f in range(POLL_FEEDS):
        feed = FEEDS + run * POLL_FEEDS + f  # new feeds: reprints come from other feeds
        batch = []
        for n in range(POLL_ENTRIES):
            reprint = rng.random() < REPRINTS
            sentences = _edit(rng, rng.choice(recent)) if reprint else _article(rng, words, weights)
            link = f"https://feed{feed}.example/run{run}/{n}"
            batch.append(
                ParsedEntry(
                    key=link, title=sentences[0][:40], guid=link, link=link, author="기자",
                    published=NOW, content_html=_html(sentences, feed),
                )
            )  # fmt: skip
        polls.append((f"feed{feed}", tuple(batch)))
    tracemalloc.start()
    started = time.perf_counter()
    stored = 0
    for name, batch in polls:
        state = FeedState(name=name, url=f"https://{name}.example/rss", status=200)
        fetched = Fetched(name=name, url=state.url, status=200, body=b"")
        result = store.store_entries(state, fetched, ParsedFeed(entries=batch), NOW)
        stored += result.new
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    store.close()
    return {
        "per_entry_ms": elapsed / stored * 1000,
        "tracemalloc_mib": peak / 2**20,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.run)))
        return
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            db = Path(tmp) / f"store-{size}.db"
            started = time.perf_counter()
            build(db, size)
            print(
                f"built {size:,} entries in {time.perf_counter() - started:.0f} s", file=sys.stderr
            )
            runs = [
                json.loads(
                    subprocess.run(
                        [sys.executable, "-m", "bench.dedupe_bench", "--measure", str(db)]
                        + ["--run", str(run)],
                        capture_output=True, text=True, check=True,
                    ).stdout
                )
                for run in range(args.runs)
            ]  # fmt: skip
            results[size] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    small, large = (results[s] for s in SIZES)
    print(
        f"| stored entries | per-entry dedup+store cost (median of {args.runs}) "
        "| Python peak (tracemalloc) | peak RSS |"
    )
    print("| ---: | ---: | ---: | ---: |")
    for size in SIZES:
        r = results[size]
        print(
            f"| {size:,} | {r['per_entry_ms']:.2f} ms | {r['tracemalloc_mib']:.1f} MiB "
            f"| {r['rss_mib']:.0f} MiB |"
        )
    print(
        f"| ratio {SIZES[1] // 1000}k/{SIZES[0] // 1000}k | "
        f"{large['per_entry_ms'] / small['per_entry_ms']:.2f} (target <= 1.5) "
        f"| {large['tracemalloc_mib'] / small['tracemalloc_mib']:.2f} "
        f"| {large['rss_mib'] / small['rss_mib']:.2f} |"
    )


if __name__ == "__main__":
    main()
