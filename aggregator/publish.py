"""Publish stage: turn the policy-cut items into feed.xml, atom.xml, feed.json and index.html.

The feed formats themselves are `aggregator.formats`; the whole site (the merged output,
channels, RFC 5005 archive pages, sources.opml, `_headers`) is put together by
`aggregator.site`. This module renders one output's documents and writes files.

The merged output carries the aggregate's own rights statement (`output.rights`, else a
default per language saying each item belongs to its provider). When any item must not be
indexed (`PublishedItem.noindex`), index.html gets `<meta name="robots" content="noindex">`
and `_headers` (Netlify / Cloudflare Pages syntax, read by any server set up for it) asks for
`X-Robots-Tag: noindex` on every output file; it is written on every publish, so the request
disappears as soon as no such item is left.

Files are replaced atomically and only when their bytes change, so a web server never serves a
half-written feed and HTTP validators (ETag/Last-Modified) stay valid while nothing changed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from aggregator.config import OutputConfig
from aggregator.formats import (
    DEFAULT_RIGHTS,
    Extras,
    aware,
    description,
    feeds,
    json_feed,
    public_url,
    rights_statement,
    xml_safe,
)
from aggregator.models import PublishedItem

__all__ = [
    "DEFAULT_RIGHTS",
    "HEADERS_FILE",
    "OUTPUT_FILES",
    "Section",
    "archive_name",
    "documents",
    "headers_file",
    "public_url",
    "publish",
    "render",
    "render_archive_page",
    "rights_statement",
    "write_atomic",
    "write_files",
]

TEMPLATES = Path(__file__).parent / "templates"
OUTPUT_FILES = ("feed.xml", "atom.xml", "feed.json", "index.html")
#: The documents WebSub subscribers follow (index.html is for people).
FEED_FILES = ("feed.xml", "atom.xml", "feed.json")
HEADERS_FILE = "_headers"
ARCHIVE_DIR = "archive"
#: The formats that get RFC 5005 archive pages (JSON Feed has no archive standard).
ARCHIVED = ("feed.xml", "atom.xml")
#: Threads writing and syncing files at once (see `write_files`).
WRITERS = 16


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace `path` with `data` atomically; return False if it already held these bytes.

    The temp file lives in the same directory so `os.replace` is a same-filesystem rename:
    readers see the old file or the new one, never a mix. Any failure removes the temp file.
    """
    return bool(write_files({path: data}))


def write_files(files: Mapping[Path, bytes]) -> list[Path]:
    """`write_atomic` for many files at once (see `Staged`); the paths whose bytes changed."""
    with Staged() as batch:
        for path, data in files.items():
            batch.add(path, data)
        return batch.commit()


class Staged:
    """Files replaced atomically together: each is staged as it comes, all renamed at the end.

    `add` writes the bytes to a temp file beside the target and fsyncs it, in a few threads
    at once: the disk then commits hundreds of files (archive pages) in a few journal flushes
    instead of one each, and the caller can drop each document once it is handed over, so a
    large site is never in memory whole. `commit` renames every staged file (unchanged ones
    were skipped) and fsyncs their folders. Leaving the `with` block without a commit, or any
    failure, removes the temp files: every target is then as it was or replaced whole.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(WRITERS)
        self._staged: list[tuple[Path, Future[str]]] = []

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
        for _, future in self._staged:  # left after a failure (commit empties the list)
            if future.exception() is None:  # staged; one renamed already is simply gone
                with contextlib.suppress(OSError):
                    os.unlink(future.result())
        self._staged.clear()

    def add(self, path: Path, data: bytes) -> None:
        if not _holds(path, data):
            self._staged.append((path, self._pool.submit(_stage, path, data)))

    def commit(self) -> list[Path]:
        """Rename every staged file into place; the paths whose bytes changed."""
        for _, future in self._staged:
            future.result()  # the first failure raises; __exit__ removes the temp files
        done: list[Path] = []
        for path, future in self._staged:
            os.replace(future.result(), path)  # on failure, __exit__ removes the rest
            done.append(path)
        self._staged.clear()
        for folder in dict.fromkeys(path.parent for path in done):
            _fsync_dir(folder)
        return done


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def _stage(path: Path, data: bytes) -> str:
    """A synced temp file beside `path` holding `data`, with `path`'s mode (else 0644)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644  # mkstemp's 0600 would hide the file from the web server
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort (not every platform can fsync a directory)."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@dataclass(frozen=True)
class Section:
    """One entry of the page's channel navigation: a title and a link relative to the page."""

    title: str
    href: str
    current: bool = False


def publish(
    items: Sequence[PublishedItem],
    output: OutputConfig,
    out_dir: Path,
    now: datetime | None = None,
) -> list[Path]:
    """Write all output formats and `_headers` into `out_dir`; return the paths whose bytes
    changed. All documents are rendered and staged before the first rename, so a rendering
    error changes nothing. (The whole site, channels and archives included, is
    `aggregator.site`.)"""
    noindex = any(item.noindex for item in items)
    out_dir.mkdir(parents=True, exist_ok=True)
    with Staged() as batch:
        for name, data in documents(items, output, now):
            batch.add(out_dir / name, data)
        batch.add(out_dir / HEADERS_FILE, headers_file(_noindex_paths(output) if noindex else []))
        return batch.commit()


