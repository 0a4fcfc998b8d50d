"""Identity keys that say "this is the same story" across providers.

A false merge hides news from readers, which is worse than showing a story twice, so
only strong evidence merges: the same normalised link, the same globally unique guid, or
the same main text. Each key is a pure function of one entry; the store looks them up.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import nh3

from aggregator.models import ParsedEntry

#: Query parameters that only track the reader and never select different content.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "ncid",
        "cmpid",
        "spm",
        "ref_src",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "hmb_")

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Shorter texts (captions, "photo of the day") collide too easily to prove identity.
MIN_TEXT_FOR_HASH = 200


def normalize_url(url: str | None) -> str | None:
    """Reduce a link to what identifies the article.

    http and https count as the same page; host case, default ports, fragments and
    tracking parameters are dropped; the remaining query parameters are kept in order.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower().removeprefix("www.")
    if port and port != _DEFAULT_PORTS[parts.scheme.lower()]:
        host = f"{host}:{port}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)
    ]
    path = parts.path or "/"
    return urlunsplit(("", host, path, urlencode(query), ""))


def guid_key(guid: str | None) -> str | None:
    """A guid counts across providers only when it is globally unique by construction.

    Short or numeric guids ("12345") are per-feed counters that collide between
    providers; URLs, URNs and tag: URIs name one thing everywhere.
    """
    if not guid:
        return None
    guid = guid.strip()
    if "://" in guid:
        return normalize_url(guid) or guid
    if guid.lower().startswith(("urn:", "tag:")) and len(guid) >= 12:
        return guid
    return None


_SPACE = re.compile(r"\s+")


def main_text(html: str) -> str:
    """Plain text with whitespace and case folded, so cosmetic edits do not matter."""
    text = nh3.clean(html, tags=set())
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub("", text)


def text_hash(entry: ParsedEntry) -> str | None:
    text = main_text(entry.content_html or entry.summary_html)
    if len(text) < MIN_TEXT_FOR_HASH:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def key_hash(key: str) -> str:
    """Fixed-size per-feed identity, so long guids index cheaply."""
    return hashlib.sha256(key.encode()).hexdigest()


def content_hash(entry: ParsedEntry) -> str:
    """Changes when anything a reader could see changes; equal hashes skip the write."""
    parts = (
        entry.title,
        entry.link or "",
        entry.author or "",
        entry.published.isoformat() if entry.published else "",
        entry.updated.isoformat() if entry.updated else "",
        entry.summary_html,
        entry.content_html,
        entry.rights or "",
        entry.license or "",
        "\x1f".join(entry.categories),
    )
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()
