"""Parsing in worker processes, so that parsing (CPU) and storing (database) use every core.

Parsing a body and preparing its entries for deduplication need nothing but the body;
storing needs the database and happens in the main process, one feed after another. While
the main process stores one feed, worker processes parse the next bodies of the batch; when
it would have to wait for them, it parses a later body itself. A batch with few bodies is
parsed in place: handing work over costs more than it saves then.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime

from aggregator import dedupe, parse
from aggregator.models import ParsedFeed

#: body, URL (for relative links), Content-Type, feed time zone, now; None: nothing to parse.
ParseArgs = tuple[bytes, str, str | None, str | None, datetime] | None
Parsed = tuple[ParsedFeed, dict[str, dedupe.Prepared]]

#: Worker processes besides the main process, which is busy with the database: one on two
#: cores (each worker holds ~100 MB; the main process parses the bodies not handed to it
#: whenever it would otherwise wait), none on one.
WORKERS = max(0, min(2, (os.cpu_count() or 1) - 1))
#: Fewer bodies than this in a batch are parsed in the main process (starting the workers
#: costs about a second on a busy 2-core machine).
MIN_BODIES = 16
#: Bodies handed to the workers ahead of the one being stored (bounds the memory held).
AHEAD = 2 * WORKERS + 2


def parse_and_prepare(
    body: bytes, url: str, content_type: str | None, timezone: str | None, now: datetime
) -> Parsed:
    """Everything of absorbing a body that needs only the body (raises parse.ParseError)."""
    parsed = parse.parse_feed(body, url=url, content_type=content_type, timezone=timezone, now=now)
    return parsed, dedupe.prepare(parsed.entries)


@dataclass(frozen=True)
class Parsing:
    """One body's parse: under way in a worker process (`future`), else done on demand."""

    args: tuple[bytes, str, str | None, str | None, datetime]
    future: Future[Parsed] | None = None
    #: Parses, in this process, a later body not handed to a worker; False when there is none.
    steal: Callable[[], bool] | None = field(default=None, compare=False)

    def result(self) -> Parsed:
        if self.future is not None:
            # Rather than wait for the worker, parse later bodies here meanwhile: when
            # parsing, not storing, is the slower half, the main process would sit idle.
            while not self.future.done() and self.steal is not None and self.steal():
                pass
            try:
                return self.future.result()
            except BrokenProcessPool:
                pass  # a worker died (killed, out of memory): parse here instead
        return parse_and_prepare(*self.args)


def parse_ahead(jobs: Sequence[ParseArgs]) -> Iterator[Parsing | None]:
    """Each job's Parsing, in order (None for a job with nothing to parse).

    The workers live as long as the iteration: between cycles a daemon holds no idle
    processes. A worker that dies only sends its bodies back to the main process.
    """
    todo = [i for i, args in enumerate(jobs) if args is not None]
    if len(todo) < MIN_BODIES or WORKERS < 1:
        for args in jobs:
            yield None if args is None else Parsing(args)
        return
    context = multiprocessing.get_context("forkserver")  # the daemon has threads: no fork
    context.set_forkserver_preload([__name__, "numpy"])  # workers start ready
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        queue = iter(todo)
        waiting: deque[int] = deque()  # within the lookahead, not handed to a worker yet
        futures: dict[int, Future[Parsed]] = {}  # handed over, or parsed here by `steal`
        broken = False

        def top_up() -> None:
            # Bodies are handed over only as a worker can take them (one queued behind the one
            # it parses): never cancelled later, which Python 3.11's pool mishandles when a
            # worker dies (InvalidStateError in its management thread).
            nonlocal broken
            while len(futures) + len(waiting) < AHEAD and (j := next(queue, None)) is not None:
                waiting.append(j)
            busy = sum(not f.done() for f in futures.values())
            while not broken and waiting and busy < 2 * WORKERS:
                j = waiting.popleft()
                try:
                    futures[j] = pool.submit(parse_and_prepare, *jobs[j])  # type: ignore[misc]
                    busy += 1
                except BrokenProcessPool:
                    broken = True
                    waiting.appendleft(j)

        def steal() -> bool:
            # The newest body no worker has: the workers take the oldest first.
            top_up()
            if not waiting:
                return False
            j = waiting.pop()
            futures[j] = _here(jobs[j])
            return True

        for i, args in enumerate(jobs):
            top_up()
            if i in waiting:  # not handed over: parsed here when its result is asked for
                waiting.remove(i)
            yield None if args is None else Parsing(args, futures.pop(i, None), steal)


def _here(args: ParseArgs) -> Future[Parsed]:
    """parse_and_prepare(*args) done in this process, as a finished future."""
    assert args is not None
    done: Future[Parsed] = Future()
    try:
        done.set_result(parse_and_prepare(*args))
    except Exception as exc:  # raised again where the result is asked for, as a worker's is
        done.set_exception(exc)
    return done
