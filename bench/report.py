"""Summaries, targets and the Markdown table of a benchmark run."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

Result = dict[str, Any]

#: Scenario key -> label in the table, in table order.
SCENARIOS = {
    "cold": "cold cycle (empty store, every feed new)",
    "warm": "warm cycle (nothing changed, 304s)",
    "churn": "churn cycle (10% of feeds +2 entries)",
    "publish": "publish 10k items, all formats",
    "parser_floor": "parser floor: feedparser.parse(bytes), 1 core",
    "reader": "peer: reader update_feeds",
    "naive": "naive: feedparser.parse(url) loop",
    "fetch_only": "diagnostic: aggregator fetch_all only",
    "publish_again": "diagnostic: a daemon's next publish of the 10k items, nothing changed",
}


def _tree() -> str:
    """The commit measured, and whether the work tree had uncommitted changes (read-only git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "aggregator"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in aggregator/' if dirty else ''}"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    versions: dict[str, str | None] = {}
    for package in ("feedparser", "httpx", "SQLAlchemy", "nh3", "feedgen", "reader"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "tree": _tree(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def summarize(runs: list[Result]) -> Result:
    """Median, min and max wall time, median CPU, and the peak RSS over all runs."""
    walls = [r["wall"] for r in runs]
    return {
        "runs": runs,
        "median": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "cpu": statistics.median(r["cpu"] for r in runs),
        "rss_mb": max(max(r["rss_mb"], r["children_rss_mb"]) for r in runs),
    }


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    met: bool | None  # None: not measured here


def _median(results: dict[str, Result], key: str) -> float | None:
    scenario = results.get(key)
    if not scenario or "median" not in scenario:
        return None
    value: float = scenario["median"]
    return value


def targets(results: dict[str, Result], feeds: int, publish_items: int) -> list[Target]:
    """Issue 8's targets, as ratios against baselines measured in the same run."""
    cold = _median(results, "cold")
    out: list[Target] = []

    def ratio(name: str, base_key: str, limit: float) -> None:
        base = _median(results, base_key)
        if cold is None or not base:
            out.append(Target(name, f"no {base_key} measurement", None))
        else:
            out.append(Target(name, f"{cold / base:.2f} x", cold / base <= limit))

    ratio("cold <= 0.6 x parser floor", "parser_floor", 0.6)
    ratio("cold <= 0.5 x reader", "reader", 0.5)

    def absolute(name: str, key: str, limit: float, unit: str = " s") -> None:
        value = _median(results, key)
        if value is None:
            out.append(Target(name, "-", None))
        else:
            out.append(Target(name, f"{value:.2f}{unit}", value <= limit))

    absolute(f"warm cycle ({feeds} unchanged feeds) <= 2 s", "warm", 2.0)
    churn = _median(results, "churn")
    if churn is not None and cold:
        out.append(Target("churn <= 0.15 x cold", f"{churn / cold:.2f} x", churn / cold <= 0.15))
    else:
        out.append(Target("churn <= 0.15 x cold", "-", None))
    absolute(f"publish 10k items <= 1.5 s ({publish_items} items published)", "publish", 1.5)
    for name in (
        "dedup per-entry cost at 100k <= 1.5 x at 10k",
        "daemon peak RSS, 2,000 feeds / 100k entries <= 300 MB",
    ):
        out.append(Target(name, "not measured here", None))
    return out


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    spec = data["spec"]
    load = data["load_average"]
    lines = [
        f"Run {data['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
        f"Python {m['python']} ({m['platform']}).",
        f"Aggregator code measured: {data['aggregator_sources']} (repository at {m['tree']}).",
        f"Farm: {spec['feeds']} feeds x {spec['entries']} entries "
        f"({data['farm']['megabytes']:.1f} MB of feeds, {data['farm']['failing']} failing, "
        f"{data['farm']['slow']} slow by {spec['slow_delay']:g} s), seed {spec['seed']}; "
        f"up to {data['runs']} runs per scenario; harness took {data['elapsed']:.0f} s; "
        f"1-min load average {load['before']:.1f} before, {load['after']:.1f} after.",
        f"Aggregator: fetch.concurrency {data['config']['fetch.concurrency']}, fetch.per_host "
        f"{data['config']['fetch.per_host']} (one farm host plays every provider); reader: "
        f"update_feeds(workers={data['config']['reader.workers']}). Every run is a fresh "
        "process; wall time of the measured call only; CPU includes child processes.",
        "",
        "| scenario | runs | median s | min-max s | CPU s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in SCENARIOS.items():
        s = data["scenarios"].get(key)
        if s is None:
            continue
        if "median" not in s:
            lines.append(f"| {label} | 0 | skipped: {s.get('skipped', '?')} | | | |")
            continue
        spread = f"{_seconds(s['min'])}-{_seconds(s['max'])}"
        lines.append(
            f"| {label} | {len(s['runs'])} | {_seconds(s['median'])} | {spread} "
            f"| {_seconds(s['cpu'])} "
            f"| {s['rss_mb']:.0f} |"
        )
    lines += ["", "| target (issue 8) | measured | met |", "| --- | ---: | :---: |"]
    for t in data["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['name']} | {t['measured']} | {met} |")
    for text in data.get("notes", []):
        lines += ["", f"Note: {text}."]
    extra = data.get("diagnostics", {})
    if extra:
        lines += ["", "Diagnostics (one run each):", ""]
        for name, value in extra.items():
            lines.append(f"- {name}: {value}")
    for scenario, hotspots in (data.get("profile") or {}).items():
        lines += [
            "",
            f"{scenario.capitalize()} under cProfile, top 15 by cumulative time "
            "(profiling inflates times):",
            "",
            "| function | calls | own s | cumulative s |",
            "| --- | ---: | ---: | ---: |",
        ]
        for row in hotspots["cumulative"][:15]:
            lines.append(
                f"| `{row['function']}` | {row['calls']} | {row['tottime']:.2f} "
                f"| {row['cumtime']:.2f} |"
            )
    return "\n".join(lines) + "\n"
