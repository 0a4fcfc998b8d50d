"""Parse stage: feed bytes -> ParsedFeed (plain-text titles, sanitised HTML, aware UTC dates).

feedparser is trusted for structure only. Its encoding guesses, date parsing and entity
handling fail silently on real (notably Korean) feeds, so this module decodes the bytes,
refuses entity declarations, parses dates and sanitises HTML itself (see FIELD-NOTES.md).
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.parsers import expat
from zoneinfo import ZoneInfo

import feedparser
import nh3
import webencodings

from aggregator.models import ParsedEntry, ParsedFeed
from aggregator.policy import rights

__all__ = ["ParseError", "decode", "parse_date", "parse_feed"]


class ParseError(Exception):
    """The body is not a feed we can or will read; the message is shown to the operator."""


# --- decoding -----------------------------------------------------------------------------

# XML requires a BOM on UTF-16, so BOM-less UTF-16 is not sniffed.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml\s[^>]*?encoding\s*=\s*["']([\w.:-]+)["']""")
_XML_DECL = re.compile(r"^\s*<\?xml\s[^>]*\?>")
# Labels Korean servers send that browsers read as windows-949 but WHATWG does not list.
_CP949_ALIASES = frozenset({"cp949", "ms949", "uhc", "x-uhc", "x-windows-949"})


def _codec(label: str) -> str | None:
    label = label.strip().lower()
    if label in _CP949_ALIASES:
        return "cp949"
    encoding = webencodings.lookup(label)
    if encoding is None or encoding.name.startswith("utf-16"):
        return None  # a UTF-16 label on bytes we could read as ASCII is a lie
    # Browsers decode every EUC-KR label as windows-949; Python's euc_kr rejects its extra
    # syllables (똠, 햏, 뷁 ...), which Korean CMSs emit all the time.
    return "cp949" if encoding.name == "euc-kr" else str(encoding.codec_info.name)


def _declared_labels(body: bytes, content_type: str | None) -> list[str]:
    labels = []
    if content_type and (charset := _header(content_type).get_content_charset()):
        labels.append(charset)
    if match := _XML_ENCODING.match(body[:1024]):
        labels.append(match.group(1).decode("ascii"))
    return labels


def decode(body: bytes, content_type: str | None) -> str:
    """Pick the encoding as a browser would: a wrong guess is silent mojibake downstream."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace")
    try:
        return body.decode("utf-8")  # valid UTF-8 is UTF-8, whatever the label claims
    except UnicodeDecodeError:
        pass
    declared = [c for c in map(_codec, _declared_labels(body, content_type)) if c]
    for codec in declared or ["cp949", "cp1252"]:
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    # One truncated character should cost one U+FFFD, not the whole document.
    return body.decode(declared[0] if declared else "cp1252", errors="replace")


def _header(content_type: str) -> Message:
    message = Message()
    message["content-type"] = content_type
    return message


# --- hostile XML --------------------------------------------------------------------------

_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_ENTITIES_REFUSED = "feed declares XML entities in its DOCTYPE; refused (entity-expansion risk)"


class _RootReached(Exception):
    """expat reached the root element: the prolog, where entities live, is over."""


def _refuse_entities(data: bytes) -> None:
    """One 30 KB entity used 20,000 times costs feedparser 27 s and 2.4 GB; feeds never need one.

    expat reads only the prolog (it stops at the root), so comments and quoted strings cannot
    hide a declaration. If expat chokes before the root, feedparser's lenient parser will not,
    so fall back to a plain case-insensitive search of the whole document.
    """
    parser = expat.ParserCreate()

    def on_entity(*_: object) -> None:
        raise ParseError(_ENTITIES_REFUSED)

    def on_root(*_: object) -> None:
        raise _RootReached

    parser.EntityDeclHandler = on_entity
    parser.StartElementHandler = on_root
    try:
        parser.Parse(data, True)
    except _RootReached:
        return
    except expat.ExpatError:
        if _ENTITY_DECL.search(data):
            raise ParseError(_ENTITIES_REFUSED) from None


# --- text and HTML ------------------------------------------------------------------------

_TAGS = {
    *("p", "br", "hr", "div", "span", "a", "img", "figure", "figcaption", "blockquote"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "pre", "code"),
    *("em", "strong", "b", "i", "u", "s", "del", "ins", "mark", "small", "sub", "sup"),
    *("abbr", "cite", "q", "kbd", "time", "caption"),
    *("table", "thead", "tbody", "tfoot", "tr", "th", "td"),
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "ol": {"start"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
# Removed with their content: their text is code or fallback, never part of the story.
_DROP = {"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript"}
_SCHEMES = {"http", "https", "mailto"}
_BLOCK_END = re.compile(r"<(?:br|/p|/div|/li|/h[1-6]|/tr|/blockquote)\b", re.IGNORECASE)
_EMAIL = re.compile(r"[<(]?\s*[\w.+-]+@[\w-]+(?:\.[\w-]+)+\s*[>)]?")


def _sanitize(fragment: str, base: str) -> str:
    """Allowlist, absolute URLs: the output is embedded in other people's pages and feeds."""

    def absolute(tag: str, attribute: str, value: str) -> str | None:
        return urljoin(base, value) if attribute in ("href", "src", "cite") else value

    return nh3.clean(
        fragment,
        tags=_TAGS,
        clean_content_tags=_DROP,
        attributes=_ATTRIBUTES,
        attribute_filter=absolute,
        url_schemes=_SCHEMES,
        link_rel="noopener noreferrer",
    ).strip()


