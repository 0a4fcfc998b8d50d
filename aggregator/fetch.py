"""HTTP: one polite conditional GET per feed, bounded in size and time.

Nothing here raises for a bad feed: every outcome (304, 404, timeout, oversize body,
refused connection) becomes a `Fetched` with `error` set, so one provider can never stop
the others.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol
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


class BlockedAddress(httpx.TransportError):
    """A request (or a redirect) that would reach a private, loopback or link-local address."""


def _forbidden(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return not addr.is_global or addr.is_multicast


class GuardedTransport(httpx.AsyncHTTPTransport):
    """Checks every request's resolved addresses, so redirects cannot reach inside either.

    The check resolves the name just before connecting; a DNS answer that changes between
    the check and the connection (rebinding) is not caught.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
        for *_, sockaddr in infos:
            if _forbidden(str(sockaddr[0])):
                raise BlockedAddress(
                    f"refused: {host} resolves to non-public address {sockaddr[0]}"
                    " (fetch.block_private_networks)",
                    request=request,
                )
        return await super().handle_async_request(request)


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


_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)


def fresh_until(headers: httpx.Headers, now: datetime) -> datetime | None:
    """How long the server says its answer stays fresh (Cache-Control beats Expires)."""
    cache_control = headers.get("Cache-Control", "")
    if "no-cache" in cache_control.lower() or "no-store" in cache_control.lower():
        return None
    if m := _MAX_AGE.search(cache_control):
        return now + timedelta(seconds=int(m.group(1)))
    expires = headers.get("Expires")
    if expires:
        try:
            when = parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            return None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def host_of(url: str) -> str:
    """The key for per-host politeness (concurrency slots, Retry-After throttles)."""
    return (urlsplit(url).hostname or "").lower()


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
            fresh_until=fresh_until(response.headers, now),
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
        except BlockedAddress as exc:
            error = str(exc)
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


class HostGate(Protocol):
    """Per-host slots shared with other processes (PostgreSQL: the `host_slots` table).

    `acquire` waits until this process holds one of the host's slots; `release` gives one
    back. fetch_all calls them around each request, inside its own in-process limits.
    """

    async def acquire(self, host: str) -> None: ...

    async def release(self, host: str) -> None: ...


class Fetcher:
    """One HTTP client and one set of limits for several batches of fetches.

    A cycle fetches its leased batches through one Fetcher, so the next batch can start
    while the last one's slow feeds finish, and together they never exceed `concurrency`
    in flight nor `per_host` to one host. The in-process semaphores bound this process;
    `gate`, when given, also holds a slot of the host for the duration of each request, so
    the limit holds across processes. It is taken last (after the global slot), so a slot
    is held only while a request runs. Use it as an async context manager, in one loop.
    """

    def __init__(self, cfg: FetchConfig, gate: HostGate | None = None) -> None:
        self.cfg, self.gate = cfg, gate
        limits = httpx.Limits(
            max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
        )
        transport = GuardedTransport(limits=limits) if cfg.block_private_networks else None
        self._client = httpx.AsyncClient(
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=httpx.Timeout(cfg.timeout, connect=cfg.connect_timeout),
            limits=limits,
        )
        self._global = asyncio.Semaphore(cfg.concurrency)
        self._hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(cfg.per_host)
        )

    async def __aenter__(self) -> Fetcher:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def fetch(
        self,
        jobs: Sequence[tuple[FeedState, dict[str, str]]],
        on_done: Callable[[Fetched], object] | None = None,
    ) -> list[Fetched]:
        """Fetch every job concurrently within the limits; results in the jobs' order."""
        return list(await asyncio.gather(*(self._one(s, h, on_done) for s, h in jobs)))

    async def _one(
        self, state: FeedState, headers: dict[str, str], on_done: Callable[[Fetched], object] | None
    ) -> Fetched:
        host = host_of(state.url)
        async with self._hosts[host], self._global:
            if self.gate is None:
                result = await fetch_one(self._client, state, headers, self.cfg)
            else:
                await self.gate.acquire(host)
                try:
                    result = await fetch_one(self._client, state, headers, self.cfg)
                finally:
                    await self.gate.release(host)
        if on_done is not None:
            on_done(result)
        return result


async def fetch_all(
    jobs: Sequence[tuple[FeedState, dict[str, str]]],
    cfg: FetchConfig,
    on_done: Callable[[Fetched], object] | None = None,
    gate: HostGate | None = None,
) -> list[Fetched]:
    """Fetch every feed concurrently, at most `per_host` at a time against any one host."""
    async with Fetcher(cfg, gate) as fetcher:
        return await fetcher.fetch(jobs, on_done)
