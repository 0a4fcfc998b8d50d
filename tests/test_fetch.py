"""HTTP behaviour against a real local server: conditional GET, caps, timeouts, errors."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime, timedelta

import httpx

from aggregator.config import FetchConfig
from aggregator.fetch import USER_AGENT, fetch_all, fresh_until, parse_retry_after
from aggregator.models import FeedState, Fetched
from tests.feedserver import FeedServer, Route


def fetch(
    server: FeedServer, path: str, cfg: FetchConfig | None = None, **state: object
) -> Fetched:
    st = FeedState(name=path, url=server.url(path), **state)  # type: ignore[arg-type]
    return asyncio.run(fetch_all([(st, {"X-Api-Key": "k1"})], cfg or FetchConfig()))[0]


def test_conditional_get_round_trip(feed_server: FeedServer) -> None:
    feed_server.routes["/f"] = Route(body=b"<rss/>")
    first = fetch(feed_server, "/f")
    assert first.ok and first.body == b"<rss/>" and first.etag
    second = fetch(feed_server, "/f", etag=first.etag)
    assert second.not_modified and second.error is None
    sent = feed_server.requests("/f")
    assert sent[1].headers["if-none-match"] == first.etag
    assert sent[0].headers["user-agent"] == USER_AGENT
    assert sent[0].headers["x-api-key"] == "k1"
    assert "gzip" in sent[0].headers["accept-encoding"]


def test_permanent_redirect_followed_and_reported(feed_server: FeedServer) -> None:
    feed_server.routes["/old"] = Route(status=301, redirect="/new")
    feed_server.routes["/new"] = Route(body=b"<rss/>")
    result = fetch(feed_server, "/old")
    assert result.ok and result.permanent_redirect == feed_server.url("/new")
    feed_server.routes["/tmp"] = Route(status=302, redirect="/new")
    assert fetch(feed_server, "/tmp").permanent_redirect is None


def test_errors_become_results_not_exceptions(feed_server: FeedServer) -> None:
    feed_server.routes["/gone"] = Route(status=410)
    feed_server.routes["/boom"] = Route(status=500)
    assert fetch(feed_server, "/gone").error.startswith("HTTP 410")  # type: ignore[union-attr]
    assert fetch(feed_server, "/boom").error == "HTTP 500 Internal Server Error"
    assert fetch(feed_server, "/missing").error == "HTTP 404 Not Found"
    refused = asyncio.run(
        fetch_all([(FeedState(name="x", url="http://127.0.0.1:9/"), {})], FetchConfig())
    )[0]
    assert refused.error is not None and refused.error.startswith("cannot connect")


def test_retry_after_is_recorded(feed_server: FeedServer) -> None:
    feed_server.routes["/busy"] = Route(status=429, headers={"Retry-After": "120"})
    before = datetime.now(UTC)
    result = fetch(feed_server, "/busy")
    assert result.retry_after is not None
    assert timedelta(seconds=115) < result.retry_after - before < timedelta(seconds=130)


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 10, 16, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == now + timedelta(seconds=30)
    assert parse_retry_after("Thu, 16 Oct 2025 12:10:00 GMT", now) == now + timedelta(minutes=10)
    assert parse_retry_after("Thu, 16 Oct 2025 11:00:00 GMT", now) == now
    assert parse_retry_after("soon", now) is None


def test_slow_server_is_cut_off(feed_server: FeedServer) -> None:
    feed_server.routes["/slow"] = Route(body=b"<rss/>", delay=3)
    result = fetch(feed_server, "/slow", FetchConfig(timeout=1))
    assert result.error is not None and "timed out" in result.error
    assert result.elapsed < 2.5


def test_body_cap_applies_after_decompression(feed_server: FeedServer) -> None:
    bomb = gzip.compress(b" " * 5_000_000)
    feed_server.routes["/bomb"] = Route(body=bomb, headers={"Content-Encoding": "gzip"})
    result = fetch(feed_server, "/bomb", FetchConfig(max_bytes=1_000_000))
    assert len(bomb) < 1_000_000
    assert result.error is not None and "exceeds the 1,000,000-byte limit" in result.error


def test_one_bad_feed_does_not_stop_the_others(feed_server: FeedServer) -> None:
    feed_server.routes["/ok"] = Route(body=b"<rss/>")
    feed_server.routes["/slow"] = Route(body=b"<rss/>", delay=3)
    jobs = [(FeedState(name=p, url=feed_server.url(p)), {}) for p in ("/slow", "/ok", "/nope")]
    results = asyncio.run(fetch_all(jobs, FetchConfig(timeout=1)))
    assert [r.name for r in results] == ["/slow", "/ok", "/nope"]
    assert [r.ok for r in results] == [False, True, False]


def test_trickling_server_is_cut_off(feed_server: FeedServer) -> None:
    # Each chunk arrives well within a read timeout, but the whole body never does.
    feed_server.routes["/drip"] = Route(body=b"<rss>" + b" " * 2000 + b"</rss>", trickle=0.05)
    result = fetch(feed_server, "/drip", FetchConfig(timeout=1))
    assert result.error is not None and "timed out after 1 s" in result.error
    assert result.elapsed < 2


def test_freshness_headers() -> None:
    now = datetime(2025, 10, 16, 12, 0, tzinfo=UTC)
    hours = timedelta(hours=1)
    assert fresh_until(httpx.Headers({"Cache-Control": "public, max-age=3600"}), now) == now + hours
    assert fresh_until(httpx.Headers({"Cache-Control": "s-maxage=60"}), now) is not None
    expires = {"Expires": "Thu, 16 Oct 2025 13:00:00 GMT"}
    assert fresh_until(httpx.Headers(expires), now) == now + hours
    assert fresh_until(httpx.Headers({"Expires": "0"}), now) is None
    assert fresh_until(httpx.Headers({}), now) is None


def test_block_private_networks_refuses_loopback(feed_server: FeedServer) -> None:
    feed_server.routes["/f"] = Route(body=b"<rss/>")
    result = fetch(feed_server, "/f", FetchConfig(block_private_networks=True))
    assert result.error is not None
    assert "non-public address 127.0.0.1" in result.error
    assert feed_server.requests("/f") == []  # nothing reached the server
    assert fetch(feed_server, "/f").ok  # off by default


def test_per_host_and_global_concurrency_limits(feed_server: FeedServer) -> None:
    feed_server.routes["/f"] = Route(body=b"<rss/>", delay=0.3)
    jobs = [
        (FeedState(name=f"{host}{i}", url=feed_server.url(f"/f?{i}", host=host)), {})
        for host in ("127.0.0.1", "localhost")
        for i in range(6)
    ]
    results = asyncio.run(fetch_all(jobs, FetchConfig(per_host=2, concurrency=32)))
    assert all(r.ok for r in results)
    assert sorted(feed_server.max_in_flight.values()) == [2, 2]  # never more per host
    assert feed_server.max_total_in_flight == 4
    feed_server.max_total_in_flight = 0
    asyncio.run(fetch_all(jobs, FetchConfig(per_host=8, concurrency=3)))
    assert feed_server.max_total_in_flight == 3  # the global cap holds across hosts