def _text(fragment: str) -> str:
    """Markup -> one line of text; block ends become spaces so paragraphs don't fuse."""
    spaced = _BLOCK_END.sub(r" \g<0>", fragment)
    return " ".join(html.unescape(nh3.clean(spaced, tags=set(), clean_content_tags=_DROP)).split())


def _plain(value: str | None, is_html: bool) -> str:
    """Resolve entities exactly once, and only where the feed says the value is markup."""
    if not value:
        return ""
    return _text(value) if is_html else " ".join(value.split())


def _title(value: str, body_text: str) -> str:
    if value:
        return value
    if body_text:
        return body_text[:80].rstrip() + ("…" if len(body_text) > 80 else "")
    return "(untitled)"


def _person(raw: str | None) -> str | None:
    """Names only: `reporter@x.com (Kim)` -> `Kim`; a bare address is not a byline."""
    if not raw:
        return None
    return " ".join(_EMAIL.sub(" ", raw).strip(" ()<>").split()) or None


def _absolute(base: str, link: str | None) -> str | None:
    if not link or not link.strip():
        return None
    absolute = urljoin(base, link.strip())
    return absolute if urlsplit(absolute).scheme in ("http", "https") else None


# --- dates --------------------------------------------------------------------------------

_ZONES = {
    **{"KST": "+0900", "JST": "+0900", "HKT": "+0800", "SGT": "+0800", "AWST": "+0800"},
    **{"IST": "+0530", "MSK": "+0300", "EET": "+0200", "EEST": "+0300", "CET": "+0100"},
    **{"CEST": "+0200", "WET": "+0000", "WEST": "+0100", "BST": "+0100"},
    **{"AEST": "+1000", "AEDT": "+1100", "NZST": "+1200", "NZDT": "+1300"},
}
_ZONE_SUFFIX = re.compile(r"\s*\b(" + "|".join(_ZONES) + r")$", re.IGNORECASE)
_LOCAL_FORM = re.compile(
    r"""^(\d{4})\s*(?:[./-]|년)\s*(\d{1,2})\s*(?:[./-]|월)\s*(\d{1,2})\s*일?\.?
    \s*(?:\(\w+\))?                                # weekday, e.g. (목)
    \s*(오전|오후|AM|PM)?
    \s*(?:(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?
    \s*(오전|오후|AM|PM)?
    \s*(Z|[+-]\d{2}:?\d{2})?$""",
    re.VERBOSE | re.IGNORECASE,
)
_PM = ("오후", "PM")


