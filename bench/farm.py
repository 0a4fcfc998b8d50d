"""The provider farm: one HTTP/1.1 server on 127.0.0.1 playing every provider of the corpus.

It runs in its own process (so it never competes with the measured client for the GIL) on a
bare asyncio protocol: every feed is rendered and gzip-compressed before the server says it is
ready, so answering costs a dictionary lookup and a write. It does what providers do:
keep-alive, `ETag`/`If-None-Match` and `Last-Modified`/`If-Modified-Since` answered with 304,
gzip when asked, slow answers, HTTP errors and an HTML page where the feed should be.

    GET /feeds/00042.xml        feed 42 at the current generation
    GET /_farm/generation/1     switch every feed to generation 1 (churn); answers "ok"
    GET /_farm/health           "ok"

Run it alone with `python -m bench.farm --feeds 500 --entries 50` (it prints the URL), or
from Python with `Farm(spec)` as a context manager, which starts and stops the process.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from types import TracebackType

from bench.corpus import Corpus, Document, FarmSpec

_REASONS = {200: "OK", 304: "Not Modified", 404: "Not Found", 500: "Internal Server Error"}
_REASONS |= {503: "Service Unavailable"}


class _Prepared:
    """One document with its bytes ready to send: identity and gzip."""

    __slots__ = ("doc", "gzipped")

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.gzipped = gzip.compress(doc.body, compresslevel=6, mtime=0) if doc.body else b""


class FarmState:
    """All prepared documents and the current generation; shared by every connection."""

    def __init__(self, spec: FarmSpec) -> None:
        self.corpus = Corpus(spec)
        self.generation = 0
        self.requests = 0
        self._docs: dict[tuple[int, int], _Prepared] = {}
        self._paths = {p.path: p.index for p in self.corpus.plans}
        self.prepare(0)

    def prepare(self, generation: int) -> None:
        for plan in self.corpus.plans:
            self._doc(plan.index, generation)

    def _doc(self, index: int, generation: int) -> _Prepared:
        key = (index, self.corpus.version(index, generation))
        doc = self._docs.get(key)
        if doc is None:
            doc = self._docs[key] = _Prepared(self.corpus.render(index, key[1]))
        return doc

    def answer(self, target: str, headers: dict[str, str]) -> tuple[bytes, bytes, float]:
        """(status line and headers but Connection, body, delay before sending them)."""
        self.requests += 1
        path = target.split("?", 1)[0]
        index = self._paths.get(path)
        if index is None:
            if path.startswith("/_farm/generation/"):
                self.generation = int(path.rsplit("/", 1)[1])
                self.prepare(self.generation)
                return *_response(200, [("Content-Type", "text/plain")], b"ok"), 0.0
            if path == "/_farm/health":
                return *_response(200, [("Content-Type", "text/plain")], b"ok"), 0.0
            return *_response(404, [("Content-Type", "text/plain")], b"no such feed"), 0.0
        prepared = self._doc(index, self.generation)
        doc = prepared.doc
        validators = [("ETag", doc.etag)] if doc.etag else []
        if doc.last_modified:
            validators.append(("Last-Modified", doc.last_modified))
        if doc.status == 200 and _not_modified(doc, headers):
            return *_response(304, validators, b""), doc.delay
        head = list(doc.headers)
        body = doc.body
        if prepared.gzipped and "gzip" in headers.get("accept-encoding", ""):
            head += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
            body = prepared.gzipped
        return *_response(doc.status, head, body), doc.delay


def _not_modified(doc: Document, headers: dict[str, str]) -> bool:
    if "if-none-match" in headers:  # RFC 9110 13.2.2: If-None-Match wins over the date
        tags = [t.strip() for t in headers["if-none-match"].split(",")]
        return doc.etag is not None and (doc.etag in tags or "*" in tags)
    since = headers.get("if-modified-since")
    return since is not None and since == doc.last_modified


def _response(status: int, headers: list[tuple[str, str]], body: bytes) -> tuple[bytes, bytes]:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1"), body


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; requests on one connection are answered in order."""

    def __init__(self, state: FarmState) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # a delayed answer is pending; later requests queue behind it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve()

    def _serve(self) -> None:
        while not self.waiting and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self.transport.close()
                return
            request = self.buffer[:end].decode("latin-1")
            self.buffer = self.buffer[end + 4 :]
            request_line, *lines = request.split("\r\n")
            try:
                _method, target, version = request_line.split(" ", 2)
            except ValueError:
                self.transport.close()
                return
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            connection = headers.get("connection", "").lower()
            close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
            head, body, delay = self.state.answer(target, headers)
            if delay:
                self.waiting = True
                asyncio.get_running_loop().call_later(delay, self._send, head, body, close)
                return
            self._send(head, body, close)

    def _send(self, head: bytes, body: bytes, close: bool) -> None:
        self.waiting = False
        if self.transport is None or self.transport.is_closing():
            return
        keep = b"Connection: close\r\n\r\n" if close else b"Connection: keep-alive\r\n\r\n"
        self.transport.write(head + keep + body)
        if close:
            self.transport.close()
        elif self.buffer:
            self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(spec: FarmSpec, port: int, ready: Path | None) -> None:
    state = FarmState(spec)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(state), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    info = {"url": f"http://127.0.0.1:{bound}", "pid": os.getpid(), "spec": asdict(spec)}
    if ready is not None:  # written whole, then renamed: the parent never reads half of it
        partial = ready.with_name(ready.name + ".partial")
        partial.write_text(json.dumps(info))
        partial.replace(ready)
    else:
        print(info["url"], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


class Farm:
    """Starts the farm in its own process; `with Farm(spec) as farm: farm.url(plan.path)`."""

    def __init__(self, spec: FarmSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.base = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Farm:
        ready = self.workdir / "farm.json"
        ready.unlink(missing_ok=True)
        args = [sys.executable, "-m", "bench.farm", "--ready", str(ready)]
        for key, value in asdict(self.spec).items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(args, env=env, cwd=root)
        deadline = time.monotonic() + 300
        try:  # a signal or a timeout while it starts must not leave it running
            while not ready.exists() or not ready.read_text():
                if self.process.poll() is not None:
                    raise RuntimeError(f"farm exited with code {self.process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("farm did not start within 300 s")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        self.base = json.loads(ready.read_text())["url"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def url(self, path: str) -> str:
        return self.base + path

    def set_generation(self, generation: int) -> None:
        with urllib.request.urlopen(self.url(f"/_farm/generation/{generation}"), timeout=120):
            pass


def main(argv: list[str] | None = None) -> None:
    defaults = FarmSpec()
    parser = argparse.ArgumentParser(prog="python -m bench.farm", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready", type=Path, help="write the URL as JSON here when ready")
    for key, value in asdict(defaults).items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    spec = FarmSpec(**{k: getattr(args, k) for k in asdict(defaults)})
    asyncio.run(serve(spec, args.port, args.ready))


if __name__ == "__main__":
    main()
