"""One measured scenario in one fresh process, so its peak RSS is its own.

    python -m bench.worker cycle   --config CFG [--profile OUT]   aggregator run_cycle (poll)
    python -m bench.worker publish --config CFG [--again]         aggregator publish_all
    python -m bench.worker fetch   --config CFG                   aggregator fetch_all only
    python -m bench.worker floor   --urls URLS [--option k=v]     feedparser.parse(bytes) loop
    python -m bench.worker naive   --urls URLS                    feedparser.parse(url) loop
    python -m bench.worker reader  --urls URLS --db DB            reader's update_feeds

Imports, configuration, setup (e.g. reader's add_feed, downloading the floor's documents) are
not timed. The last line of stdout is a JSON object: wall and CPU seconds of the timed part
(CPU includes child processes, in case the pipeline grows a process pool), peak RSS in MB of
this process and of its largest child, and scenario details for sanity checks.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import resource
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

Detail = dict[str, Any]


def _measure(work: Callable[[], Detail]) -> dict[str, Any]:
    gc.collect()
    before = os.times()
    started = time.perf_counter()
    detail = work()
    wall = time.perf_counter() - started
    _stop_forkserver()  # so the parse workers' CPU time is counted with the children's
    after = os.times()
    cpu = sum(
        getattr(after, f) - getattr(before, f)
        for f in ("user", "system", "children_user", "children_system")
    )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_mb": round(own, 1),
        "children_rss_mb": round(children, 1),
        "detail": detail,
    }


def _stop_forkserver() -> None:
    """End the multiprocessing fork server, if the pipeline started one (aggregator.parallel).

    The parse workers are its children: their CPU time reaches os.times() only once it has
    reaped them and this process has reaped it. Private API, so only when it exists.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if callable(stop) and getattr(server, "_forkserver_pid", None) is not None:
        stop()


def _hotspots(profile_path: Path, limit: int = 25) -> dict[str, list[dict[str, Any]]]:
    import pstats

    stats = pstats.Stats(str(profile_path))
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in table.items():
        where = filename
        for marker in ("site-packages/", "/aggregator/", "/lib/python3.11/"):
            if marker in filename:
                where = filename.split(marker, 1)[1]
                where = ("aggregator/" + where) if marker == "/aggregator/" else where
                break
        rows.append(
            {
                "function": f"{where}:{line}({func})",
                "calls": nc,
                "tottime": round(tt, 3),
                "cumtime": round(ct, 3),
            }
        )
    return {
        "cumulative": sorted(rows, key=lambda r: -r["cumtime"])[:limit],
        "tottime": sorted(rows, key=lambda r: -r["tottime"])[:limit],
    }


def _profiler(path: str | None) -> contextlib.AbstractContextManager[Any]:
    """cProfile around the measured call when a dump path is given, else nothing."""
    if not path:
        return contextlib.nullcontext()
    import cProfile

    return cProfile.Profile()


def _with_hotspots(
    result: dict[str, Any], profiler: contextlib.AbstractContextManager[Any], path: str | None
) -> dict[str, Any]:
    if path and hasattr(profiler, "dump_stats"):
        profiler.dump_stats(path)
        result["detail"]["hotspots"] = _hotspots(Path(path))
    return result


def cycle(args: argparse.Namespace) -> dict[str, Any]:
    from aggregator import config, pipeline
    from aggregator.store import Store

    cfg = config.load(Path(args.config))
    store = Store(cfg.store_url)
    profiler = _profiler(args.profile)

    def work() -> Detail:
        with profiler:
            report = pipeline.run_cycle(cfg, store, forced=True)
        return {
            "outcomes": dict(Counter(r.outcome for r in report.feeds)),
            "new": sum(r.new for r in report.feeds),
            "updated": sum(r.updated for r in report.feeds),
            "published": report.published,
            "failures": sorted({r.message[:80] for r in report.failed}),
        }

    try:
        result = _measure(work)
    finally:
        store.close()
    return _with_hotspots(result, profiler, args.profile)


