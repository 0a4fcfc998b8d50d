"""Publish stage: turn the policy-cut items into feed.xml, atom.xml, feed.json and index.html.

Every body written here is `PublishedItem.content_html` verbatim: the policy stage already cut
it to what the provider allows and appended the credit, so this stage only changes its
encoding, never its text. Provenance (provider, feed URL, rights) travels in each format's own
source fields: RSS `<source>`/`dc:rights`, a full Atom `<source>`, the JSON `_source` object.

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
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from aggregator.config import OutputConfig
from aggregator.models import PublishedItem

__all__ = ["HEADERS_FILE", "OUTPUT_FILES", "publish", "rights_statement", "write_atomic"]

#: Minutes readers may cache the feed; used when the output config has no `ttl`.
DEFAULT_TTL = 30
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"
TEMPLATES = Path(__file__).parent / "templates"
OUTPUT_FILES = ("feed.xml", "atom.xml", "feed.json", "index.html")
HEADERS_FILE = "_headers"
#: The aggregate's rights statement when `output.rights` is not set (by output language).
DEFAULT_RIGHTS = {
    True: "각 기사의 저작권은 기사제공처에 있으며, 기사는 제공처의 이용 조건에 따라 게재됩니다.",
    False: "Each item remains the property of its provider, credited with the item, and is "
    "republished within that provider's terms.",
}


def _generator() -> str:
    try:
        return f"aggregator {metadata.version('aggregator')}"
    except metadata.PackageNotFoundError:
        return "aggregator"


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace `path` with `data` atomically; return False if it already held these bytes.

    The temp file lives in the same directory so `os.replace` is a same-filesystem rename:
    readers see the old file or the new one, never a mix. Any failure removes the temp file.
    """
    try:
        if path.read_bytes() == data:
            return False
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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort (not every platform can fsync a directory)."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def publish(
    items: Sequence[PublishedItem],
    output: OutputConfig,
    out_dir: Path,
    now: datetime | None = None,
) -> list[Path]:
    """Write all output formats into `out_dir`; return the paths whose bytes changed.

    The feeds' own timestamps (RSS lastBuildDate, Atom feed updated) are the newest item's
    `updated` time, not the wall clock: an unchanged item set then yields byte-identical
    files, which are not rewritten, so readers polling with If-Modified-Since get 304s. `now`
    is used only for an empty feed's timestamp and index.html's "generated at" line.
    All documents are rendered before the first write, so a rendering error writes nothing.
    """
    now = _aware(now or datetime.now(UTC))
    updated = max((_aware(i.updated) for i in items), default=now)
    xml_items = [_xml_safe(item) for item in items]
    noindex = any(item.noindex for item in items)
    docs = {
        "feed.xml": _rss(xml_items, output, updated),
        "atom.xml": _atom(xml_items, output, updated),
        "feed.json": _json_feed(items, output, noindex),
        "index.html": _html(items, output, now, noindex),
        HEADERS_FILE: _headers(output, noindex),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    return [out_dir / name for name, data in docs.items() if write_atomic(out_dir / name, data)]


# Code points XML 1.0 forbids; lxml refuses them, and one stray byte must not stop publishing.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(item: PublishedItem) -> PublishedItem:
    """Drop XML-illegal control characters (invisible to readers) from the XML formats' text."""

    def clean(text: str) -> str:
        return _XML_ILLEGAL.sub("", text)

    return replace(
        item,
        title=clean(item.title),
        author=clean(item.author),
        provider=clean(item.provider),
        content_html=clean(item.content_html),
        summary_text=clean(item.summary_text),
        rights=None if item.rights is None else clean(item.rights),
        categories=tuple(clean(c) for c in item.categories),
    )


def _aware(dt: datetime) -> datetime:
    """Feed dates need a zone; the store hands out UTC, so a naive value is taken as UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _public_url(output: OutputConfig, name: str) -> str:
    """Where `name` is served: under base_url (a directory), else resolved like index.html's
    relative `href` would be against the home page `output.link`."""
    if output.base_url:
        return output.base_url.rstrip("/") + "/" + name
    return urljoin(output.link, name)


def _description(output: OutputConfig) -> str:
    return output.description or f"{output.title} - merged feed"


def rights_statement(output: OutputConfig) -> str:
    """The aggregate's own rights statement: the configured one, else the language's default."""
    return output.rights or DEFAULT_RIGHTS[output.language.lower().startswith("ko")]


def _headers(output: OutputConfig, noindex: bool) -> bytes:
    lines = [
        "# HTTP response headers for the published files (Netlify / Cloudflare Pages _headers",
        "# format), rewritten by aggregator on every publish. See README, Terms.",
    ]
    if not noindex:
        lines.append("# No published provider requires noindex.")
    for name in (*OUTPUT_FILES, "") if noindex else ():  # "": the folder, served as index.html
        lines += [urlsplit(_public_url(output, name)).path or "/", "  X-Robots-Tag: noindex"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _new_feed(output: OutputConfig, updated: datetime, self_name: str) -> Any:
    fg = FeedGenerator()
    fg.title(output.title)
    fg.description(_description(output))
    fg.language(output.language)
    fg.generator(_generator())
    fg.updated(updated)
    fg.rights(rights_statement(output))
    # feedgen takes the RSS <link> from the last link() call: self first, home page last.
    fg.link(href=_public_url(output, self_name), rel="self")
    fg.link(href=output.link, rel="alternate")
    return fg


def _rss(items: Sequence[PublishedItem], output: OutputConfig, updated: datetime) -> bytes:
    fg = _new_feed(output, updated, "feed.xml")
    fg.load_extension("dc")
    fg.ttl(int(getattr(output, "ttl", None) or DEFAULT_TTL))
    for item in items:
        entry = fg.add_entry(order="append")
        entry.title(item.title)
        entry.link(href=item.link)
        entry.guid(item.guid, permalink=False)
        entry.content(item.content_html, type="html")  # sole body -> <description>
        entry.published(_aware(item.published))
        entry.source(url=item.source_url, title=item.provider)
        if item.author:
            entry.dc.dc_creator(item.author)  # RSS <author> must be an e-mail address
        if item.rights:
            entry.dc.dc_rights(item.rights)
        for term in item.categories:
            entry.category(term=term)
    return bytes(fg.rss_str(pretty=True))


class _AtomSource(BaseExtension):  # type: ignore[misc]
    """Feed half of the `<source>` extension; feedgen requires one, it adds nothing."""


class _AtomSourceEntry(BaseEntryExtension):  # type: ignore[misc]
    """Writes a complete Atom `<source>` (id, title, links, updated, rights, author).

    feedgen's own `source()` emits only title and link, which the W3C validator flags as
    MissingSourceElement; this replaces it, following Planet's merged-entry practice.
    """

    item: PublishedItem | None = None

    def extend_atom(self, entry: Any) -> Any:
        item = self.item
        if item is None:
            return entry
        source = xml_elem("source", entry)
        xml_elem("id", source).text = item.source_url
        xml_elem("title", source).text = item.provider
        xml_elem("link", source, rel="alternate", href=item.provider_link or item.source_url)
        if item.provider_link:
            xml_elem("link", source, rel="self", href=item.source_url)
        xml_elem("updated", source).text = _aware(item.updated).isoformat()
        if not item.author:
            # Atom needs an author per entry; with none given, the provider stands in.
            xml_elem("name", xml_elem("author", source)).text = item.provider
        if item.rights:
            xml_elem("rights", source).text = item.rights
        return entry


def _atom(items: Sequence[PublishedItem], output: OutputConfig, updated: datetime) -> bytes:
    fg = _new_feed(output, updated, "atom.xml")
    fg.id(_public_url(output, "atom.xml"))  # the document's own URL: stable and unique
    fg.register_extension("atom_source", _AtomSource, _AtomSourceEntry, atom=True, rss=False)
    for item in items:
        entry = fg.add_entry(order="append")
        entry.id(item.guid)
        entry.title(item.title)
        entry.link(href=item.link, rel="alternate")
        entry.published(_aware(item.published))
        entry.updated(_aware(item.updated))
        if item.author:
            entry.author(name=item.author)
        entry.content(item.content_html, type="html")
        if item.summary_text:
            entry.summary(item.summary_text)
        if item.rights:
            entry.rights(item.rights)
        for term in item.categories:
            entry.category(term=term)
        entry.atom_source.item = item
    return bytes(fg.atom_str(pretty=True))


def _json_item(item: PublishedItem) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": item.guid,
        "url": item.link,
        "title": item.title,
        "content_html": item.content_html,
    }
    if item.summary_text:
        data["summary"] = item.summary_text
    data["date_published"] = _aware(item.published).isoformat()
    data["date_modified"] = _aware(item.updated).isoformat()
    if item.author:
        data["authors"] = [{"name": item.author}]
    if item.categories:
        data["tags"] = list(item.categories)
    data["_source"] = {
        "provider": item.provider,
        "url": item.provider_link,
        "feed_url": item.source_url,
        "rights": item.rights,
        "level": item.level,
        "also_reported_by": [{"provider": name, "url": url} for name, url in item.also],
    }
    return data


def _json_feed(items: Sequence[PublishedItem], output: OutputConfig, noindex: bool) -> bytes:
    rights: dict[str, str] = {"statement": rights_statement(output)}
    if noindex:
        rights["robots"] = "noindex"
    feed = {
        "version": JSONFEED_VERSION,
        "title": output.title,
        "home_page_url": output.link,
        "feed_url": _public_url(output, "feed.json"),
        "description": _description(output),
        "language": output.language,
        "items": [_json_item(item) for item in items],
        "_rights": rights,
    }
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _html(
    items: Sequence[PublishedItem], output: OutputConfig, now: datetime, noindex: bool
) -> bytes:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["rfc3339"] = lambda dt: _aware(dt).isoformat()
    env.filters["display_date"] = lambda dt: _aware(dt).strftime("%Y-%m-%d %H:%M %Z").strip()
    page = env.get_template("index.html.j2").render(
        output=output,
        description=_description(output),
        items=items,
        generated=now,
        rights=rights_statement(output),
        noindex=noindex,
    )
    return page.encode("utf-8")
