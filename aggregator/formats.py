"""Feed formats: RSS 2.0, Atom 1.0 and JSON Feed 1.1 documents of one output (feedgen).

Every body written here is `PublishedItem.content_html` verbatim: the policy stage already cut
it to what the provider allows and appended the credit, so this stage only changes its
encoding, never its text. Provenance (provider, feed URL, rights) travels in each format's own
source fields: RSS `<source>`/`dc:rights`, a full Atom `<source>`, the JSON `_source` object.

Feed-level links beyond `self` and the home page (WebSub `hub`, RFC 5005 `prev-archive` and
`current`) and the `<fh:archive/>` marker of archive pages come in as `Extras`; RSS carries
them as `atom:link`, as it does `self`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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


# Code points XML 1.0 forbids; lxml refuses them, and one stray byte must not stop publishing.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(item: PublishedItem) -> PublishedItem:
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


def rss(
    items: Sequence[PublishedItem],
    output: OutputConfig,
    updated: datetime,
    self_name: str,
    extras: Extras,
) -> bytes:
    fg = _new_feed(output, updated, self_name, extras)
    fg.load_extension("dc")
    fg.ttl(int(getattr(output, "ttl", None) or DEFAULT_TTL))
    for item in items:
        entry = fg.add_entry(order="append")
        entry.title(item.title)
        entry.link(href=item.link)
        entry.guid(item.guid, permalink=False)
        entry.content(item.content_html, type="html")  # sole body -> <description>
        entry.published(aware(item.published))
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
        xml_elem("updated", source).text = aware(item.updated).isoformat()
        if not item.author:
            # Atom needs an author per entry; with none given, the provider stands in.
            xml_elem("name", xml_elem("author", source)).text = item.provider
        if item.rights:
            xml_elem("rights", source).text = item.rights
        return entry


def atom(
    items: Sequence[PublishedItem],
    output: OutputConfig,
    updated: datetime,
    self_name: str,
    extras: Extras,
) -> bytes:
    fg = _new_feed(output, updated, self_name, extras)
    fg.id(public_url(output, self_name))  # the document's own URL: stable and unique
    fg.register_extension("atom_source", _AtomSource, _AtomSourceEntry, atom=True, rss=False)
    for item in items:
        entry = fg.add_entry(order="append")
        entry.id(item.guid)
        entry.title(item.title)
        entry.link(href=item.link, rel="alternate")
        entry.published(aware(item.published))
        entry.updated(aware(item.updated))
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
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
