"""HTTP: one polite conditional GET per feed, bounded in size and time.

Nothing here raises for a bad feed: every outcome (304, 404, timeout, oversize body,
refused connection) becomes a `Fetched` with `error` set, so one provider can never stop
the others.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from aggregator import __version__
from aggregator.config import FetchConfig
from aggregator.models import FeedState, Fetched

USER_AGENT = f"aggregator/{__version__} (+https://github.com/example/aggregator; feed aggregator)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
MAX_REDIRECTS = 5


class BodyTooLarge(Exception):
    pass


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when, now)


def _permanent_redirect(response: httpx.Response) -> str | None:
    """The new URL when every hop was permanent (301/308); temporary hops keep the old one."""
    if response.history and all(r.status_code in (301, 308) for r in response.history):
        return str(response.url)
    return None


async def _get(
    client: httpx.AsyncClient, state: FeedState, headers: dict[str, str], cfg: FetchConfig
) -> Fetched:
    now = datetime.now(UTC)
    request_headers = dict(headers)
    if state.etag:
        request_headers["If-None-Match"] = state.etag
    if state.last_modified:
        request_headers["If-Modified-Since"] = state.last_modified
    async with client.stream("GET", state.url, headers=request_headers) as response:
        status = response.status_code
        common = Fetched(
            name=state.name,
            url=state.url,
            status=status,
            final_url=str(response.url),
            permanent_redirect=_permanent_redirect(response),
        )
        if status == 304:
            return replace(common, etag=state.etag, last_modified=state.last_modified)
        if status != 200:
            retry = None
            if status in (429, 503):
                retry = parse_retry_after(response.headers.get("Retry-After"), now)
            reason = response.reason_phrase or ""
            error = f"HTTP {status} {reason}".strip()
            if status == 410:
                error += ": the provider says this feed is gone for good"
            return replace(common, error=error, retry_after=retry)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body.extend(chunk)
            if len(body) > cfg.max_bytes:
                raise BodyTooLarge(
                    f"response body exceeds the {cfg.max_bytes:,}-byte limit (fetch.max_bytes)"
                )
        return replace(
            common,
            body=bytes(body),
            content_type=response.headers.get("Content-Type"),
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
        )


async def fetch_one(
    client: httpx.AsyncClient,
    state: FeedState,
    headers: dict[str, str],
    cfg: FetchConfig,
) -> Fetched:
    started = time.monotonic()
    error: str
    for attempt in range(2):
        try:
            result = await asyncio.wait_for(_get(client, state, headers, cfg), cfg.timeout)
            return _with_elapsed(result, started)
        except httpx.RemoteProtocolError as exc:
            # A keep-alive connection closed under us; httpx does not retry GETs itself.
            error = f"connection dropped by server: {exc}"
            if attempt == 0:
                continue
        except TimeoutError:
            error = f"timed out after {cfg.timeout:g} s (fetch.timeout)"
        except httpx.ConnectTimeout:
            error = f"timed out connecting after {cfg.connect_timeout:g} s (fetch.connect_timeout)"
        except httpx.TimeoutException as exc:
            error = f"timed out waiting for the server ({type(exc).__name__})"
        except httpx.TooManyRedirects:
            error = f"more than {MAX_REDIRECTS} redirects"
        except httpx.ConnectError as exc:
            error = f"cannot connect: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except BodyTooLarge as exc:
            error = str(exc)
        break
    return Fetched(name=state.name, url=state.url, error=error, elapsed=time.monotonic() - started)


def _with_elapsed(result: Fetched, started: float) -> Fetched:
    return replace(result, elapsed=time.monotonic() - started)


async def fetch_all(
    jobs: Sequence[tuple[FeedState, dict[str, str]]], cfg: FetchConfig
) -> list[Fetched]:
    """Fetch every feed concurrently, at most `per_host` at a time against any one host."""
    limits = httpx.Limits(
        max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
    )
    timeout = httpx.Timeout(cfg.timeout, connect=cfg.connect_timeout)
    global_slots = asyncio.Semaphore(cfg.concurrency)
    host_slots: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(cfg.per_host)
    )

    async with httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        timeout=timeout,
        limits=limits,
    ) as client:

        async def one(state: FeedState, headers: dict[str, str]) -> Fetched:
            host = (urlsplit(state.url).hostname or "").lower()
            async with host_slots[host], global_slots:
                return await fetch_one(client, state, headers, cfg)

        return list(await asyncio.gather(*(one(s, h) for s, h in jobs)))