def _local_form(text: str) -> datetime | None:
    """Korean CMS forms: 2025.10.16 19:58, 2025년 10월 16일 오후 7:58, 2025/10/16 ..."""
    match = _LOCAL_FORM.match(text)
    if not match:
        return None
    year, month, day, ampm1, hour, minute, second, ampm2, zone = match.groups()
    hour_value = int(hour or 0)
    if (ampm := (ampm1 or ampm2 or "").upper()) and hour_value <= 12:
        hour_value = hour_value % 12 + (12 if ampm in _PM else 0)
    stamp = datetime(
        int(year), int(month), int(day), hour_value, int(minute or 0), int(second or 0)
    )
    if zone:
        stamp = stamp.replace(tzinfo=datetime.strptime(zone.replace(":", ""), "%z").tzinfo)
    return stamp


def _rfc822(text: str) -> datetime:
    """email.utils takes "PM" for the zone: "Oct 16, 2025 7:58 PM +0900" -> 07:58, zone lost."""
    ampm = re.search(r"\s([AP])M\b", text, re.IGNORECASE)
    stamp = parsedate_to_datetime(text[: ampm.start()] + text[ampm.end() :] if ampm else text)
    if ampm and stamp.hour <= 12:
        stamp = stamp.replace(hour=stamp.hour % 12 + (12 if ampm[1].upper() == "P" else 0))
    return stamp


def parse_date(raw: str | None, default_tz: tzinfo) -> datetime | None:
    """Any date a feed publishes -> aware UTC; feedparser gets zone-less and Korean forms wrong.

    A date without a zone is read in `default_tz`; `None` means unparseable.
    """
    if not raw or not (text := " ".join(raw.split())):
        return None
    text = _ZONE_SUFFIX.sub(lambda m: " " + _ZONES[m.group(1).upper()], text)
    text = re.sub(r"-0000$", "+0000", text)  # RFC 5322 "UTC, local zone unknown"
    parsers: tuple[Callable[[str], datetime | None], ...] = (
        lambda t: datetime.fromisoformat(t.upper()),
        _local_form,
        _rfc822,
    )
    for parser in parsers:
        try:
            stamp = parser(text)
        except (ValueError, TypeError, IndexError, OverflowError):
            continue
        if stamp is not None:
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=default_tz)
            return stamp.astimezone(UTC)
    return None


# --- assembling ---------------------------------------------------------------------------

_FUTURE_SLACK = timedelta(minutes=10)


@dataclass
class _Context:
    """What every entry of one feed is cleaned against."""

    url: str
    tz: tzinfo
    now: datetime
    warnings: list[str]

    def date(self, raw: str | None) -> datetime | None:
        if not raw:
            return None
        stamp = parse_date(raw, self.tz)
        if stamp is None:
            self.warnings.append(f"unparseable date {raw!r}")
        elif stamp > self.now + _FUTURE_SLACK:
            # Post-dated entries would otherwise sit at the top of the merged feed for days.
            self.warnings.append(f"future date {raw!r} clamped to fetch time")
            stamp = self.now
        return stamp


def _default_tz(timezone: str | None, language: str | None) -> tzinfo:
    if timezone:
        return ZoneInfo(timezone)
    if language and language.strip().lower().startswith("ko"):
        return ZoneInfo("Asia/Seoul")
    return UTC


def _str(obj: Mapping[str, Any], key: str) -> str | None:
    # dict.get: FeedParserDict.get("updated") falls back to `published`, with a DeprecationWarning.
    value = dict.get(obj, key) if isinstance(obj, dict) else obj.get(key)
    return value if isinstance(value, str) else None


def _detail_text(obj: Mapping[str, Any], key: str, markup: bool = False) -> str:
    detail = obj.get(f"{key}_detail") or {}
    return _plain(_str(obj, key), markup or "html" in str(detail.get("type", "")))


