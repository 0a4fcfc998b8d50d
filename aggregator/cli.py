"""The `aggregator` command: check, poll, run, serve, status, explain, import-opml, demo.

Exit codes (also in the README): 0 success; 1 at least one feed failed (the others were
still stored and published); 2 configuration or usage error; 3 the store or the output
directory could not be used.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import socket
import sys
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import sqlalchemy.exc

from aggregator import __version__, config, pipeline, policy, schedule, serve
from aggregator.store import Daemon, SchemaError, Store

EXIT_OK, EXIT_FEEDS_FAILED, EXIT_CONFIG, EXIT_ENVIRONMENT = 0, 1, 2, 3

log = logging.getLogger("aggregator")


def _load(args: argparse.Namespace) -> config.Config:
    return config.load(Path(args.config))


def _open_store(cfg: config.Config) -> Store:
    return Store(cfg.store_url)


def _print_report(report: pipeline.CycleReport, cfg: config.Config) -> None:
    width = max((_width(r.name) for r in report.feeds), default=4)
    for r in report.feeds:
        status = str(r.status) if r.status is not None else "-"
        if r.outcome in ("new", "unchanged"):
            detail = f"{r.new} new, {r.updated} updated ({r.message})"
        else:
            detail = r.message
        label = {"new": "ok", "unchanged": "ok", "not-modified": "ok"}.get(r.outcome, r.outcome)
        print(f"{label.upper():8} {_pad(r.name, width)}  {status:>3}  {detail}")
    files = ", ".join(p.name for p in report.written) or "no file changed"
    print(f"published {report.published} items to {cfg.output_dir} ({files})")


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(f"{args.config}: OK, {len(cfg.feeds)} feeds, output to {cfg.output_dir}")
    for feed in cfg.feeds:
        print(f"  {feed.name}: {feed.url} (redistribution: {feed.redistribution})")
    return EXIT_OK


def _progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done == total else ""
    bar = "#" * filled + "." * (width - filled)
    print(f"\rfetching [{bar}] {done}/{total} feeds", end=end, file=sys.stderr, flush=True)


def cmd_poll(args: argparse.Namespace) -> int:
    cfg = _load(args)
    lock = _sqlite_lock(cfg)
    store = _open_store(cfg)
    progress = _progress_bar if sys.stderr.isatty() else None
    try:
        if lock:
            store.release_leases()  # no daemon runs on this SQLite store: leases are stale
        report = pipeline.run_cycle(cfg, store, forced=True, progress=progress)
    finally:
        store.close()
        if lock:
            lock.release()
    _print_report(report, cfg)
    return EXIT_FEEDS_FAILED if report.failed else EXIT_OK


def _return_memory() -> None:
    """Hand the heap a cycle freed back to the system (glibc keeps it otherwise), so a
    daemon does not sit at its peak between cycles; a no-op where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    lock = _sqlite_lock(cfg)
    if lock is False:
        print(
            f"aggregator: another daemon is already running on {cfg.store_url} "
            "(see its .lock file); stop it first",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT
    store = _open_store(cfg)
    if lock:
        store.release_leases()  # whatever a killed daemon held is free again
    health = None if args.no_serve else serve.Health.for_daemon(cfg)
    started = datetime.now(UTC)
    me = Daemon(
        id=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        hostname=socket.gethostname(),
        pid=os.getpid(),
        version=__version__,
        started=started,
        heartbeat=started,
        polled=0,
        publisher=False,
    )

    def cycle(stopping: Callable[[], bool]) -> None:
        nonlocal me
        now = datetime.now(UTC)
        me = replace(me, heartbeat=now)
        store.heartbeat(me)
        report = pipeline.run_cycle(cfg, store, forced=False, owner=me.id, stopping=stopping)
        polled = sum(r.outcome != "skipped" for r in report.feeds)
        me = replace(me, polled=me.polled + polled, publisher=store.try_publisher_lock())
        store.heartbeat(me)
        log.info("cycle done: %d feeds polled, %d items published", polled, report.published)
        if health is not None:
            health.cycle_ok()
        _return_memory()

    def final_publish() -> None:
        if store.try_publisher_lock():
            pipeline.publish_all(cfg, store, datetime.now(UTC))
        store.forget_daemon(me.id)
        log.info("stopped; output published to %s", cfg.output_dir)

    log.info("daemon started: %d feeds, tick %s", len(cfg.feeds), cfg.schedule.tick)
    server = None
    try:
        if health is not None:
            server = serve.Server(cfg, args.host, args.port, health).start()
            log.info("serving %s at %s", cfg.output_dir, server.url)
        schedule.run_daemon(cfg, cycle, final_publish)
    finally:
        if server is not None:
            server.stop()
        store.close()
        if lock:
            lock.release()
    return EXIT_OK


def _sqlite_lock(cfg: config.Config) -> schedule.DaemonLock | Literal[False] | None:
    """The single-daemon lock of a SQLite store: the lock, False if taken, None if not SQLite."""
    if not cfg.store_url.startswith("sqlite:///"):
        return None
    db = Path(cfg.store_url.removeprefix("sqlite:///"))
    lock = schedule.DaemonLock(db.with_name(db.name + ".lock"))
    return lock if lock.acquire() else False


def _width(text: str) -> int:
    """Terminal columns: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def cmd_migrate(args: argparse.Namespace) -> int:
    cfg = _load(args)
    Store(cfg.store_url, migrate=True).close()
    print(f"store schema is up to date ({cfg.store_url.split('@')[-1]})")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args)
    store = _open_store(cfg)
    now = datetime.now(UTC)
    try:
        states = store.feed_states(count_entries=True)
        cluster = store.daemons(now)
    finally:
        store.close()
    daemons = [
        {
            "id": d.id,
            "hostname": d.hostname,
            "pid": d.pid,
            "version": d.version,
            "started": _iso(d.started),
            "heartbeat": _iso(d.heartbeat),
            "seconds_since_heartbeat": round((now - d.heartbeat).total_seconds(), 1),
            "feeds_polled": d.polled,
            "leases": d.leases,
            "publisher": d.publisher,
        }
        for d in cluster
    ]
    rows = []
    for feed in cfg.feeds:
        s = states.get(feed.name)
        rows.append(
            {
                "name": feed.name,
                "url": s.url if s else feed.url,
                "last_poll": _iso(s.last_polled) if s else None,
                "last_ok": _iso(s.last_ok) if s else None,
                "status": s.status if s else None,
                "entries": s.entries if s else 0,
                "errors": s.errors if s else 0,
                "next_poll": _iso(s.next_poll) if s else None,
                "gone": bool(s and s.gone),
                "retry_until": _iso(s.retry_until) if s else None,
                "last_error": s.error if s else None,
                "leased_by": s.lease_owner if s and s.lease_until and s.lease_until > now else None,
            }
        )
    if args.json:
        print(json.dumps({"feeds": rows, "daemons": daemons}, ensure_ascii=False, indent=2))
        return EXIT_OK
    for d in daemons:
        role = "publisher" if d["publisher"] else "poller"
        print(
            f"daemon {d['id']} ({role}): heartbeat {d['seconds_since_heartbeat']} s ago, "
            f"{d['leases']} leases, {d['feeds_polled']} feeds polled since {d['started']}"
        )
    width = max((_width(f.name) for f in cfg.feeds), default=4)
    print(f"{_pad('feed', width)}  last poll         result  entries  errors  next poll")
    for row in rows:
        if row["last_poll"] is None:
            print(f"{_pad(str(row['name']), width)}  never polled")
            continue
        when = str(row["last_poll"])[:16].replace("T", " ")
        nxt = "gone" if row["gone"] else str(row["next_poll"] or "-")[:16].replace("T", " ")
        print(
            f"{_pad(str(row['name']), width)}  {when:16}  {row['status'] or '-'!s:>6}"
            f"  {row['entries']:>7}  {row['errors']:>6}  {nxt}"
            + (f"  {row['last_error']}" if row["last_error"] else "")
        )
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    cfg = _load(args)
    store = _open_store(cfg)
    try:
        members = store.find_entries(args.entry)
        reasons = store.match_reasons([m.id for m in members])
    finally:
        store.close()
    if not members:
        print(f"no stored entry has the guid or link {args.entry!r}")
        return EXIT_FEEDS_FAILED
    print(f"story {members[0].cluster_guid} ({len(members)} entries)")
    for m in members:
        feed = cfg.feed(m.feed_name)
        print(f"- {m.feed_name}: {m.title}\n  link: {m.link}\n  guid: {m.guid}")
        if (joined := reasons.get(m.id)) is not None:
            other = next((o for o in members if o.id == joined.other), None)
            matched = f"{other.feed_name}'s entry {other.key}" if other else None
            print(f"  in this story by {joined.describe(matched)}")
        if feed is None:
            print("  not published: provider no longer in the config")
            continue
        decision = policy.decide(feed, m)
        print(f"  level: {decision.level} ({decision.rule})")
        if decision.detected and decision.detected != decision.level:
            print(f"  the provider's own terms allow: {decision.detected}")
        for signal in decision.signals:
            print(f"  signal: {signal}")
        if why := policy.why_not(feed, m):
            print(f"  not published: {why}")
    allowed = {f.name: f for f in cfg.feeds if f.redistribution != "none"}
    item, reason = policy.build_item(members, allowed, cfg.output.language, explain=True)
    if item is None:
        print(f"published: no ({reason})")
    else:
        print(f"published as {item.guid} from {item.provider} at level {item.level}")
        print(f"  what was removed: {'; '.join(item.removed) or 'nothing'}")
        if item.noindex:
            print("  crawlers: noindex (the page and feeds ask not to be indexed)")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args)
    server = serve.Server(cfg, args.host, args.port)
    log.info("serving %s at %s", cfg.output_dir, server.url)
    server.run_until_signal()
    return EXIT_OK


def cmd_import_opml(args: argparse.Namespace) -> int:
    from aggregator import opml

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"aggregator: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    report = opml.import_opml(Path(args.config), data, args.redistribution)
    for url, why in report.skipped:
        print(f"SKIPPED  {url}  ({why})")
    for name, url in report.added:
        print(f"ADDED    {name}  {url}  (redistribution: {args.redistribution})")
    print(f"{len(report.added)} feeds added to {args.config}, {len(report.skipped)} skipped")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from aggregator import demo

    return demo.run(Path(args.output))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator",
        description="Poll provider feeds, merge and deduplicate them, publish within their terms.",
    )
    parser.add_argument("--version", action="version", version=f"aggregator {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr: text (default) or one JSON object per line",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument(
            "--config",
            "-c",
            default=config.DEFAULT_CONFIG,
            help="configuration file (default: ./feeds.yaml)",
        )
        return p

    command("check", "validate the configuration and exit").set_defaults(func=cmd_check)
    command("poll", "fetch every feed once now, store, publish, exit").set_defaults(func=cmd_poll)
    run = command("run", "run the polling daemon (and serve the output) until SIGTERM/SIGINT")
    run.add_argument("--no-serve", action="store_true", help="do not serve the output over HTTP")
    run.set_defaults(func=cmd_run)
    serve_ = command("serve", "serve the output directory over HTTP until SIGTERM/SIGINT")
    serve_.set_defaults(func=cmd_serve)
    for p in (run, serve_):
        p.add_argument("--host", default="127.0.0.1", help="address to listen on")
        p.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free)")
    command("migrate", "create or upgrade the store's schema").set_defaults(func=cmd_migrate)
    status = command("status", "show each feed's polling state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    explain = command("explain", "show how a stored entry was deduplicated and licensed")
    explain.add_argument("entry", help="the entry's link or guid, or a published item's guid")
    explain.set_defaults(func=cmd_explain)
    imports = command("import-opml", "add the feeds of an OPML file to the configuration")
    imports.add_argument("file", help="the OPML file (e.g. a feed reader's export)")
    imports.add_argument(
        "--redistribution",
        choices=("full", "summary", "title", "none", "auto"),
        default="auto",
        help="the level given to every added feed (default: auto)",
    )
    imports.set_defaults(func=cmd_import_opml)
    demo = sub.add_parser(
        "demo", help="run the whole pipeline against bundled sample feeds served on 127.0.0.1"
    )
    demo.add_argument("--output", default="output", help="where to write (default: ./output)")
    demo.set_defaults(func=cmd_demo)
    return parser


_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the event's fields (feed, url, status, duration…)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _setup_logging(verbose: bool, fmt: str, command: str) -> None:
    """Daemons and JSON logs report every event; one-shot commands only problems."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    quiet = fmt == "text" and command not in ("run", "serve")
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose, args.log_format, args.command)
    try:
        code: int = args.func(args)
    except config.ConfigError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SchemaError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except sqlalchemy.exc.SQLAlchemyError as exc:
        print(
            f"aggregator: cannot use the store: {exc.__class__.__name__}: {exc}".splitlines()[0],
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT
    except OSError as exc:
        print(
            f"aggregator: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr
        )
        return EXIT_ENVIRONMENT
    return code


if __name__ == "__main__":
    sys.exit(main())
