"""Load test: simulated feed readers polling the real `aggregator serve` with conditional GETs.

Each reader opens its own keep-alive connection, fetches one of the feeds (gzip, like real
readers), then polls it again `--polls` times with If-None-Match and If-Modified-Since and must
get 304 every time. All readers run at once. Bounded and local: 127.0.0.1 only, a fixed number
of requests, a per-request timeout and an overall deadline.

    python bench/serve_load.py                  # 1,000 readers x (1 + 5 polls), 3 runs
    python bench/serve_load.py --url http://127.0.0.1:8080/ --readers 10 --runs 1

Without --url it builds the demo output in a temporary directory and starts
`aggregator serve` on a free port. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
FEEDS = ("/feed.xml", "/atom.xml", "/feed.json")
TIMEOUT = 10.0  # seconds for one request
DEADLINE = 300.0  # seconds for one whole run


class Failure(Exception):
    pass


async def _get(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    path: str,
    headers: dict[str, str],
) -> tuple[int, dict[str, str]]:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "User-Agent: serve-load/1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        answer[name.strip().lower()] = value.strip()
    await reader.readexactly(int(answer.get("content-length", "0")))
    return int(status_line.split()[1]), answer


async def _reader(n: int, host: str, port: int, polls: int, latencies: list[float]) -> int:
    """One simulated reader; returns how many answers were wrong (0 on success)."""
    path = FEEDS[n % len(FEEDS)]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        headers = {"Accept-Encoding": "gzip"}
        errors = 0
        for i in range(polls + 1):
            start = time.perf_counter()
            try:
                status, answer = await asyncio.wait_for(
                    _get(reader, writer, f"{host}:{port}", path, headers), TIMEOUT
                )
            except (OSError, asyncio.IncompleteReadError):
                # the server may close an idle keep-alive connection: reconnect once
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                status, answer = await asyncio.wait_for(
                    _get(reader, writer, f"{host}:{port}", path, headers), TIMEOUT
                )
            latencies.append(time.perf_counter() - start)
            if status != (200 if i == 0 else 304):
                errors += 1
            if i == 0:
                headers["If-None-Match"] = answer.get("etag", "")
                headers["If-Modified-Since"] = answer.get("last-modified", "")
        return errors
    finally:
        writer.close()


async def run_once(url: str, readers: int, polls: int) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("this load test only targets the loopback address")
    latencies: list[float] = []
    start = time.perf_counter()
    results = await asyncio.wait_for(
        asyncio.gather(
            *(_reader(n, host, port, polls, latencies) for n in range(readers)),
            return_exceptions=True,
        ),
        DEADLINE,
    )
    elapsed = time.perf_counter() - start
    failed = [r for r in results if isinstance(r, BaseException)]
    wrong = sum(r for r in results if isinstance(r, int))
    latencies.sort()
    return {
        "readers": readers,
        "requests": len(latencies),
        "errors": len(failed) + wrong,
        "seconds": round(elapsed, 3),
        "rate": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else 0,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else 0,
    }


def start_server(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = workdir / "out"
    demo = [sys.executable, "-m", "aggregator", "demo", "--output", str(out)]
    subprocess.run(demo, check=True, capture_output=True, env=env, timeout=120)
    cfg = workdir / "feeds.yaml"
    cfg.write_text(f"output: {{dir: {out}}}\nfeeds: []\n", encoding="utf-8")
    serve = [sys.executable, "-m", "aggregator", "serve", "-c", str(cfg), "--port", "0"]
    proc = subprocess.Popen(serve, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        if m := re.search(r"serving .* at (http://\S+)", line):
            return proc, m.group(1)
    raise SystemExit(f"aggregator serve did not start (exit {proc.wait()})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running `aggregator serve` (default: start one)")
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=5, help="conditional GETs per reader")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * args.readers + 64))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        proc, url = (None, args.url) if args.url else start_server(Path(tmp))
        try:
            runs = []
            for _ in range(args.runs):
                runs.append(asyncio.run(run_once(url, args.readers, args.polls)))
                print(" ".join(f"{k}={v}" for k, v in runs[-1].items()), file=sys.stderr)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    summary = {
        "runs": runs,
        "median_rate": statistics.median(r["rate"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }
    print(json.dumps(summary))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