def _as_html(detail: Mapping[str, Any]) -> str:
    value = str(detail.get("value") or "")
    return value if "html" in str(detail.get("type", "html")) else html.escape(value)


def _license(obj: Mapping[str, Any]) -> str | None:
    """Every licence stated, space-separated, URLs preferred: with media:license feedparser's
    `.license` is only the label text. All of them, so a second, stricter one is not lost."""
    found = [str(x["href"]) for x in obj.get("links") or () if x.get("rel") == "license"]
    media = obj.get("media_license")
    href = media.get("href") if isinstance(media, Mapping) else None
    found += [str(href) if href else _str(obj, "license") or "", _str(obj, "dcterms_license") or ""]
    return " ".join(dict.fromkeys(u.strip() for u in found if u and u.strip())) or None


def _rights(obj: Mapping[str, Any]) -> str | None:
    """Every rights statement, not the first: dc:rights/<copyright>/<rights>, dcterms, media."""
    found = [_detail_text(obj, "rights")]
    found += [_plain(_str(obj, key), False) for key in ("dcterms_rights", "media_copyright")]
    return " / ".join(dict.fromkeys(t for t in found if t)) or None


def _alternate(obj: Mapping[str, Any]) -> str | None:
    """The alternate link; feedparser's `.link` may be a non-URL permalink guid such as `12345`."""
    for link in obj.get("links") or ():
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return str(link["href"])
    link = _str(obj, "link")
    return link if link and urlsplit(link).scheme in ("http", "https") else None


def _entry(e: Mapping[str, Any], ctx: _Context, markup_title: bool) -> ParsedEntry:
    link = _absolute(ctx.url, _alternate(e))
    # Atom may offer several bodies; prefer the HTML one.
    contents = sorted(e.get("content") or [], key=lambda c: "html" not in c.get("type", ""))
    content = contents[0] if contents else None
    summary = e.get("summary_detail") or {}
    base = urljoin(link or ctx.url, str((content or summary).get("base") or ""))  # xml:base
    content_html = _sanitize(_as_html(content), base) if content else ""
    summary_html = _sanitize(_as_html(summary), base) if summary else ""
    if summary_html == content_html:
        summary_html = ""  # feedparser copies content:encoded into summary when alone
    body_text = _text(content_html or summary_html)
    title = _detail_text(e, "title", markup_title)
    guid = (_str(e, "id") or "").strip() or None
    digest = hashlib.sha256((title + "\n" + body_text).encode()).hexdigest()
    published, updated = ctx.date(_str(e, "published")), ctx.date(_str(e, "updated"))
    # The raw string first: feedparser's e-mail regex cuts TLDs at 4 letters (`.example`).
    author = _str(e, "author") or (e.get("author_detail") or {}).get("name")
    tags = (_plain(t.get("term"), False) for t in e.get("tags") or ())
    return ParsedEntry(
        key=guid or link or f"sha256:{digest}",
        title=_title(title, body_text),
        guid=guid,
        link=link,
        author=_person(author),
        published=published or updated,
        updated=updated or published,
        summary_html=summary_html,
        content_html=content_html,
        rights=_rights(e),
        license=_license(e),
        categories=tuple(dict.fromkeys(t for t in tags if t)),
        notice_lines=rights.notice_lines((summary_html, content_html)),
    )


def _build(result: Mapping[str, Any], ctx: _Context) -> ParsedFeed:
    """feedparser's result shape (or JSON Feed reshaped into it) -> ParsedFeed."""
    feed = result["feed"]
    # Only Atom and JSON Feed say whether a title is text or markup; an RSS title's type is
    # feedparser's guess (it calls `<script>x</script>Title` plain), so RSS titles are de-tagged.
    markup = str(result.get("version")).startswith("rss")
    entries = tuple(_entry(e, ctx, markup) for e in result["entries"])
    ttl = str(feed.get("ttl") or "").strip()
    return ParsedFeed(
        title=_detail_text(feed, "title", markup) or None,
        link=_absolute(ctx.url, _alternate(feed)),
        language=_str(feed, "language"),
        rights=_rights(feed),
        license=_license(feed),
        author=_person(_str(feed, "author") or (feed.get("author_detail") or {}).get("name")),
        ttl=int(ttl) if ttl.isdigit() else None,
        entries=entries,
        warnings=tuple(dict.fromkeys(ctx.warnings)),
    )