def render(
    items: Sequence[PublishedItem],
    output: OutputConfig,
    now: datetime | None = None,
    *,
    prev_archive: int | str | None = None,
    sections: Sequence[Section] = (),
) -> dict[str, bytes]:
    """feed.xml, atom.xml, feed.json and index.html of one output, by file name (see
    `documents`)."""
    return dict(documents(items, output, now, prev_archive=prev_archive, sections=sections))


def documents(
    items: Sequence[PublishedItem],
    output: OutputConfig,
    now: datetime | None = None,
    *,
    prev_archive: int | str | None = None,
    sections: Sequence[Section] = (),
) -> Iterator[tuple[str, bytes]]:
    """feed.xml, atom.xml, feed.json and index.html of one output, each rendered when asked
    for (a 10,000-item output is ~100 MB of documents: `Staged` takes them one at a time).

    The feeds' own timestamps (RSS lastBuildDate, Atom feed updated) are the newest item's
    `updated` time, not the wall clock: an unchanged item set then yields byte-identical
    files, which are not rewritten, so readers polling with If-Modified-Since get 304s. The
    same time is index.html's "updated" line (it was the wall clock, which rewrote the page,
    megabytes at 10,000 items, on every publish). `now` dates an empty output only.
    `prev_archive` names the newest archive page (RFC 5005, see `archive_name`), if any.
    """
    now = aware(now or datetime.now(UTC))
    updated = max((aware(i.updated) for i in items), default=now)
    xml_items = [xml_safe(item) for item in items]
    noindex = any(item.noindex for item in items)

    def extras(kind: str) -> Extras:
        links = [("hub", output.hub)] if output.hub else []
        if prev_archive is not None:
            links.append(("prev-archive", public_url(output, archive_name(kind, prev_archive))))
        return Extras(tuple(links))

    rss_doc, atom_doc = (("feed.xml", extras("feed.xml")), ("atom.xml", extras("atom.xml")))
    yield from feeds(xml_items, output, updated, rss_doc, atom_doc)
    del xml_items
    yield "feed.json", json_feed(items, output, noindex)
    yield "index.html", _html(items, output, updated, noindex, sections)


def archive_name(kind: str, page: int | str) -> str:
    """Where archive page `page` (a number, or `N-hash` for the open page) of the `kind` feed
    (feed.xml or atom.xml) lives."""
    return f"{ARCHIVE_DIR}/{kind.removesuffix('.xml')}-{page}.xml"


def render_archive_page(
    items: Sequence[PublishedItem], output: OutputConfig, page: int | str, previous: int | None
) -> dict[str, bytes]:
    """RFC 5005 archive page `page` in RSS and Atom: `<fh:archive/>`, `rel="current"` (the
    subscription feed), `rel="prev-archive"` (complete page `previous`) and `rel="self"`.
    There is no `next-archive`: it would mean rewriting a page after it is complete."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    updated = max((aware(i.updated) for i in items), default=epoch)
    xml_items = [xml_safe(item) for item in items]

    def doc(kind: str) -> tuple[str, Extras]:
        links = [("current", public_url(output, kind))]
        if previous is not None:
            links.append(("prev-archive", public_url(output, archive_name(kind, previous))))
        return archive_name(kind, page), Extras(tuple(links), True)

    rss_doc, atom_doc = (doc(kind) for kind in ARCHIVED)  # (feed.xml, atom.xml)
    return dict(feeds(xml_items, output, updated, rss_doc, atom_doc))


def url_path(output: OutputConfig, name: str) -> str:
    """The path part of `name`'s public URL, as `_headers` rules name files."""
    return urlsplit(public_url(output, name)).path or "/"


def _noindex_paths(output: OutputConfig) -> list[str]:
    return [url_path(output, name) for name in (*OUTPUT_FILES, "")]  # "": the folder


def headers_file(noindex: Iterable[str]) -> bytes:
    """`_headers` asking for `X-Robots-Tag: noindex` on each URL path in `noindex`."""
    lines = [
        "# HTTP response headers for the published files (Netlify / Cloudflare Pages _headers",
        "# format), rewritten by aggregator on every publish. See README, Terms.",
    ]
    paths = list(dict.fromkeys(noindex))
    if not paths:
        lines.append("# No published provider requires noindex.")
    for path in paths:
        lines += [path, "  X-Robots-Tag: noindex"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _html(
    items: Sequence[PublishedItem],
    output: OutputConfig,
    updated: datetime,
    noindex: bool,
    sections: Sequence[Section],
) -> bytes:
    page = _template().generate(
        output=output,
        description=description(output),
        items=items,
        updated=updated,
        rights=rights_statement(output),
        noindex=noindex,
        sections=sections,
    )
    out = bytearray()  # encoded as it comes: the page as one str would be twice its bytes
    for piece in page:
        out += piece.encode("utf-8")
    return bytes(out)


@cache
def _template() -> Template:
    """index.html's template, compiled once per process (each output, each publish uses it)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["rfc3339"] = lambda dt: aware(dt).isoformat()
    env.filters["display_date"] = lambda dt: aware(dt).strftime("%Y-%m-%d %H:%M %Z").strip()
    return env.get_template("index.html.j2")
