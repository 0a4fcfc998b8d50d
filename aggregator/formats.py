"""Feed formats: RSS 2.0, Atom 1.0 and JSON Feed 1.1 documents of one output (feedgen).

Every body written here is `PublishedItem.content_html` verbatim: the policy stage already cut
it to what the provider allows and appended the credit, so this stage only changes its
encoding, never its text. Provenance (provider, feed URL, rights) travels in each format's own
source fields: RSS `<source>`/`dc:rights`, a full Atom `<source>`, the JSON `_source` object.

Feed-level links beyond `self` and the home page (WebSub `hub`, RFC 5005 `prev-archive` and
`current`) and the `<fh:archive/>` marker of archive pages come in as `Extras`; RSS carries
them as `atom:link`, as it does `self`.

RSS and Atom are made from one set of feedgen entries (`feeds`): feedgen keeps both formats'
values in an entry, so what they share is set once per item, not once per format.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from typing import Any
from urllib.parse import urljoin

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from aggregator.config import OutputConfig
from aggregator.models import PublishedItem

#: Minutes readers may cache the feed; used when the output config has no `ttl`.
DEFAULT_TTL = 30
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"
#: RFC 5005 Feed History namespace (`<fh:archive/>` marks an archive document).
FH_NS = "http://purl.org/syndication/history/1.0"
ATOM_NS = "http://www.w3.org/2005/Atom"
#: Dublin Core elements: RSS items' `dc:creator` and `dc:rights`.
DC_NS = "http://purl.org/dc/elements/1.1/"
#: The aggregate's rights statement when `output.rights` is not set (by output language).
DEFAULT_RIGHTS = {
    True: "각 기사의 저작권은 기사제공처에 있으며, 기사는 제공처의 이용 조건에 따라 게재됩니다.",
    False: "Each item remains the property of its provider, credited with the item, and is "
    "republished within that provider's terms.",
}


@cache  # the installed version does not change while we run; reading it parses METADATA
def _generator() -> str:
    try:
        return f"aggregator {metadata.version('aggregator')}"
    except metadata.PackageNotFoundError:
        return "aggregator"


# Code points XML 1.0 forbids; lxml refuses them, and one stray byte must not stop publishing.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(item: PublishedItem) -> PublishedItem:
    """Drop XML-illegal control characters (invisible to readers) from the XML formats' text.

    Nearly every item has none: one search over all its text then returns it as it is.
    """
    texts = (item.title, item.author, item.provider, item.content_html, item.summary_text)
    if not _XML_ILLEGAL.search("\n".join((*texts, item.rights or "", *item.categories))):
        return item

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


def aware(dt: datetime) -> datetime:
    """Feed dates need a zone; the store hands out UTC, so a naive value is taken as UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def public_url(output: OutputConfig, name: str) -> str:
    """Where `name` is served: under base_url (a directory), else resolved like index.html's
    relative `href` would be against the home page `output.link`."""
    if output.base_url:
        return output.base_url.rstrip("/") + "/" + name
    return urljoin(output.link, name)


def description(output: OutputConfig) -> str:
    return output.description or f"{output.title} - merged feed"


def rights_statement(output: OutputConfig) -> str:
    """The aggregate's own rights statement: the configured one, else the language's default."""
    return output.rights or DEFAULT_RIGHTS[output.language.lower().startswith("ko")]


@dataclass(frozen=True)
class Extras:
    """Feed-level links feedgen's RSS writer drops (hub, RFC 5005) and the archive marker."""

    links: tuple[tuple[str, str], ...] = ()
    archive: bool = False


class _ExtrasFeed(BaseExtension):  # type: ignore[misc]
    """Writes `Extras` into the feed: `atom:link`s in RSS, `link`s in Atom, `fh:archive`."""

    extras = Extras()

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH_NS} if self.extras.archive else {}

    def _extend(self, parent: Any, link_tag: str) -> None:
        for rel, href in self.extras.links:
            xml_elem(link_tag, parent, rel=rel, href=href)
        if self.extras.archive:
            xml_elem(f"{{{FH_NS}}}archive", parent)

    def extend_rss(self, feed: Any) -> Any:
        self._extend(feed[0], f"{{{ATOM_NS}}}link")  # feed[0]: <channel>
        return feed

    def extend_atom(self, feed: Any) -> Any:
        self._extend(feed, "link")  # feedgen's Atom elements are unprefixed, xmlns set on <feed>
        return feed


class _ExtrasEntry(BaseEntryExtension):  # type: ignore[misc]
    """feedgen gives every entry each feed extension's entry half; this one adds nothing."""


def _new_feed(output: OutputConfig, updated: datetime, self_name: str, extras: Extras) -> Any:
    fg = FeedGenerator()
    fg.title(output.title)
    fg.description(description(output))
    fg.language(output.language)
    fg.generator(_generator())
    fg.updated(updated)
    fg.rights(rights_statement(output))
    # feedgen takes the RSS <link> from the last link() call: self first, home page last.
    fg.link(href=public_url(output, self_name), rel="self")
    fg.link(href=output.link, rel="alternate")
    if extras.links or extras.archive:
        fg.register_extension("extras", _ExtrasFeed, _ExtrasEntry)
        fg.extras.extras = extras
    return fg


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a document's objects are made.

    A 10,000-item feed is ~300,000 feedgen dicts and lxml elements, all alive until the
    document is written and none in a reference cycle (freed by reference counting). Made
    among a publish's other items they set off full collections that each walk every
    object in the process (~0.1 s, several per document) and free nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _rss_feed(output: OutputConfig, updated: datetime, name: str, extras: Extras) -> Any:
    fg = _new_feed(output, updated, name, extras)
    fg.register_extension("rss_item", _RssItemFeed, _RssItemEntry, atom=False, rss=True)
    fg.ttl(int(getattr(output, "ttl", None) or DEFAULT_TTL))
    return fg