def publish(args: argparse.Namespace) -> dict[str, Any]:
    from datetime import UTC, datetime

    from aggregator import config, pipeline
    from aggregator.store import Store

    cfg = config.load(Path(args.config))
    store = Store(cfg.store_url)
    profiler = _profiler(args.profile)
    if args.again:  # a daemon's next publish: this process has published once already
        pipeline.publish_all(cfg, store, datetime.now(UTC))

    def work() -> Detail:
        with profiler:
            items, written = pipeline.publish_all(cfg, store, datetime.now(UTC))
        sizes = {p.name: p.stat().st_size for p in written}
        largest = sorted(sizes, key=sizes.__getitem__, reverse=True)[:4]
        return {
            "items": len(items),
            "files": len(sizes),
            "megabytes": round(sum(sizes.values()) / 1e6, 1),
            "largest": {name: sizes[name] for name in largest},
        }

    try:
        result = _measure(work)
    finally:
        store.close()
    return _with_hotspots(result, profiler, args.profile)


def fetch(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    from aggregator import config, schedule
    from aggregator import fetch as fetch_stage

    cfg = config.load(Path(args.config))
    jobs = [(schedule.initial_state(f, None), f.headers) for f in cfg.feeds]

    def work() -> Detail:
        results = asyncio.run(fetch_stage.fetch_all(jobs, cfg.fetch))
        return {
            "requests": len(results),
            "ok": sum(r.error is None for r in results),
            "bytes": sum(len(r.body or b"") for r in results),
        }

    result = _measure(work)
    result["detail"]["requests_per_s"] = round(len(jobs) / result["wall"], 1)
    return result


def _urls(path: str) -> list[str]:
    urls: list[str] = json.loads(Path(path).read_text())
    return urls


def floor(args: argparse.Namespace) -> dict[str, Any]:
    import feedparser

    options: dict[str, Any] = {}
    for item in args.option or []:
        key, _, value = item.partition("=")
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    documents = []
    for url in _urls(args.urls):  # the very bytes the farm serves, fetched before timing
        with urllib.request.urlopen(url, timeout=60) as response:
            documents.append(response.read())

    def work() -> Detail:
        entries = bozo = 0
        for body in documents:
            parsed = feedparser.parse(body, **options)
            entries += len(parsed.entries)
            bozo += bool(parsed.bozo)
        return {
            "documents": len(documents),
            "bytes": sum(map(len, documents)),
            "entries": entries,
            "bozo": bozo,
            "options": options,
        }

    return _measure(work)


def naive(args: argparse.Namespace) -> dict[str, Any]:
    import feedparser

    urls = _urls(args.urls)

    def work() -> Detail:
        entries = 0
        for url in urls:
            entries += len(feedparser.parse(url).entries)
        return {"feeds": len(urls), "entries": entries}

    return _measure(work)


def peer(args: argparse.Namespace) -> dict[str, Any]:
    from reader import make_reader

    logging.getLogger("reader").setLevel(logging.CRITICAL)  # failing feeds are expected
    rd = make_reader(args.db)
    for url in _urls(args.urls):
        rd.add_feed(url)

    def work() -> Detail:
        outcomes: Counter[str] = Counter()
        for result in rd.update_feeds_iter(workers=args.workers):
            value = result.value
            if isinstance(value, Exception):
                outcomes["error"] += 1
            elif value is None:
                outcomes["not-modified"] += 1
            else:
                outcomes["ok"] += 1
        return {
            "outcomes": dict(outcomes),
            "entries": rd.get_entry_counts().total,
            "workers": args.workers,
        }

    try:
        return _measure(work)
    finally:
        rd.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    for name in ("cycle", "publish", "fetch"):
        p = sub.add_parser(name)
        p.add_argument("--config", required=True)
        if name != "fetch":
            p.add_argument("--profile", help="write a cProfile dump of the measured call here")
        if name == "publish":
            p.add_argument(
                "--again", action="store_true", help="publish once untimed first (as a daemon)"
            )
    for name in ("floor", "naive", "reader"):
        p = sub.add_parser(name)
        p.add_argument("--urls", required=True, help="JSON list of feed URLs")
        if name == "floor":
            p.add_argument("--option", action="append", help="feedparser option, e.g. k=false")
        if name == "reader":
            p.add_argument("--db", required=True)
            p.add_argument("--workers", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    handlers: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "cycle": cycle,
        "publish": publish,
        "fetch": fetch,
        "floor": floor,
        "naive": naive,
        "reader": peer,
    }
    result = handlers[args.scenario](args)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
