"""One story cluster -> the item readers get: representative, level, cut text, credit block."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from html import escape
from string import Formatter
from urllib.parse import urlsplit

from aggregator.config import FeedConfig
from aggregator.models import LEVELS, Decision, PublishedItem, StoredItem
from aggregator.policy.rights import detect
from aggregator.policy.text import count_images, excerpt, plain, strip_images

#: What of a provider's config decides how its items are cut and credited: everything
#: `build_item` reads of a FeedConfig besides its name.
TERMS_FIELDS = {
    "redistribution",
    "author",
    "excerpt_length",
    "priority",
    "images",
    "credit",
    "noindex",
    "credit_template",
}


def terms_fingerprint(feed: FeedConfig | None) -> str:
    """A short hash of what decides how this provider's items are cut; "" once removed."""
    if feed is None or feed.redistribution == "none":
        return ""
    data = json.dumps(feed.model_dump(include=TERMS_FIELDS), sort_keys=True, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


def decide(feed: FeedConfig, item: StoredItem) -> Decision:
    """The level for one entry: the configured contract, else what its rights signals allow."""
    found = detect(
        [item.feed_rights, item.feed_license],
        [item.rights, item.license],
        bodies=[item.summary_html, item.content_html],
        lines=item.notice_lines,
    )
    signals = tuple(str(s) for s in found.signals)
    if feed.redistribution != "auto":
        rule = f"config: redistribution={feed.redistribution}"
        return Decision(feed.redistribution, rule, signals, found.notice, found.level)
    return Decision(found.level, found.rule, signals, found.notice, found.level)


@dataclass(frozen=True)
class _Candidate:
    item: StoredItem
    feed: FeedConfig
    decision: Decision
    link: str
    author: str


@lru_cache(maxsize=4096)  # providers' home pages recur in every item
def _http(url: str | None) -> str | None:
    url = (url or "").strip()
    parts = urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _candidate(feed: FeedConfig, item: StoredItem) -> _Candidate | str:
    """An eligible member, or the reason it may not be published."""
    decision = decide(feed, item)
    if decision.level == "none":
        return "redistribution none"
    link = _http(item.link)
    if link is None:
        return "unattributed: no link"
    authors = (item.author, feed.author, item.feed_author)
    author = next((" ".join(a.split()) for a in authors if a and a.strip()), None)
    if author is None:
        return "unattributed: no author"
    return _Candidate(item, feed, decision, link, author)


def why_not(feed: FeedConfig, item: StoredItem) -> str | None:
    """Why this entry may not be published at all, or None when it may."""
    result = _candidate(feed, item)
    return result if isinstance(result, str) else None


def _story_date(item: StoredItem) -> datetime:
    """When the provider published it; a date later than first seen is not believed."""
    first_seen = _utc(item.first_seen)
    return min(_utc(item.published or first_seen), first_seen)


def _rank(c: _Candidate) -> tuple[int, datetime, int, str, int]:
    # The original publisher usually dated the story first, so it represents ties.
    level = LEVELS.index(c.decision.level)
    return level, _story_date(c.item), -c.feed.priority, c.feed.name, c.item.id


# --- the credit block --------------------------------------------------------------------------

#: The credit line per output language (`ko…` or not); `output.credit_template` overrides it.
CREDIT_TEMPLATES = {
    True: "기사제공처: {provider} / 기자: {author}",
    False: "Source: {provider} / Author: {author}",
}
_WORDS = {
    True: ("원문", "함께 보도한 곳", "(제목 없음)"),
    False: ("Original", "Also reported by", "(untitled)"),
}


def _fill(template: str, values: Mapping[str, str], literal: Callable[[str], str]) -> str:
    """Substitute the (validated) placeholders; `literal` escapes the template's own text."""
    return "".join(
        literal(text) + (values[name] if name else "") for text, name in _parts(template)
    )


@lru_cache(maxsize=256)  # a few templates, every item
def _parts(template: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((text, name) for text, name, _, _ in Formatter().parse(template))


def _credit_line(c: _Candidate, korean: bool, html: bool) -> str:
    template = c.feed.credit_template or CREDIT_TEMPLATES[korean]
    home = _http(c.item.feed_link) if html else None
    return _credit(template, c.feed.name, c.author, c.feed.credit, home, html)


@lru_cache(maxsize=8192)  # one line per provider and reporter, asked for by each of their items
def _credit(
    template: str, name: str, author: str, credit: str | None, home: str | None, html: bool
) -> str:
    extra = f" / {credit.strip()}" if credit and credit.strip() else ""
    if not html:
        return _fill(template, {"provider": name, "author": author}, str) + extra
    e = escape
    provider = f'<a href="{e(home)}">{e(name)}</a>' if home else e(name)
    return _fill(template, {"provider": provider, "author": e(author)}, e) + e(extra)


def _credit_html(c: _Candidate, also: Sequence[tuple[str, str]], korean: bool) -> str:
    original, also_word, _ = _WORDS[korean]
    e = escape
    out = [f'<p class="credit">{_credit_line(c, korean, html=True)}</p>']
    if c.decision.notice:
        out.append(f'<p class="rights">{e(c.decision.notice)}</p>')
    out.append(f'<p class="original">{original}: <a href="{e(c.link)}">{e(c.link)}</a></p>')
    if also:
        links = ", ".join(f'<a href="{e(link)}">{e(name)}</a>' for name, link in also)
        out.append(f'<p class="also">{also_word}: {links}</p>')
    return "\n".join(out)


# --- building the item -------------------------------------------------------------------------


def _images(n: int) -> str:
    return f"{n} image{'s' * (n != 1)}"


def _removed(c: _Candidate, body: str, teaser: str, summary: str) -> tuple[str, ...]:
    """What the level and the feed's settings took away from the provider's entry, in words."""
    level, size, images = c.decision.level, len(plain(body)), count_images(body)
    out = []
    if level == "summary" and size > len(summary):
        limit = f"excerpt_length {c.feed.excerpt_length}"
        why = limit if teaser == body else f"the entry's own summary, {limit}"
        out.append(f"body cut from {size:,} to {len(summary):,} characters ({why})")
    elif level == "title" and size:
        out.append(f"body removed ({size:,} characters): title and credit only")
    if images and level != "full":
        out.append(f"{_images(images)} removed (a {level} item carries no images)")
    elif images and not c.feed.images:
        out.append(f"{_images(images)} removed (images: false)")
    return tuple(out)


def _noindex(c: _Candidate) -> bool:
    """`auto`: a full copy made under the operator's contract while the provider's own terms
    allow less (a notice, or no statement) must not compete with the original in search."""
    if c.feed.noindex != "auto":
        return c.feed.noindex
    return c.decision.level == "full" and c.decision.detected != "full"


def build_item(
    members: Sequence[StoredItem],
    feeds: Mapping[str, FeedConfig],
    language: str = "ko",
    *,
    explain: bool = False,
) -> tuple[PublishedItem | None, str]:
    """One story cluster -> the published item cut to its terms, or None and the reason.

    Only `explain` fills the item's `removed`: it needs the whole body as text, which took
    as long as the rest of the item, and publishing never shows it.
    """
    configured = [(feeds[m.feed_name], m) for m in members if m.feed_name in feeds]
    if not configured:
        return None, "no configured provider"
    results = [_candidate(feed, m) for feed, m in configured]
    ranked = sorted((r for r in results if isinstance(r, _Candidate)), key=_rank)
    if not ranked:
        return None, "; ".join(dict.fromkeys(r for r in results if isinstance(r, str)))
    best, item = ranked[0], ranked[0].item
    pairs = dict.fromkeys((c.feed.name, c.link) for c in ranked[1:])
    also = tuple(p for p in pairs if p != (best.feed.name, best.link))
    korean = language.lower().startswith("ko")
    level, credit = best.decision.level, _credit_html(best, also, korean)
    body = item.content_html if item.content_html.strip() else item.summary_html
    teaser = item.summary_html if item.summary_html.strip() else item.content_html
    # A title-level item shows no excerpt: it is not made (turning a body into text is most
    # of an item's cost).
    summary = excerpt(teaser, best.feed.excerpt_length) if level != "title" else ""
    if level == "full":
        shown = body if best.feed.images else strip_images(body)
        content = f"{shown}\n{credit}" if shown.strip() else credit
    elif level == "summary":
        content = f"<p>{escape(summary)}</p>\n{credit}" if summary else credit
    else:
        content, summary = credit, ""
    # Dated by its first report, as the store orders stories: an item dated by a later copy
    # would sit higher in the feed than in the store, and leave the feed for no archive page.
    dated = _story_date(item)
    published = min(_utc(m.sort_date) if m.sort_date else _story_date(m) for _, m in configured)
    updated = max(_utc(item.updated or dated), dated)
    published_item = PublishedItem(
        guid=item.cluster_guid,
        title=" ".join(item.title.split()) or _WORDS[korean][2],
        link=best.link,
        provider=best.feed.name,
        source_url=item.feed_url,
        author=best.author,
        published=published,
        updated=updated,
        level=level,
        content_html=content,
        summary_text=summary,
        credit=_credit_line(best, korean, html=False),
        rule=best.decision.rule,
        provider_link=_http(item.feed_link),
        rights=best.decision.notice,
        also=also,
        categories=item.categories,
        noindex=_noindex(best),
        removed=_removed(best, body, teaser, summary) if explain else (),
    )
    return published_item, f"published {level} from {best.feed.name}"