def _json_author(obj: Mapping[str, Any]) -> str | None:
    """1.1 has `authors`, 1.0 a single `author`; we keep the first name."""
    authors = obj.get("authors") or [obj.get("author")]
    first = authors[0] if isinstance(authors, list) and authors else None
    return _str(first, "name") if isinstance(first, dict) else None


def _json_item(item: Mapping[str, Any]) -> dict[str, Any]:
    if body := _str(item, "content_html"):
        content = [{"type": "text/html", "value": body}]
    else:
        content = [{"type": "text/plain", "value": _str(item, "content_text") or ""}]
    return {
        "id": None if item.get("id") is None else str(item["id"]),
        "title": _str(item, "title"),
        "links": [{"href": _str(item, "url") or _str(item, "external_url")}],
        "author": _json_author(item),
        "published": _str(item, "date_published"),
        "updated": _str(item, "date_modified"),
        "summary_detail": {"type": "text/plain", "value": _str(item, "summary") or ""},
        "content": content,
        "tags": [{"term": t} for t in item.get("tags") or () if isinstance(t, str)],
    }


def _from_json(text: str) -> dict[str, Any]:
    """JSON Feed 1.0/1.1, which feedparser cannot read, reshaped into feedparser's result."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON Feed: {exc}") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if not str(version).startswith("https://jsonfeed.org/version/1"):
        raise ParseError("not a feed: JSON without a https://jsonfeed.org/version/1 version")
    if not isinstance(doc.get("items"), list):
        raise ParseError("invalid JSON Feed: 'items' is not a list")
    feed = {
        "title": _str(doc, "title"),
        "links": [{"href": _str(doc, "home_page_url")}],
        "language": _str(doc, "language"),
        "author": _json_author(doc),
    }
    items = [_json_item(item) for item in doc["items"] if isinstance(item, dict)]
    return {"version": "json", "feed": feed, "entries": items}


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None = None,
    timezone: str | None = None,
    now: datetime | None = None,
) -> ParsedFeed:
    """Bytes as fetched -> ParsedFeed; raises ParseError for anything that is not a feed.

    `url` is the final URL (base for relative links); `timezone` is the operator's zone for
    zone-less dates (None: Asia/Seoul for Korean-language feeds, else UTC).
    """
    now = now or datetime.now(UTC)
    media_type = _header(content_type).get_content_type() if content_type else "no content type"
    text = decode(body, content_type).lstrip("\ufeff").lstrip()
    if not text:
        raise ParseError("not a feed: empty body")
    warnings: list[str] = []
    if text.startswith("{") or (not text.startswith("<") and media_type.endswith("json")):
        result: Mapping[str, Any] = _from_json(text)
    else:
        data = ('<?xml version="1.0" encoding="utf-8"?>' + _XML_DECL.sub("", text, 1)).encode()
        _refuse_entities(data)
        # A file object, not bytes: given bytes, feedparser first tries to open() them as a
        # local path. No content-location: it would rewrite permalink guids like "123" to URLs.
        result = feedparser.parse(
            io.BytesIO(data),
            response_headers={"content-type": "application/xml; charset=utf-8"},
            sanitize_html=False,
            resolve_relative_uris=False,
        )
        if not result.get("version"):
            raise ParseError(f"not a feed: no RSS/Atom/JSON Feed elements found (got {media_type})")
        if exc := result.get("bozo_exception"):
            warnings.append(f"sloppy XML, parsed leniently: {type(exc).__name__}: {exc}"[:200])
    language = _str(result["feed"], "language")
    ctx = _Context(url, _default_tz(timezone, language), now, warnings)
    return _build(result, ctx)