def _atom_feed(output: OutputConfig, updated: datetime, name: str, extras: Extras) -> Any:
    fg = _new_feed(output, updated, name, extras)
    fg.id(public_url(output, name))  # the document's own URL: stable and unique
    fg.register_extension("atom_source", _NoFeedPart, _AtomSourceEntry, atom=True, rss=False)
    return fg


def _set_shared_and_rss(entry: Any, item: PublishedItem) -> Any:
    """The fields RSS and Atom share, and RSS's own (its `<source>` and `dc:` fields are an
    RSS-only extension: feedgen's `source()` would give Atom a partial `<source>` too)."""
    entry.title(item.title)
    entry.link(href=item.link, rel="alternate")
    entry.guid(item.guid, permalink=False)  # also Atom's <id>
    entry.content(item.content_html, type="html")  # RSS: the sole body -> <description>
    entry.published(aware(item.published))
    for term in item.categories:
        entry.category(term=term)
    entry.rss_item.item = item
    return entry


def _set_atom(entry: Any, item: PublishedItem) -> None:
    """Atom's own fields: set after RSS is written (a summary would become RSS's
    `<description>`, the body moving to `content:encoded`)."""
    entry.atom_source.item = item
    entry.updated(aware(item.updated))
    if item.author:
        entry.author(name=item.author)
    if item.summary_text:
        entry.summary(item.summary_text)
    if item.rights:
        entry.rights(item.rights)


def feeds(
    items: Sequence[PublishedItem],
    output: OutputConfig,
    updated: datetime,
    rss_doc: tuple[str, Extras],
    atom_doc: tuple[str, Extras],
) -> Iterator[tuple[str, bytes]]:
    """The RSS document, then the Atom one, of `items` (each named by a (file name, extras)
    pair), from one set of feedgen entries.

    feedgen keeps an entry's RSS and Atom values side by side, so the Atom generator is given
    the RSS generator's entries: what the formats share (link, guid, body, dates, categories)
    is set once per item instead of once per format.
    """
    with gc_paused():
        fg = _rss_feed(output, updated, *rss_doc)
        entries = [_set_shared_and_rss(fg.add_entry(order="append"), item) for item in items]
        data = bytes(fg.rss_str(pretty=True))
    yield rss_doc[0], data
    del data  # ~20 MB at 10,000 items: not kept while Atom is made
    with gc_paused():
        fg = _atom_feed(output, updated, *atom_doc)
        for entry, item in zip(entries, items, strict=True):
            _set_atom(fg.add_entry(entry, order="append"), item)  # adds atom_source to it
        del entries
        data = bytes(fg.atom_str(pretty=True))
    del fg
    yield atom_doc[0], data


class _RssItemFeed(BaseExtension):  # type: ignore[misc]
    """Feed half of `_RssItemEntry`: declares the `dc` namespace on `<rss>`."""

    def extend_ns(self) -> dict[str, str]:
        return {"dc": DC_NS}


class _RssItemEntry(BaseEntryExtension):  # type: ignore[misc]
    """An RSS item's `<source url="feed URL">provider</source>` (as feedgen's `source()` writes
    it), `dc:creator` (RSS `<author>` must be an e-mail address) and `dc:rights`.

    One small object per entry holding the item, where feedgen's dc extension keeps fifteen
    fields and walks them all for each item: RSS and Atom share these entries (`feeds`).
    """

    item: PublishedItem | None = None

    def extend_rss(self, entry: Any) -> Any:
        item = self.item
        if item is None:
            return entry
        xml_elem("source", entry, url=item.source_url).text = item.provider
        if item.author:
            xml_elem(f"{{{DC_NS}}}creator", entry).text = item.author
        if item.rights:
            xml_elem(f"{{{DC_NS}}}rights", entry).text = item.rights
        return entry


class _NoFeedPart(BaseExtension):  # type: ignore[misc]
    """Feed half of an entry-only extension; feedgen requires one, it adds nothing."""


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
        xml_elem("updated", source).text = aware(item.updated).isoformat()
        if not item.author:
            # Atom needs an author per entry; with none given, the provider stands in.
            xml_elem("name", xml_elem("author", source)).text = item.provider
        if item.rights:
            xml_elem("rights", source).text = item.rights
        return entry


def _json_item(item: PublishedItem) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": item.guid,
        "url": item.link,
        "title": item.title,
        "content_html": item.content_html,
    }
    if item.summary_text:
        data["summary"] = item.summary_text
    data["date_published"] = aware(item.published).isoformat()
    data["date_modified"] = aware(item.updated).isoformat()
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


def json_feed(items: Sequence[PublishedItem], output: OutputConfig, noindex: bool) -> bytes:
    rights: dict[str, str] = {"statement": rights_statement(output)}
    if noindex:
        rights["robots"] = "noindex"
    with gc_paused():  # (see there) and check_circular=False: these dicts hold no cycle
        feed = {
            "version": JSONFEED_VERSION,
            "title": output.title,
            "home_page_url": output.link,
            "feed_url": public_url(output, "feed.json"),
            "description": description(output),
            "language": output.language,
            "items": [_json_item(item) for item in items],
            "_rights": rights,
        }
        if output.hub:
            feed["hubs"] = [{"type": "WebSub", "url": output.hub}]
        text = json.dumps(feed, ensure_ascii=False, indent=2, check_circular=False)
    return (text + "\n").encode("utf-8")
