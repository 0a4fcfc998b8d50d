"""Scale-out benchmark: 1, 2 and 3 `aggregator run` daemons sharing one PostgreSQL database.

    python -m bench.cluster_bench [--feeds 300 --entries 5 --runs 3]

(about 5 minutes on 2 cores; with `--entries 20` one measurement takes 1.5-3.5 minutes)

The provider farm (bench.farm) serves N generated feeds on 127.0.0.1 from its own process.
For each run and each daemon count k (interleaved: 1, 2, 3, 1, 2, 3, ... so that noise on the
machine hits every k alike), the benchmark

1. creates a fresh PostgreSQL schema (server at --pg, default the test server
   postgresql://postgres@127.0.0.1:5432/test) and runs `aggregator migrate` on it;
2. starts k real `aggregator --log-format json run --no-serve` processes with one config
   (tick 0.5 s, interval and min_interval 1 h so each feed is due exactly once, fetch.batch
   25, fetch.concurrency 32 and fetch.per_host 64, its maximum: the one farm host plays every
   provider, and its 64 slots (table host_slots) are shared by all the daemons);
3. measures the wall time from starting the daemons until every feed has been fetched and
   stored (`feeds.last_polled` set on every row: it is written in the same transaction as the
   feed's entries), then waits 1 s more so that a double poll would show, and SIGTERMs them.

While the daemons work it samples, every 50 ms, PostgreSQL's lock table for the advisory lock
that serialises story assignment (store.cluster_lock, held from the story lookups to the
end of each store_entries transaction), and reads /proc for CPU time (machine, daemons,
their PostgreSQL backends, the farm) and each daemon's peak RSS (VmHWM). Every fetch is
logged by the daemon that made it (`event: "feed"`); the logs of all daemons together show
how many feeds each daemon polled and whether any feed was fetched twice.

Results: a Markdown table on stdout and in bench/results/cluster.md. A time budget
(--budget, default 330 s) drops later runs, and says so, when they would overrun it. Exit code 1
when any feed was fetched twice, 3 when PostgreSQL is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import psycopg
from psycopg.rows import TupleRow

from bench.corpus import Corpus, FarmSpec
from bench.farm import Farm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_PG = os.environ.get("AGGREGATOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
#: aggregator.store.coordination CLUSTER_LOCK: pg_advisory_xact_lock(int, hashtext(schema))
#: shows in pg_locks as classid = the first key, objid = the second (as an unsigned oid).
CLUSTER_LOCK = 0x61677232
SAMPLE_EVERY = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")
WAIT_LIMIT = 240.0  # one measurement gives up after this long


# --- /proc ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_info() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = 0.0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) / 1024 / 1024
    return (
        f"{model}, {os.cpu_count()} cores, {mem:.1f} GB, Python {platform.python_version()}"
        f" ({platform.platform()})"
    )


def code_revision() -> str:
    """The aggregator code measured: HEAD, and whether aggregator/ differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "aggregator"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown (no git)"
    return f"{head or 'unknown'}{' with uncommitted changes in aggregator/' if dirty else ''}"


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# --- PostgreSQL -----------------------------------------------------------------------------


