"""The benchmark, one command: `python -m bench.run` (under 10 minutes on 2 cores).

Starts the provider farm (bench.farm) in its own process on 127.0.0.1, then runs every
scenario, each run in a fresh process (bench.worker) so peak RSS is the scenario's own:

    for each run: cold cycle (empty store), parser floor, reader peer   generation 0
                  (+ the naive loop, in the first run only: it is a reference, not a target)
    then:         warm cycle x runs (copy of the cold store, every feed answers 304)
                  publish x runs (output.limit 10000 from the cold store)
                  publish again (diagnostic: a daemon's second publish, nothing changed)
                  fetch only (diagnostic: how fast the aggregator's HTTP client is)
    farm -> generation 1:  churn cycle x runs (copy of the cold store, 10% of feeds changed)
    farm -> generation 0:  parser floor with feedparser options off (diagnostic)

A time budget (--budget, 570 s) keeps the run under 10 minutes as long as one cold cycle and its
baselines fit in it: a scenario's later runs are dropped, and the results say so, when they
would overrun it; the first run of every scenario, and runs of 15 s or less, always happen.

Baselines run on the same bytes from the same farm, interleaved with the cold cycles so that
noise on the machine hits both sides of each ratio. The farm stands in for N different
providers on one host, so the aggregator's per-host limit is raised to its global limit
(fetch.per_host = fetch.concurrency), as it would be with N real hosts.

Results: bench/results/latest.json (everything, every run) and bench/results/latest.md (the
table the README quotes). `--profile` adds a cold cycle and a publish under cProfile, with
their hotspots (outside the budget: expect about twice the time).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from bench import report
from bench.corpus import FAILURES, Corpus, FarmSpec
from bench.farm import Farm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
WORKER_TIMEOUT = 900
#: Seconds kept for what follows the cold loop (warm, publish, churn) at defaults.
TAIL_RESERVE = 150
#: Runs that took at most this many seconds are always repeated (a few seconds over budget).
CHEAP = 15.0


class WorkerError(RuntimeError):
    pass


def _worker(args: list[str], log: Path, source: Path) -> dict[str, Any]:
    path = os.pathsep.join([str(source), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker", *args],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        cwd=source.parent,  # not ROOT: `-m` puts the cwd first on sys.path
        env=env,
    )
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ bench.worker {' '.join(args)}\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise WorkerError(f"worker {args[0]} failed (exit {done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _config(
    corpus: Corpus, farm: Farm, home: Path, *, limit: int = 100, concurrency: int = 32
) -> Path:
    """A config for the aggregator with its store and output in `home` (JSON is YAML)."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = {
        "output": {
            "dir": str(home / "output"),
            "title": "Benchmark",
            "link": "https://bench.example/",
            "limit": limit,
        },
        "store": {"url": f"sqlite:///{home / 'aggregator.db'}"},
        "fetch": {"concurrency": concurrency, "per_host": min(concurrency, 64)},
        "feeds": [{"name": p.name, "url": farm.url(p.path)} for p in corpus.plans],
    }
    path = home / "feeds.yaml"
    path.write_text(json.dumps(cfg, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _snapshot_sources(work: Path, revision: str) -> tuple[Path, str]:
    """A copy of aggregator/ (the work tree's, or a git revision's), so every run measures the
    same code even while the tree is being edited; returns its folder and a hash of its files."""
    source = work / "src"
    if revision == "tree":
        shutil.copytree(
            ROOT / "aggregator",
            source / "aggregator",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    else:  # `git archive` only reads the repository
        tar = subprocess.run(
            ["git", "archive", "--format=tar", revision, "aggregator"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(source, filter="data")
    digest = hashlib.sha256()
    for path in sorted((source / "aggregator").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return source, digest.hexdigest()[:12]


def _copy_home(source: Path, target: Path) -> None:
    """The cold run's store and output, as a daemon would have them before its next cycle."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("feeds.yaml"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    spec = FarmSpec(feeds=args.feeds, entries=args.entries, seed=args.seed)
    corpus = Corpus(spec)
    work = Path(tempfile.mkdtemp(prefix="aggregator-bench-"))
    log = work / "workers.log"
    source, source_hash = _snapshot_sources(work, args.source)
    runs: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    diagnostics: dict[str, str] = {}
    notes: list[str] = []
    profile: dict[str, Any] = {}
    peer = "reader" if find_spec("reader") else None
    if args.no_peer:
        skipped["reader"] = "--no-peer"
    elif peer is None:
        skipped["reader"] = "reader not installed (pip install '.[bench]')"
    if args.no_naive:
        skipped["naive"] = "--no-naive"

    def note(text: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    last: dict[str, float] = {}  # seconds the latest run of each scenario took, all told

    def room(key: str, r: int, reserve: float) -> bool:
        """Does run `r` of `key` fit in the budget, keeping `reserve` s for what follows?"""
        took = last.get(key, 0.0)
        if r == 0 or took <= CHEAP or time.monotonic() - started + took <= args.budget - reserve:
            return True
        notes.append(
            f"{key}: {r} of {args.runs} runs, to stay within the {args.budget:.0f} s budget"
            " (--budget)"
        )
        note(notes[-1])
        return False

    def measure(key: str, worker_args: list[str]) -> dict[str, Any]:
        began = time.monotonic()
        result = _worker(worker_args, log, source)
        last[key] = time.monotonic() - began
        runs.setdefault(key, []).append(result)
        note(f"{key}: {result['wall']:.2f} s, {result['rss_mb']:.0f} MB, {result['detail']}")
        return result

    note(f"starting the farm ({spec.feeds} feeds x {spec.entries} entries) in {work}")
    try:
        with Farm(spec, work) as farm:
            healthy = [farm.url(p.path) for p in corpus.plans if p.healthy]
            every = [farm.url(p.path) for p in corpus.plans]
            (work / "healthy.json").write_text(json.dumps(healthy))
            (work / "every.json").write_text(json.dumps(every))
            cold_home = work / "cold"
            for r in range(args.runs):
                if not room("cold cycle and baselines", r, TAIL_RESERVE):
                    break
                lap_started = time.monotonic()
                shutil.rmtree(cold_home, ignore_errors=True)
                measure("cold", ["cycle", "--config", str(_config(corpus, farm, cold_home))])
                measure("parser_floor", ["floor", "--urls", str(work / "healthy.json")])
                if "reader" not in skipped:
                    db = work / f"reader-{r}.sqlite"
                    urls = str(work / "every.json")
                    measure("reader", ["reader", "--urls", urls, "--db", str(db)])
                    db.unlink(missing_ok=True)
                if "naive" not in skipped and r == 0:  # a reference point, not a target
                    measure("naive", ["naive", "--urls", str(work / "every.json")])
                last["cold cycle and baselines"] = time.monotonic() - lap_started
            for r in range(args.runs):
                if not room("warm", r, 90):
                    break
                home = work / f"warm-{r}"
                _copy_home(cold_home, home)
                measure("warm", ["cycle", "--config", str(_config(corpus, farm, home))])
                shutil.rmtree(home)
            publish_home = work / "publish"
            _copy_home(cold_home, publish_home)
            config = _config(corpus, farm, publish_home, limit=args.publish_items)
            for r in range(args.runs):
                if not room("publish", r, 45):
                    break
                shutil.rmtree(publish_home / "output", ignore_errors=True)
                measure("publish", ["publish", "--config", str(config)])
            measure("publish_again", ["publish", "--config", str(config), "--again"])
            fetched = measure("fetch_only", ["fetch", "--config", str(config)])
            diagnostics["aggregator fetch_all, cold (concurrency 32)"] = (
                f"{fetched['wall']:.2f} s for {fetched['detail']['requests']} feeds, "
                f"{fetched['detail']['requests_per_s']} feeds/s, "
                f"{fetched['detail']['bytes'] / 1e6:.1f} MB"
            )
            farm.set_generation(1)
            for r in range(args.runs):
                if not room("churn", r, 30):
                    break
                home = work / f"churn-{r}"
                _copy_home(cold_home, home)
                measure("churn", ["cycle", "--config", str(_config(corpus, farm, home))])
                shutil.rmtree(home)
            farm.set_generation(0)
            floor_time = runs["parser_floor"][-1]["wall"]
            if args.no_variants:
                pass
            elif time.monotonic() - started + 1.7 * floor_time > args.budget:
                notes.append("parser-floor option variants skipped (time budget)")
            else:
                for label, options in (
                    ("sanitize_html=False", ["sanitize_html=false"]),
                    (
                        "sanitize_html=False, resolve_relative_uris=False",
                        ["sanitize_html=false", "resolve_relative_uris=false"],
                    ),
                ):
                    opts = [a for o in options for a in ("--option", o)]
                    urls = str(work / "healthy.json")
                    result = _worker(["floor", "--urls", urls, *opts], log, source)
                    diagnostics[f"parser floor with {label}"] = f"{result['wall']:.2f} s"
                    note(f"floor {label}: {result['wall']:.2f} s")
            if args.profile:
                home = work / "profile"
                prof = work / "cold-cycle.prof"
                result = _worker(
                    ["cycle", "--config", str(_config(corpus, farm, home)), "--profile", str(prof)],
                    log,
                    source,
                )
                profile = {"cold cycle": result["detail"].pop("hotspots")}
                note(f"profiled cold cycle: {result['wall']:.2f} s under cProfile -> {prof}")
                config = _config(corpus, farm, home, limit=args.publish_items)
                prof = work / "publish.prof"
                result = _worker(
                    ["publish", "--config", str(config), "--profile", str(prof)], log, source
                )
                profile["publish"] = result["detail"].pop("hotspots")
                note(f"profiled publish: {result['wall']:.2f} s under cProfile -> {prof}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    scenarios: dict[str, Any] = {key: report.summarize(value) for key, value in runs.items()}
    for key, reason in skipped.items():
        scenarios[key] = {"skipped": reason}
    sizes = [len(corpus.render(p.index, 0).body) for p in corpus.plans if p.healthy]
    data: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine(),
        "aggregator_sources": f"{args.source} {source_hash}",
        "spec": asdict(spec),
        "farm": {
            "megabytes": sum(sizes) / 1e6,
            "failing": sum(p.kind in FAILURES for p in corpus.plans),
            "slow": sum(p.kind == "slow" for p in corpus.plans),
            "healthy": len(sizes),
            "churned": len(corpus.churned(1)),
        },
        "runs": args.runs,
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        "config": {
            "fetch.concurrency": 32,
            "fetch.per_host": 32,
            "reader.workers": 16,
            "publish.limit": args.publish_items,
        },
        "scenarios": scenarios,
        "diagnostics": diagnostics,
        "notes": notes,
        "profile": profile,
        "workdir": str(work) if args.keep else None,
    }
    data["targets"] = [
        asdict(t) for t in report.targets(scenarios, spec.feeds, _published(scenarios))
    ]
    data["elapsed"] = time.monotonic() - started
    return data


def _published(scenarios: dict[str, Any]) -> int:
    runs = scenarios.get("publish", {}).get("runs") or [{"detail": {"items": 0}}]
    items: int = runs[0]["detail"]["items"]
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the aggregator against a local provider farm (127.0.0.1 only).",
    )
    parser.add_argument("--feeds", type=int, default=None, help="feeds in the farm (500)")
    parser.add_argument("--entries", type=int, default=None, help="entries per feed (50)")
    parser.add_argument("--runs", type=int, default=None, help="runs per scenario (3)")
    parser.add_argument(
        "--quick", action="store_true", help="100 feeds x 20 entries, 1 run (about a minute)"
    )
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--source",
        default="tree",
        help="aggregator code to measure: 'tree' (the work tree, default) or a git revision",
    )
    parser.add_argument("--publish-items", type=int, default=10000, help="output.limit (10000)")
    parser.add_argument("--no-peer", action="store_true", help="skip the reader peer")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop")
    parser.add_argument("--no-variants", action="store_true", help="skip floor option variants")
    parser.add_argument("--profile", action="store_true", help="profile one more cold cycle")
    parser.add_argument(
        "--budget",
        type=float,
        default=570,
        help="seconds; later cold-cycle runs are dropped when they would overrun (570)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    quick = {"feeds": 100, "entries": 20, "runs": 1}
    full = {"feeds": 500, "entries": 50, "runs": 3}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    data = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    table = report.markdown(data)
    (args.out / "latest.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
