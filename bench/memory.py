"""Daemon memory, one command: `python -m bench.memory` (issue 8: peak RSS <= 300 MB).

Measures what an operator's `aggregator run` really uses, not a cycle called in-process:
starts the provider farm (bench.farm) with 2,000 feeds x 50 entries on 127.0.0.1, writes a
config as bench.run does (fetch.concurrency 32, fetch.per_host 32, output.limit 100, the
product's default), and runs the real daemon, `python -m aggregator run --no-serve`, on an
empty SQLite store, sampling its memory from /proc until

    cold cycle    every feed polled once and the cycle's publish done (~99k entries stored:
                  1% of the farm's feeds fail by design)
    later cycle   the farm switched to generation 1 (10% of feeds +2 entries, as bench.run's
                  churn cycle); every feed is polled again
    shutdown      SIGTERM: the daemon's final publish, then its exit

Peak RSS is the kernel's high-water mark (VmHWM), reset between phases through
/proc/PID/clear_refs so each phase has its own peak (the largest sampled VmRSS where that
is not allowed); child processes (today the forkserver and parse workers of
aggregator.parallel) are sampled too, in RSS and in PSS (shared pages counted once). The
schedule's intervals are cut to 1 s so that the later cycle polls every feed again (the
worst case for a later cycle) and the tick to 10 s so it starts soon; all else is default.

It is a separate command because it is slow: at today's speed the full size takes 15-25
minutes on 2 cores, depending on their load (13:23 UTC 2026-11-25: 871 s, of which the cold
cycle 789 s: 511 s to store 99k entries, ~280 s for its first publish, which archives every
story; a minute more to start the farm on a busy machine). --time-limit (3600 s) bounds it:
past that, or on SIGINT/SIGTERM, the daemon is stopped and the partial results are written,
marked incomplete. `--feeds 200` gives a quick look (about two minutes).

Results: bench/results/memory.json (everything, with an RSS timeline) and memory.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench import report
from bench.corpus import FAILURES, Corpus, FarmSpec
from bench.farm import Farm
from bench.run import RESULTS, _config, _snapshot_sources

#: Issue 8's target for the daemon, in MB.
TARGET_MB = 300.0
#: How often /proc is read (a cycle's peak lasts seconds; sampling costs microseconds).
SAMPLE_EVERY = 0.2
#: Seconds between PSS samples (smaps_rollup walks the page tables: dearer than status).
PSS_EVERY = 1.0
#: Seconds between timeline points kept in the JSON (every sample still counts for peaks).
TIMELINE_EVERY = 2.0
#: The daemon's schedule: every feed due again right after a cycle (see the docstring).
SCHEDULE = {"interval": "1s", "min_interval": "1s", "max_interval": "1s", "tick": "10s"}


class TimeLimit(RuntimeError):
    """The run went past --time-limit."""


class Stopped(RuntimeError):
    """SIGINT or SIGTERM: stop the daemon and the farm, write what was measured."""


def _stop_on_signal(signum: int, _frame: object) -> None:
    # Once: a second signal must not interrupt stopping the daemon (SIGKILL after 300 s).
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def _status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in kB ({} once it is gone)."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    found[key] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return found


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (the daemon starts none today; a pool would show here)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return "?"


@dataclass
class Phase:
    """One phase of the daemon's life and the memory it took."""

    name: str
    started: float
    ended: float | None = None
    peak_rss_mb: float = 0.0  # VmHWM over the phase (or the largest sample, see `hwm_reset`)
    sampled_max_mb: float = 0.0  # the largest VmRSS sample
    children_peak_mb: float = 0.0  # the largest sum of the children's VmHWM
    total_rss_mb: float = 0.0  # the largest sampled VmRSS of the daemon and its children
    total_pss_mb: float = 0.0  # the same in PSS (shared pages counted once), every PSS_EVERY
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def wall(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


class Sampler(threading.Thread):
    """Reads the daemon's /proc status every SAMPLE_EVERY s into the current phase."""

    def __init__(self, pid: int, origin: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.origin = origin
        self.lock = threading.Lock()
        self.phase: Phase | None = None
        self.timeline: list[tuple[float, float]] = []  # (seconds since origin, RSS MB)
        self.hwm_reset = True  # whether /proc/PID/clear_refs lets us reset VmHWM per phase
        self.rss_mb = 0.0
        self.children: dict[int, str] = {}  # every descendant seen: its command line
        self._pss_at = 0.0
        self._stop_event = threading.Event()

    def begin(self, phase: Phase) -> None:
        """Close the current phase and start `phase`, with the high-water mark reset."""
        with self.lock:
            self._sample()
            if self.phase is not None:
                self.phase.ended = phase.started
            if self.hwm_reset:
                try:
                    with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as f:
                        f.write("5")  # "reset the peak resident set size" (proc(5))
                except OSError:
                    self.hwm_reset = False
            self.phase = phase
            self._sample()

    def finish(self) -> None:
        with self.lock:
            self._sample()
            if self.phase is not None and self.phase.ended is None:
                self.phase.ended = time.monotonic()
            self.phase = None

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_EVERY):
            with self.lock:
                if not self._sample():
                    return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def _sample(self) -> bool:
        own = _status_kb(self.pid)
        if not own:
            return False
        self.rss_mb = own.get("VmRSS", 0) / 1024
        now = time.monotonic() - self.origin
        if not self.timeline or now - self.timeline[-1][0] >= TIMELINE_EVERY:
            self.timeline.append((round(now, 1), round(self.rss_mb, 1)))
        phase = self.phase
        if phase is None:
            return True
        phase.sampled_max_mb = max(phase.sampled_max_mb, self.rss_mb)
        hwm = own.get("VmHWM", 0) / 1024 if self.hwm_reset else phase.sampled_max_mb
        phase.peak_rss_mb = max(phase.peak_rss_mb, hwm)
        kids = kids_rss = 0.0
        family = [self.pid, *_children(self.pid)]
        for kid in family[1:]:
            status = _status_kb(kid)
            kids += status.get("VmHWM", 0) / 1024
            kids_rss += status.get("VmRSS", 0) / 1024
            if kid not in self.children:
                self.children[kid] = _cmdline(kid)
        phase.children_peak_mb = max(phase.children_peak_mb, kids)
        phase.total_rss_mb = max(phase.total_rss_mb, self.rss_mb + kids_rss)
        if time.monotonic() - self._pss_at >= PSS_EVERY:
            self._pss_at = time.monotonic()
            pss = sum(_pss_kb(p) for p in family) / 1024
            phase.total_pss_mb = max(phase.total_pss_mb, pss)
        return True


class Store:
    """Read-only counts from the daemon's SQLite store, to follow the cycle without a CLI."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def counts(self) -> tuple[int, int]:
        """(feeds polled at least once, entries stored); (0, 0) before the store exists."""
        if not self.db.exists():
            return 0, 0
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
            ) as conn:
                polled = conn.execute("SELECT count(*) FROM feeds WHERE last_polled IS NOT NULL")
                entries = conn.execute("SELECT count(*) FROM entries")
                return int(polled.fetchone()[0]), int(entries.fetchone()[0])
        except sqlite3.Error:  # the schema is being created, or a write holds a lock
            return 0, 0


class Log:
    """Follows the daemon's log file for its "cycle done" lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._partial = ""
        self.cycles: list[str] = []  # the "cycle done" (or "cycle failed") line of each cycle

    def read(self) -> None:
        if self._file is None:
            if not self.path.exists():
                return
            self._file = self.path.open(encoding="utf-8", errors="replace")
        text = self._partial + self._file.read()
        *lines, self._partial = text.split("\n")
        for line in lines:
            if "cycle done:" in line or "poll cycle failed" in line:
                self.cycles.append(line.strip())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _status(source: Path, config: Path, cwd: Path) -> dict[str, Any]:
    """`aggregator status --json` of the stopped daemon's store: what an operator sees."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:]}
    data = json.loads(done.stdout)
    rows = data["feeds"]
    return {
        "feeds": len(rows),
        "polled": sum(r["last_poll"] is not None for r in rows),
        "entries": sum(r["entries"] for r in rows),
        "failing": sum(bool(r["last_error"]) for r in rows),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + args.time_limit
    load_before = os.getloadavg()[0]
    spec = FarmSpec(feeds=args.feeds, entries=args.entries, seed=args.seed)
    corpus = Corpus(spec)
    work = Path(tempfile.mkdtemp(prefix="aggregator-memory-"))
    source, source_hash = _snapshot_sources(work, args.source)
    phases: list[Phase] = []
    notes: list[str] = []
    daemon: dict[str, Any] = {}
    status: dict[str, Any] = {}
    sampler: Sampler | None = None
    complete = False

    def note(text: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    note(f"starting the farm ({spec.feeds} feeds x {spec.entries} entries) in {work}")
    try:
        with Farm(spec, work) as farm:
            home = work / "daemon"
            config = _config(corpus, farm, home)
            cfg = json.loads(config.read_text(encoding="utf-8"))
            cfg["schedule"] = SCHEDULE
            config.write_text(json.dumps(cfg, ensure_ascii=False, indent=1), encoding="utf-8")
            store = Store(home / "aggregator.db")
            log_path = work / "daemon.log"
            daemon_log = Log(log_path)
            note(f"farm ready at {farm.base}; starting the daemon")
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "aggregator", "run", "--no-serve", "-c", str(config)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=work,  # not ROOT: `-m` puts the cwd first on sys.path
                    env={**os.environ, "PYTHONPATH": str(source)},
                )
            origin = time.monotonic()
            sampler = Sampler(process.pid, origin)
            sampler.begin(Phase("cold", origin))
            sampler.start()
            try:
                complete = _drive(
                    args, deadline, corpus, farm, process, sampler, store, daemon_log, phases, note
                )
                if time.monotonic() > deadline:
                    raise TimeLimit
            except TimeLimit:
                phase = sampler.phase.name if sampler.phase else "?"
                notes.append(
                    f"time limit of {args.time_limit:.0f} s reached during the {phase} phase: "
                    "the daemon was stopped and these results are partial (--time-limit)"
                )
                note(notes[-1])
            except Stopped as exc:
                phase = sampler.phase.name if sampler.phase else "?"
                notes.append(f"{exc} during the {phase} phase: these results are partial")
                note(notes[-1])
            finally:
                daemon = _stop(process, sampler, phases, note)
                daemon_log.close()
                sampler.stop()
            if process.returncode is not None and not args.no_status:
                try:
                    status = _status(source, config, work)
                except Stopped as exc:
                    notes.append(f"{exc} during `aggregator status`: no status")
            log_tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            daemon["log_tail"] = log_tail[-5:]
            daemon["errors_logged"] = sum(
                " ERROR " in line or "Traceback" in line for line in log_tail
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    data: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine(),
        "aggregator_sources": f"{args.source} {source_hash}",
        "spec": asdict(spec),
        "farm": {
            "failing": sum(p.kind in FAILURES for p in corpus.plans),
            "slow": sum(p.kind == "slow" for p in corpus.plans),
            "healthy": sum(p.healthy for p in corpus.plans),
            "churned": len(corpus.churned(1)),
        },
        "config": {
            "fetch.concurrency": 32,
            "fetch.per_host": 32,
            "output.limit": 100,
            "store": "SQLite, empty at start",
            "schedule": SCHEDULE,
        },
        "command": "python -m aggregator run --no-serve --config CFG",
        "complete": complete,
        "hwm_reset": sampler.hwm_reset if sampler else None,
        "phases": {
            p.name: {
                "wall": p.wall,
                "peak_rss_mb": round(p.peak_rss_mb, 1),
                "sampled_max_mb": round(p.sampled_max_mb, 1),
                "children_peak_mb": round(p.children_peak_mb, 1),
                "total_rss_mb": round(p.total_rss_mb, 1),
                "total_pss_mb": round(p.total_pss_mb, 1),
                **p.detail,
            }
            for p in phases
        },
        "daemon": daemon,
        "status": status,
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        "notes": notes,
        "children": sampler.children if sampler else {},
        "timeline": sampler.timeline if sampler else [],
        "workdir": str(work) if args.keep else None,
    }
    data["target"] = _target(data)
    data["elapsed"] = time.monotonic() - started
    return data


def _drive(
    args: argparse.Namespace,
    deadline: float,
    corpus: Corpus,
    farm: Farm,
    process: subprocess.Popen[bytes],
    sampler: Sampler,
    store: Store,
    daemon_log: Log,
    phases: list[Phase],
    note: Any,
) -> bool:
    """Follow the daemon through its cold and later cycles; True once both are done."""
    assert sampler.phase is not None
    phases.append(sampler.phase)
    switched = False
    last_note = last_count = time.monotonic()
    polled = entries = 0
    feeds = len(corpus.plans)
    cycles = 2 if args.later else 1
    while len(daemon_log.cycles) < cycles:
        time.sleep(0.25)
        daemon_log.read()
        if process.poll() is not None:
            raise RuntimeError(
                f"the daemon exited with code {process.returncode} during the "
                f"{phases[-1].name} phase; see its log (--keep keeps it)"
            )
        if time.monotonic() > deadline:
            raise TimeLimit
        if not switched and time.monotonic() - last_count > 1:  # cheap, but not free
            last_count = time.monotonic()
            polled, entries = store.counts()
        # Every feed of the cold cycle stored: it fetches nothing more, only publishes.
        if args.later and not switched and polled >= feeds:
            with sampler.lock:  # what the cycle took before its publish (within ~1 s)
                cold = phases[-1]
                cold.detail["before_publish_mb"] = round(cold.peak_rss_mb, 1)
                cold.detail["before_publish_children_mb"] = round(cold.children_peak_mb, 1)
            farm.set_generation(1)
            switched = True
            cold.detail["generation_1_at"] = round(time.monotonic() - cold.started, 1)
        if time.monotonic() - last_note > 30:
            last_note = time.monotonic()
            where = f"{polled}/{feeds} feeds, {entries} entries, " if not switched else ""
            note(f"{phases[-1].name}: {where}RSS {sampler.rss_mb:.0f} MB")
        if len(daemon_log.cycles) >= len(phases) and phases[-1].name == "cold":
            _close_cycle(phases[-1], daemon_log.cycles[0], store)
            note(_describe(phases[-1]))
            if not args.later:
                break
            if not switched:  # some feed never stored (internal error): switch now
                farm.set_generation(1)
                switched = True
            later = Phase("later", time.monotonic())
            sampler.begin(later)
            phases.append(later)
    if args.later and len(phases) == 2:
        _close_cycle(phases[1], daemon_log.cycles[1], store)
        phases[1].detail["churned_feeds"] = len(corpus.churned(1))
        note(_describe(phases[1]))
    return True


def _close_cycle(phase: Phase, line: str, store: Store) -> None:
    phase.ended = time.monotonic()
    polled, entries = store.counts()
    phase.detail.update(
        {"log": line.split(": ", 1)[-1], "feeds_polled_ever": polled, "entries": entries}
    )


def _describe(phase: Phase) -> str:
    peak = phase.peak_rss_mb  # read live: the sampler is still running
    return (
        f"{phase.name} cycle done in {time.monotonic() - phase.started:.1f} s: "
        f"peak RSS {peak:.0f} MB, {phase.detail.get('entries')} entries stored"
    )


def _stop(
    process: subprocess.Popen[bytes], sampler: Sampler, phases: list[Phase], note: Any
) -> dict[str, Any]:
    """SIGTERM, then the daemon's final publish and exit (SIGKILL after 300 s)."""
    if process.poll() is not None:
        sampler.finish()
        return {"exit_code": process.returncode, "clean_exit": False, "signal": None}
    shutdown = Phase("shutdown", time.monotonic())
    sampler.begin(shutdown)
    phases.append(shutdown)
    process.send_signal(signal.SIGTERM)
    killed = False
    try:
        process.wait(300)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        killed = True
    sampler.finish()
    shutdown.ended = time.monotonic()
    note(f"daemon stopped in {shutdown.wall:.1f} s, exit code {process.returncode}")
    return {
        "exit_code": process.returncode,
        "clean_exit": process.returncode == 0 and not killed,
        "signal": "SIGTERM",
        "killed": killed,
    }


def _peak(phase: dict[str, Any]) -> float:
    """The phase's peak over the daemon and its children: the daemon's VmHWM plus the sum of
    its children's (an upper bound: their peaks may not coincide; pages they share with
    each other count in each)."""
    own: float = max(phase["peak_rss_mb"], phase["sampled_max_mb"])
    return own + float(phase["children_peak_mb"])


def _target(data: dict[str, Any]) -> dict[str, Any]:
    """Issue 8: the daemon's peak over every phase, 2,000 feeds and ~100k entries."""
    phases = data["phases"].values()
    peak = max((_peak(p) for p in phases), default=0.0)
    spec = data["spec"]
    full = spec["feeds"] >= 2000 and spec["entries"] >= 50
    met: bool | None = peak <= TARGET_MB if data["complete"] or peak > TARGET_MB else None
    return {
        "name": "daemon peak RSS, 2,000 feeds / 100k entries <= 300 MB",
        "measured_mb": round(peak, 1),
        "main_process_mb": max((p["peak_rss_mb"] for p in phases), default=0.0),
        "children_mb": max((p["children_peak_mb"] for p in phases), default=0.0),
        "sampled_pss_mb": max((p["total_pss_mb"] for p in phases), default=0.0),
        "met": met if full else None,
        "at_full_size": full,
    }


def _label(cmdline: str) -> str:
    """`python -c "from multiprocessing.forkserver import main; ..."` -> its module."""
    found = re.search(r"from (\S+) import", cmdline)
    return found.group(1) if found else cmdline.split(" ")[0].rsplit("/", 1)[-1]


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    spec = data["spec"]
    load = data["load_average"]
    farm = data["farm"]
    children = sorted({_label(c) for c in data["children"].values()})
    lines = [
        f"Run {data['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
        f"Python {m['python']} ({m['platform']}).",
        f"Aggregator code measured: {data['aggregator_sources']} (repository at {m['tree']}).",
        f"Farm: {spec['feeds']} feeds x {spec['entries']} entries ({farm['failing']} failing, "
        f"{farm['slow']} slow by {spec['slow_delay']:g} s), seed {spec['seed']}; harness took "
        f"{data['elapsed']:.0f} s; 1-min load average {load['before']:.1f} before, "
        f"{load['after']:.1f} after.",
        f"Daemon: `{data['command']}` on an empty SQLite store; fetch.concurrency 32, "
        "fetch.per_host 32, output.limit 100; schedule intervals 1 s and tick 10 s so the later "
        "cycle polls every feed again. Peak RSS: the daemon's VmHWM"
        + (" (reset per phase)" if data["hwm_reset"] else " (sampled VmRSS after the first phase)")
        + f" plus the sum of its child processes' VmHWM ({len(data['children'])} seen"
        + (f": {'; '.join(children)}" if children else "")
        + "); PSS sampled every second counts pages shared between them once.",
        "",
        "| phase | wall s | peak RSS MB (all processes) | main process MB | children MB "
        "| sampled PSS MB | entries stored at its end |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        "cold": "cold cycle (empty store, every feed new, then publish)",
        "later": f"later cycle ({farm['churned']} feeds +{spec['churn_entries']} entries, "
        "every feed polled; includes the wait for the tick)",
        "shutdown": "shutdown (SIGTERM: final publish, exit)",
    }
    for key, label in labels.items():
        p = data["phases"].get(key)
        if p is None:
            continue
        wall = "-" if p["wall"] is None else f"{p['wall']:.1f}"
        entries = p.get("entries", data["status"].get("entries", "-"))
        pss = f"{p['total_pss_mb']:.0f}" if p["total_pss_mb"] else "-"
        lines.append(
            f"| {label} | {wall} | {_peak(p):.0f} | {p['peak_rss_mb']:.0f} "
            f"| {p['children_peak_mb']:.0f} | {pss} | {entries} |"
        )
    t = data["target"]
    met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
    lines += [
        "",
        "| target (issue 8) | measured | met |",
        "| --- | ---: | :---: |",
        f"| {t['name']} | {t['measured_mb']:.0f} MB (main process {t['main_process_mb']:.0f}, "
        f"children {t['children_mb']:.0f}; PSS {t['sampled_pss_mb']:.0f}) | {met} |",
    ]
    d = data["daemon"]
    lines += [
        "",
        f"Daemon exit: code {d.get('exit_code')}"
        + (", clean" if d.get("clean_exit") else ", **not clean**")
        + f"; errors in its log: {d.get('errors_logged', '-')}.",
    ]
    cold = data["phases"].get("cold", {})
    if "before_publish_mb" in cold:
        lines += [
            "",
            f"Cold cycle before its publish (every feed stored): main process "
            f"{cold['before_publish_mb']:.0f} MB, children {cold['before_publish_children_mb']:.0f}"
            f" MB; the publish (the archive's first catch-up) took the rest.",
        ]
    for text in data["notes"]:
        lines += ["", f"Note: {text}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description="Peak RSS of the real aggregator daemon against a local farm (127.0.0.1).",
    )
    parser.add_argument("--feeds", type=int, default=2000, help="feeds in the farm (2000)")
    parser.add_argument("--entries", type=int, default=50, help="entries per feed (50)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--source",
        default="tree",
        help="aggregator code to measure: 'tree' (the work tree, default) or a git revision",
    )
    parser.add_argument(
        "--time-limit", type=float, default=3600, help="seconds for the whole run (3600)"
    )
    parser.add_argument(
        "--no-later", dest="later", action="store_false", help="stop after the cold cycle"
    )
    parser.add_argument(
        "--no-status", action="store_true", help="skip `aggregator status --json` at the end"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and log")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    # Also when started in the background, where SIGINT comes ignored: never orphan a daemon.
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _stop_on_signal)
    data = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    table = markdown(data)
    (args.out / "memory.md").write_text(table, encoding="utf-8")
    print(table)
    return 0 if data["complete"] and data["daemon"].get("clean_exit") else 1


if __name__ == "__main__":
    sys.exit(main())
