"""The `aggregator` command: check, poll, run, demo, status, explain.

Exit codes (also in the README): 0 success; 1 at least one feed failed (the others were
still stored and published); 2 configuration or usage error; 3 the store or the output
directory could not be used.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy.exc

from aggregator import __version__, config, pipeline, policy, schedule
from aggregator.store import Store

EXIT_OK, EXIT_FEEDS_FAILED, EXIT_CONFIG, EXIT_ENVIRONMENT = 0, 1, 2, 3

log = logging.getLogger("aggregator")


def _load(args: argparse.Namespace) -> config.Config:
    return config.load(Path(args.config))


def _open_store(cfg: config.Config) -> Store:
    return Store(cfg.store_url)


def _print_report(report: pipeline.CycleReport, cfg: config.Config) -> None:
    width = max((len(r.name) for r in report.feeds), default=4)
    for r in report.feeds:
        status = str(r.status) if r.status is not None else "-"
        if r.outcome in ("new", "unchanged"):
            detail = f"{r.new} new, {r.updated} updated ({r.message})"
        else:
            detail = r.message
        label = {"new": "ok", "unchanged": "ok", "not-modified": "ok"}.get(r.outcome, r.outcome)
        print(f"{label.upper():8} {r.name:{width}}  {status:>3}  {detail}")
    files = ", ".join(p.name for p in report.written) or "no file changed"
    print(f"published {report.published} items to {cfg.output_dir} ({files})")


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(f"{args.config}: OK, {len(cfg.feeds)} feeds, output to {cfg.output_dir}")
    for feed in cfg.feeds:
        print(f"  {feed.name}: {feed.url} (redistribution: {feed.redistribution})")
    return EXIT_OK


def cmd_poll(args: argparse.Namespace) -> int:
    cfg = _load(args)
    store = _open_store(cfg)
    try:
        report = pipeline.run_cycle(cfg, store, forced=True)
    finally:
        store.close()
    _print_report(report, cfg)
    return EXIT_FEEDS_FAILED if report.failed else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    lock = None
    if cfg.store_url.startswith("sqlite:///"):
        db = Path(cfg.store_url.removeprefix("sqlite:///"))
        lock = schedule.DaemonLock(db.with_name(db.name + ".lock"))
        if not lock.acquire():
            print(
                f"aggregator: another daemon is already running on {db} "
                f"(lock {lock.path}); stop it first",
                file=sys.stderr,
            )
            return EXIT_ENVIRONMENT
    store = _open_store(cfg)

    def cycle() -> None:
        report = pipeline.run_cycle(cfg, store, forced=False)
        for r in report.feeds:
            if r.outcome == "failed":
                log.warning("feed %s failed: %s", r.name, r.message)
            elif r.outcome == "new":
                log.info("feed %s: %d new, %d updated", r.name, r.new, r.updated)
        log.info(
            "cycle done: %d feeds polled, %d items published",
            sum(r.outcome != "skipped" for r in report.feeds),
            report.published,
        )

    def final_publish() -> None:
        pipeline.publish_all(cfg, store, datetime.now(UTC))
        log.info("stopped; output published to %s", cfg.output_dir)

    log.info("daemon started: %d feeds, tick %s", len(cfg.feeds), cfg.schedule.tick)
    try:
        schedule.run_daemon(cfg, cycle, final_publish)
    finally:
        store.close()
        if lock:
            lock.release()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args)
    store = _open_store(cfg)
    try:
        states = store.feed_states()
    finally:
        store.close()
    width = max((len(f.name) for f in cfg.feeds), default=4)
    print(f"{'feed':{width}}  last poll         result  entries  errors  next poll")
    for feed in cfg.feeds:
        s = states.get(feed.name)
        if s is None:
            print(f"{feed.name:{width}}  never polled")
            continue
        when = f"{s.last_polled:%Y-%m-%d %H:%M}" if s.last_polled else "-"
        nxt = "gone" if s.gone else (f"{s.next_poll:%Y-%m-%d %H:%M}" if s.next_poll else "-")
        result = str(s.status or "-")
        print(
            f"{feed.name:{width}}  {when:16}  {result:>6}  {s.entries:>7}  {s.errors:>6}  {nxt}"
            + (f"  {s.error}" if s.error else "")
        )
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    cfg = _load(args)
    store = _open_store(cfg)
    try:
        members = store.find_entries(args.entry)
    finally:
        store.close()
    if not members:
        print(f"no stored entry has the guid or link {args.entry!r}")
        return EXIT_FEEDS_FAILED
    print(f"story {members[0].cluster_guid} ({len(members)} entries)")
    for m in members:
        feed = cfg.feed(m.feed_name)
        print(f"- {m.feed_name}: {m.title}\n  link: {m.link}\n  guid: {m.guid}")
        if feed is None:
            print("  not published: provider no longer in the config")
            continue
        decision = policy.decide(feed, m)
        print(f"  level: {decision.level} ({decision.rule})")
        for signal in decision.signals:
            print(f"  signal: {signal}")
    allowed = {f.name: f for f in cfg.feeds if f.redistribution != "none"}
    item, reason = policy.build_item(members, allowed, cfg.output.language)
    if item is None:
        print(f"published: no ({reason})")
    else:
        print(f"published as {item.guid} from {item.provider} at level {item.level}")
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
    command("run", "run the polling daemon until SIGTERM/SIGINT").set_defaults(func=cmd_run)
    command("status", "show each feed's polling state").set_defaults(func=cmd_status)
    explain = command("explain", "show how a stored entry was deduplicated and licensed")
    explain.add_argument("entry", help="the entry's link or guid, or a published item's guid")
    explain.set_defaults(func=cmd_explain)
    demo = sub.add_parser(
        "demo", help="run the whole pipeline against bundled sample feeds served on 127.0.0.1"
    )
    demo.add_argument("--output", default="output", help="where to write (default: ./output)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except config.ConfigError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
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