def libpq(url: str) -> str:
    """The URL as psycopg takes it (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def with_options(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


class LockSampler(threading.Thread):
    """Samples pg_locks: is the story-assignment lock held by one of our daemons, how many wait."""

    def __init__(self, url: str, application: str, schema: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.application = application
        self.schema = schema
        self.samples = 0
        self.held = 0
        self.foreign = 0  # samples where a session outside this benchmark held the lock
        self.waiting = 0
        self.backends: set[int] = set()
        self._done = threading.Event()

    def run(self) -> None:
        # The lock is keyed by schema too, so only this measurement's schema is looked for.
        query = """
            SELECT a.pid, a.application_name = %s, l.granted
            FROM pg_stat_activity a
            LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory'
                AND l.classid = %s AND l.objid::bigint = (hashtext(%s)::bigint & 4294967295)
            WHERE a.application_name = %s OR l.granted
        """
        with psycopg.connect(libpq(self.url), autocommit=True) as conn:
            while not self._done.is_set():
                rows = conn.execute(
                    query, (self.application, CLUSTER_LOCK, self.schema, self.application)
                ).fetchall()
                self.samples += 1
                self.held += any(ours and granted is True for _, ours, granted in rows)
                self.foreign += any(not ours and granted is True for _, ours, granted in rows)
                self.waiting += sum(ours and granted is False for _, ours, granted in rows)
                self.backends.update(pid for pid, ours, _ in rows if ours)
                self._done.wait(SAMPLE_EVERY)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    @property
    def held_share(self) -> float:
        return self.held / self.samples if self.samples else 0.0

    @property
    def foreign_share(self) -> float:
        return self.foreign / self.samples if self.samples else 0.0

    @property
    def mean_waiting(self) -> float:
        return self.waiting / self.samples if self.samples else 0.0


# --- one measurement ----------------------------------------------------------------------


@dataclass
class Measurement:
    daemons: int
    run: int
    wall: float
    startup: float  # until every daemon had registered (heartbeat row)
    feeds: int
    entries: int
    polled: list[int]  # fetches per daemon
    fetched_twice: int
    doubles: list[str]  # what each feed fetched twice went through
    lock_held: float
    lock_foreign: float
    lock_waiting: float
    cpu_busy: float  # machine CPU seconds used during the window, all cores
    cpu_daemons: float
    cpu_postgres: float
    cpu_farm: float
    rss_mb: list[float] = field(default_factory=list)
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)  # rows, bytes


def table_sizes(conn: psycopg.Connection[TupleRow], schema: str) -> dict[str, tuple[int, int]]:
    """Every table of the schema: (rows, bytes on disk with its indexes and TOAST)."""
    rows = conn.execute(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> 'alembic_version'",
        (schema,),
    ).fetchall()
    sizes: dict[str, tuple[int, int]] = {}
    for name, size in rows:
        count = conn.execute(f'SELECT count(*) FROM {schema}."{name}"').fetchone()
        sizes[name] = (count[0] if count else 0, size)
    return sizes


def write_config(home: Path, url: str, corpus: Corpus, farm: Farm, batch: int) -> Path:
    cfg = {
        "output": {
            "dir": str(home / "output"),
            "title": "Cluster benchmark",
            "link": "https://bench.example/",
        },
        "store": {"url": url},
        "fetch": {"concurrency": 32, "per_host": 64, "batch": batch},
        "schedule": {"tick": 0.5, "interval": "1h", "min_interval": "1h"},
        "feeds": [{"name": p.name, "url": farm.url(p.path)} for p in corpus.plans],
    }
    path = home / "feeds.yaml"  # JSON is YAML
    path.write_text(json.dumps(cfg, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def aggregator(*args: str) -> list[str]:
    return [sys.executable, "-m", "aggregator", *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def fetch_log(paths: list[Path]) -> tuple[list[int], dict[str, list[str]]]:
    """(fetches per daemon, for every feed its fetches as "daemon i at TIME: outcome")."""
    per_daemon: list[int] = []
    per_feed: dict[str, list[str]] = {}
    for i, path in enumerate(paths):
        n = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == "feed":
                n += 1
                what = f"daemon {i} at {record.get('time')}: {record.get('outcome')}"
                per_feed.setdefault(str(record.get("feed")), []).append(what)
        per_daemon.append(n)
    return per_daemon, per_feed


def measure(
    k: int, run: int, pg: str, corpus: Corpus, farm: Farm, farm_pid: int, work: Path, batch: int
) -> Measurement:
    schema = f"cb_{uuid.uuid4().hex[:12]}"
    application = f"cluster-bench-{schema}"
    url = with_options(pg, options=f"-csearch_path%3D{schema}", application_name=application)
    home = work / f"run{run}-k{k}"
    home.mkdir(parents=True)
    cfg = write_config(home, url, corpus, farm, batch)
    with psycopg.connect(libpq(pg), autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    daemons: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    try:
        migrated = subprocess.run(
            aggregator("migrate", "--config", str(cfg)),
            env=child_env(),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"aggregator migrate failed: {migrated.stderr.strip()}")
        sampler = LockSampler(pg, application, schema)
        sampler.start()
        busy0 = machine_busy()
        farm0 = cpu_seconds(farm_pid)
        started = time.monotonic()
        for i in range(k):
            log = (home / f"daemon{i}.log").open("wb")
            logs.append(log)
            args = aggregator("--log-format", "json", "run", "--no-serve", "--config", str(cfg))
            daemons.append(
                subprocess.Popen(
                    args, env=child_env(), cwd=home, stdout=subprocess.DEVNULL, stderr=log
                )
            )
        startup = 0.0
        with psycopg.connect(libpq(pg), autocommit=True) as conn:  # not counted as ours
            while True:
                time.sleep(0.1)
                now = time.monotonic() - started
                if not startup:
                    row = conn.execute(f"SELECT count(*) FROM {schema}.daemons").fetchone()
                    startup = now if row and row[0] >= k else 0.0
                row = conn.execute(
                    f"SELECT count(*) FROM {schema}.feeds WHERE last_polled IS NOT NULL"
                ).fetchone()
                if row and row[0] >= len(corpus.plans):
                    wall = now
                    break
                dead = [d.returncode for d in daemons if d.poll() is not None]
                if dead:
                    raise RuntimeError(f"a daemon exited early with code {dead[0]} (see {home})")
                if now > WAIT_LIMIT:
                    raise RuntimeError(f"feeds not all polled after {WAIT_LIMIT:.0f} s")
            busy1 = machine_busy()
            sampler.stop()
            cpu_daemons = sum(cpu_seconds(d.pid) for d in daemons)
            cpu_postgres = sum(cpu_seconds(pid) for pid in sampler.backends)
            cpu_farm = cpu_seconds(farm_pid) - farm0
            time.sleep(1.0)  # a second poll of any feed would be logged by now
            rss = [peak_rss_mb(d.pid) for d in daemons]
            entries_row = conn.execute(f"SELECT count(*) FROM {schema}.entries").fetchone()
            feeds_row = conn.execute(f"SELECT count(*) FROM {schema}.feeds").fetchone()
            tables = table_sizes(conn, schema)
    finally:
        for d in daemons:
            if d.poll() is None:
                d.send_signal(signal.SIGTERM)
        for d in daemons:
            try:
                d.wait(timeout=60)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()
        for stream in logs:
            stream.close()
        with psycopg.connect(libpq(pg), autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    polled, per_feed = fetch_log([home / f"daemon{i}.log" for i in range(k)])
    return Measurement(
        daemons=k,
        run=run,
        wall=wall,
        startup=startup,
        feeds=feeds_row[0] if feeds_row else 0,
        entries=entries_row[0] if entries_row else 0,
        polled=polled,
        fetched_twice=sum(1 for fetches in per_feed.values() if len(fetches) > 1),
        doubles=[f"{name}: {'; '.join(f)}" for name, f in per_feed.items() if len(f) > 1],
        lock_held=sampler.held_share,
        lock_foreign=sampler.foreign_share,
        lock_waiting=sampler.mean_waiting,
        cpu_busy=busy1 - busy0,
        cpu_daemons=cpu_daemons,
        cpu_postgres=cpu_postgres,
        cpu_farm=cpu_farm,
        rss_mb=rss,
        tables=tables,
    )


# --- report -------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def render(
    results: list[Measurement], spec: FarmSpec, args: argparse.Namespace, notes: list[str]
) -> str:
    ks = sorted({m.daemons for m in results})
    by_k = {k: [m for m in results if m.daemons == k] for k in ks}
    base = _median([m.wall for m in by_k.get(1, [])])
    cores = os.cpu_count() or 1
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine_info()}.",
        f"Aggregator code measured: {args.revision}.",
        f"Farm: {spec.feeds} feeds x {spec.entries} entries (seed {spec.seed}; about"
        f" {spec.failing:.0%} failing and {spec.slow:.0%} slow by {spec.slow_delay} s, as in"
        " bench.run), served from its own process on 127.0.0.1.",
        f"PostgreSQL {args.pg_version} on the same machine, a fresh schema per measurement."
        f" Daemons: tick 0.5 s, interval 1 h, fetch.batch {args.batch}, fetch.concurrency 32,"
        " fetch.per_host 64 (slots shared by every daemon of the cluster).",
        f"Wall time: from starting the daemons until every feed is fetched and stored"
        f" (daemon start-up, about {_median([m.startup for m in results]):.1f} s, included)."
        f" 1-min load average {args.load_before:.2f} before, {load_average():.2f} after.",
        "",
        "| daemons | runs | median s | min-max s | feeds/s | entries/s | speed-up vs 1"
        " | feeds per daemon | fetched twice | peak RSS per daemon MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for k in ks:
        ms = by_k[k]
        walls = [m.wall for m in ms]
        med = _median(walls)
        entries = _median([float(m.entries) for m in ms])
        polled = " / ".join(
            "-".join(str(v) for v in sorted({m.polled[i] for m in ms})) for i in range(k)
        )
        rss = " / ".join(f"{max(m.rss_mb[i] for m in ms):.0f}" for i in range(k))
        lines.append(
            f"| {k} | {len(ms)} | {med:.2f} | {min(walls):.2f}-{max(walls):.2f}"
            f" | {spec.feeds / med:.1f} | {entries / med:.0f}"
            f" | {f'{base / med:.2f}' if base else '-'} | {polled}"
            f" | {sum(m.fetched_twice for m in ms)} | {rss} |"
        )
    lines += [
        "",
        "Where the time goes (medians; CPU seconds during the measured window):",
        "",
        f"| daemons | machine CPU busy ({cores} cores) | daemons CPU s | their PostgreSQL"
        " backends CPU s | farm CPU s | story-assignment lock held | sessions waiting for it"
        " (mean) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k in ks:
        ms = by_k[k]
        busy = _median([m.cpu_busy / (m.wall * cores) for m in ms])
        lines.append(
            f"| {k} | {busy:.0%} | {_median([m.cpu_daemons for m in ms]):.1f}"
            f" | {_median([m.cpu_postgres for m in ms]):.1f}"
            f" | {_median([m.cpu_farm for m in ms]):.1f}"
            f" | {_median([m.lock_held for m in ms]):.0%}"
            f" | {_median([m.lock_waiting for m in ms]):.2f} |"
        )
    sample = results[-1]
    if sample.tables and sample.entries:
        lines += [
            "",
            f"Database footprint after one measurement ({sample.entries:,} entries, PostgreSQL,"
            " sizes with indexes and TOAST, before any vacuum):",
            "",
            "| table | rows | rows per entry | MB | bytes per entry |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        order = sorted(sample.tables.items(), key=lambda t: -t[1][1])
        for name, (rows, size) in order:
            lines.append(
                f"| {name} | {rows:,} | {rows / sample.entries:.2f} | {size / 2**20:.1f}"
                f" | {size / sample.entries:,.0f} |"
            )
        rows = sum(r for r, _ in sample.tables.values())
        size = sum(b for _, b in sample.tables.values())
        lines.append(
            f"| total | {rows:,} | {rows / sample.entries:.2f} | {size / 2**20:.1f}"
            f" | {size / sample.entries:,.0f} |"
        )
    for m in results:
        notes += [f"fetched twice (run {m.run}, {m.daemons} daemons): {d}" for d in m.doubles]
    foreign = max(m.lock_foreign for m in results)
    if foreign > 0.01:
        notes = [
            f"sessions outside this benchmark (other schemas of the same database) held the"
            f" story-assignment lock up to {foreign:.0%} of a measurement's time.",
            *notes,
        ]
    lines += ["", *[f"Note: {n}" for n in notes]] if notes else []
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------


def pg_version(pg: str) -> str:
    with psycopg.connect(libpq(pg), autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_bench", description=__doc__)
    parser.add_argument("--feeds", type=int, default=300)
    parser.add_argument(
        "--entries", type=int, default=5, help="entries per feed (every one new: a cold ingest)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--daemons", default="1,2,3", help="daemon counts, comma-separated")
    parser.add_argument("--batch", type=int, default=25, help="fetch.batch of each daemon")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server (a database URL)")
    parser.add_argument("--budget", type=float, default=330, help="seconds for the whole run")
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.md")
    args = parser.parse_args(argv)
    counts = [int(k) for k in args.daemons.split(",")]
    try:
        args.pg_version = pg_version(args.pg)
    except psycopg.Error as exc:
        print(f"cluster_bench: no PostgreSQL at {args.pg}: {exc}", file=sys.stderr)
        return 3
    args.load_before = load_average()
    args.revision = code_revision()
    begun = time.monotonic()
    spec = FarmSpec(feeds=args.feeds, entries=args.entries, seed=args.seed)
    corpus = Corpus(spec)
    results: list[Measurement] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        work = Path(tmp)
        with Farm(spec, work) as farm:
            assert farm.process is not None
            for run in range(1, args.runs + 1):
                round_started = time.monotonic()
                for k in counts:
                    m = measure(k, run, args.pg, corpus, farm, farm.process.pid, work, args.batch)
                    results.append(m)
                    print(
                        f"run {run}, {k} daemon(s): {m.wall:.2f} s, polled {m.polled},"
                        f" fetched twice {m.fetched_twice}, lock held {m.lock_held:.0%}",
                        file=sys.stderr,
                        flush=True,
                    )
                spent = time.monotonic() - round_started
                left = args.budget - (time.monotonic() - begun)
                if run < args.runs and spent * 1.1 > left:
                    notes.append(
                        f"{run} of {args.runs} runs, to stay within the {args.budget:.0f} s"
                        " budget (--budget)."
                    )
                    break
    notes.append(f"the whole benchmark took {time.monotonic() - begun:.0f} s.")
    table = render(results, spec, args, notes)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table, encoding="utf-8")
    return 0 if all(m.fetched_twice == 0 for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
