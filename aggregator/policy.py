"""Policy: how much of each provider's entry may be republished, and with what credit.

Every published item names its provider, original link and author; an entry that cannot be
attributed is not published. Redistribution is decided FAIL-CLOSED: when in doubt, publish less.

An explicit ``redistribution`` in the config (full/summary/title/none) is the operator's contract
and wins; detected rights are still carried as the notice. ``auto`` reads rights signals:

================================================================  =========  ==================
Signal (feed rights/licence fields; entry rights/licence fields;  Level      Why
notices inside the entry body, matched as notices, not keywords)
================================================================  =========  ==================
CC BY, CC BY-SA, CC0, Public Domain Mark (URL or "CC BY 4.0"),    full       permissive
KOGL 공공누리 제0유형 / 제1유형 (text, "KOGL Type 1", licence URL)
CC BY-ND, BY-NC-ND, KOGL 제3유형 / 제4유형                         title      no changes: no excerpt
CC BY-NC, BY-NC-SA, KOGL 제2유형                                   title      users are commercial
무단 전재(·및·-) 재배포 금지, 재판매 및 DB 금지, AI 학습 및 활용   summary    rights reserved
금지, All rights reserved
저작권자 ⓒ …, Copyright ⓒ/©/(c) …, ⓒ holder (unless a licence in  summary    terms not stated
the same scope - same feed, or same entry - grants terms)
any other rights/licence field text                                summary    not recognised
no statement at all                                                summary    default
================================================================  =========  ==================

Within a scope the most restrictive signal wins (conflicts fail closed). The feed level (or the
summary default when the feed says nothing) is the ceiling: entry signals only restrict.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape, unescape
from typing import Literal
from urllib.parse import urlsplit

import nh3

from aggregator.config import FeedConfig
from aggregator.models import LEVELS, Decision, Level, PublishedItem, StoredItem

Kind = Literal["licence", "notice", "copyright notice", "statement"]


@dataclass(frozen=True)
class Signal:
    """One rights signal found in a feed or entry, with the level it allows on its own."""

    scope: Literal["feed", "entry"]
    kind: Kind
    label: str
    level: Level
    why: str

    def __str__(self) -> str:
        return f"{self.scope} {self.kind} {self.quoted}: {self.level}"

    @property
    def quoted(self) -> str:
        return self.label if self.kind == "licence" else f"'{self.label}'"


@dataclass(frozen=True)
class Detection:
    """What `auto` would decide from the rights signals alone."""

    level: Level
    rule: str
    signals: tuple[Signal, ...]
    notice: str | None


# --- recognising rights statements -----------------------------------------------------------

_CC_URL = re.compile(
    r"creativecommons\.org/(?:licenses/(?P<code>by(?:-(?:nc|nd|sa))*)(?:/(?P<ver>\d\.\d))?"
    r"|publicdomain/(?P<pd>zero|mark))",
    re.I,
)
_CC_TEXT = re.compile(
    r"(?<![A-Za-z])CC[ -]?(?P<code>BY(?:[ -](?:NC|ND|SA))*)(?![A-Za-z])(?:[ -]?(?P<ver>\d\.\d))?"
)
_CC_LONG = re.compile(
    r"Creative\s+Commons\s+Attribution(?P<rest>(?:[\s-]+(?:Non-?Commercial|No-?Deriv\w*"
    r"|Share-?Alike))*)",
    re.I,
)
_CC_PD = re.compile(r"(?<![A-Za-z])CC[ -]?(?:0|Zero)(?![\w.])|Public\s+Domain\s+Mark", re.I)
_KOGL = (
    re.compile(r"공공누리\s*(?:\(KOGL\)\s*)?제?\s*(?P<n>[0-4])\s*유형"),
    re.compile(r"KOGL\s*(?:Type\s*(?P<n>[0-4])(?!\d)|제?\s*(?P<m>[0-4])\s*유형)", re.I),
    re.compile(r"kogl\.or\.kr/info/licenseType(?P<n>[0-4])\.do", re.I),
)
_SEP = r"\s*(?:및|[·ㆍ‧\-,/])?\s*"
_RESERVED = (
    re.compile(
        rf"무단\s*(?:전재|복제)(?:{_SEP}(?:재배포|배포))?(?:{_SEP}AI\s*학습\s*(?:및\s*)?"
        r"(?:활용|이용)?)?\s*금지(?![가-힣])"
    ),
    re.compile(rf"재판매{_SEP}DB\s*(?:사용\s*)?금지(?![가-힣])"),
    re.compile(r"AI\s*학습\s*(?:및\s*)?(?:활용|이용|사용)?\s*금지(?![가-힣])"),
    re.compile(r"All\s+rights\s+reserved", re.I),
)
_SYM = r"(?:ⓒ|©|\([cC]\))"
_YEARS = r"(?:\d{4}(?:\s*[-–~]\s*\d{4})?\.?\s*)"
_WORD = r"(?!무단|All\b|재판매|AI\s*학습)[^\s.,;:<>()\[\]|/]+"  # a holder's name, not a notice
_HOLDER = rf"(?:\(주\)\s*)?{_WORD}(?:[ \t]+{_WORD}){{0,2}}"
_OWNERSHIP = (
    re.compile(rf"(?:저작권자|Copyright)\s*{_SYM}\s*{_YEARS}?(?:{_HOLDER})?", re.I),
    re.compile(rf"Copyright\s+{_YEARS}(?:{_HOLDER})?", re.I),
    re.compile(rf"[ⓒ©]\s*{_YEARS}?{_HOLDER}"),
    re.compile(rf"\([cC]\)\s*{_YEARS}(?:{_HOLDER})?"),
)
#: The provider's own credit/footer lines, dropped from excerpts.
_FOOTER = re.compile(r"RSS\s*피드|기사\s*제공처?\s*[:：]|등록\s*기자\s*[:：]|원문\s*보기")
_NOT_ARTICLE = (_FOOTER, *_RESERVED, *_OWNERSHIP, _CC_URL, _CC_TEXT, _CC_LONG, _CC_PD, *_KOGL)

_FULL = "permits full text"
_ND = "forbids changes, so no excerpt: restricts to title"
_NC = "is non-commercial and our users are commercial: restricts to title"
_KOGL_WHY = (_FULL, _FULL, _NC, _ND, "is non-commercial and forbids changes: restricts to title")


def _cc(code: str, version: str | None) -> tuple[str, Level, str]:
    parts = set(code.lower().replace(" ", "-").split("-")[1:])
    label = "CC " + "-".join(["BY", *sorted(p.upper() for p in parts)])
    label += f" {version}" if version else ""
    if "nd" in parts or "nc" in parts:
        return label, "title", _ND if "nd" in parts else _NC
    return label, "full", _FULL


def _licences(text: str) -> list[tuple[str, Level, str]]:
    """Every licence named in `text` as (label, level, why)."""
    found = [_cc(m["code"], m["ver"]) for m in _CC_URL.finditer(text) if m["code"]]
    found += [_cc(m["code"], m["ver"]) for m in _CC_TEXT.finditer(text)]
    for m in _CC_LONG.finditer(text):
        rest = m["rest"].lower()
        code = (
            "by"
            + "-nc" * ("commercial" in rest)
            + "-nd" * ("deriv" in rest)
            + "-sa" * ("alike" in rest)
        )
        found.append(_cc(code, None))
    if any(m["pd"] for m in _CC_URL.finditer(text)) or _CC_PD.search(text):
        found.append(("CC0 / Public Domain Mark", "full", _FULL))
    for pattern in _KOGL:
        for m in pattern.finditer(text):
            n = int(next(g for g in m.groups() if g))
            level: Level = "full" if n < 2 else "title"
            found.append((f"KOGL 공공누리 제{n}유형", level, _KOGL_WHY[n]))
    return found


def _spans(patterns: Sequence[re.Pattern[str]], text: str) -> list[str]:
    """Matched notice texts, left to right, without overlapping repeats of the same notice."""
    hits = sorted((m.start(), -m.end(), m.group()) for p in patterns for m in p.finditer(text))
    spans, reach = [], -1
    for start, neg_end, matched in hits:
        if start >= reach:
            spans.append(matched.strip())
            reach = -neg_end
    return spans


def _signals(scope: Literal["feed", "entry"], text: str, statement: bool) -> list[Signal]:
    """Signals in one text; a rights *field* (`statement`) always yields at least one."""
    found = [Signal(scope, "licence", lab, lvl, why) for lab, lvl, why in _licences(text)]
    groups: tuple[tuple[Kind, tuple[re.Pattern[str], ...], str], ...] = (
        ("notice", _RESERVED, "reserves rights"),
        ("copyright notice", _OWNERSHIP, "names a holder but grants no licence"),
    )
    for kind, patterns, why in groups:
        found += [
            Signal(scope, kind, span, "summary", f"{why}: restricts to summary")
            for span in _spans(patterns, text)
        ]
    if statement and not found:
        why = "is not a recognised permissive licence: restricts to summary"
        found.append(Signal(scope, "statement", _clip(text, 80), "summary", why))
    return list(dict.fromkeys(found))


def _decisive(signals: Sequence[Signal]) -> Signal | None:
    """Most restrictive signal of one scope; a licence there qualifies bare copyright marks."""
    licensed = any(s.kind == "licence" for s in signals)
    counted = [s for s in signals if not (licensed and s.kind == "copyright notice")]
    return max(counted, key=lambda s: LEVELS.index(s.level), default=None)


def detect(
    texts_feed: Sequence[str | None],
    texts_entry: Sequence[str | None],
    *,
    bodies: Sequence[str] = (),
) -> Detection:
    """Read rights fields (feed, entry) and notices inside entry `bodies` (HTML) into a level.

    Field texts are rights statements: unrecognised ones still restrict to summary. Bodies are
    running prose, so only anchored notices and licence names count there, never keywords.
    """
    feed_sig = [s for t in texts_feed if t and t.strip() for s in _signals("feed", t, True)]
    entry_sig = [s for t in texts_entry if t and t.strip() for s in _signals("entry", t, True)]
    body_spans: list[str] = []
    for body in bodies:
        for line in _lines(body):
            entry_sig += _signals("entry", line, False)
            body_spans += _spans((*_RESERVED, *_OWNERSHIP), line)
    ceiling, restrict = _decisive(feed_sig), _decisive(entry_sig)
    level: Level = ceiling.level if ceiling else "summary"
    if restrict and LEVELS.index(restrict.level) > LEVELS.index(level):
        level, rule = restrict.level, f"auto: {restrict.scope} {restrict.kind} {restrict.quoted}"
        rule += f" {restrict.why}"
    elif ceiling:
        rule = f"auto: feed {ceiling.kind} {ceiling.quoted} {ceiling.why}"
    elif entry_sig:
        rule = "auto: no feed-level rights statement, defaulting to summary"
        rule += " (entry signals only restrict)"
    else:
        rule = "auto: no rights statement, defaulting to summary"
    own = [*(t for t in texts_entry if t and t.strip()), *body_spans]
    parts = list(dict.fromkeys(" ".join(t.split()) for t in own or texts_feed if t and t.strip()))
    notice = _clip(" / ".join(parts), 300) if parts else None
    return Detection(level, rule, (*feed_sig, *dict.fromkeys(entry_sig)), notice)


def decide(feed: FeedConfig, item: StoredItem) -> Decision:
    """The level for one entry: the configured contract, else what its rights signals allow."""
    found = detect(
        [item.feed_rights, item.feed_license],
        [item.rights, item.license],
        bodies=[item.summary_html, item.content_html],
    )
    signals = tuple(str(s) for s in found.signals)
    if feed.redistribution != "auto":
        rule = f"config: redistribution={feed.redistribution}"
        return Decision(feed.redistribution, rule, signals, found.notice)
    return Decision(found.level, found.rule, signals, found.notice)


# --- text ------------------------------------------------------------------------------------

_BLOCK = re.compile(r"(?=<(?:br|p|div|li|h[1-6]|tr|blockquote|/p|/div|/li|/h[1-6]|/tr)\b)", re.I)
_TRAILING_JUNK = re.compile(r"[\s<\[(〈《【/|·\-–—,:=]+$")
_SENTENCE_END = re.compile(r"(?:[.!?。])[\"'”’」』)\]]*(?=\s|$)")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _lines(fragment: str) -> list[str]:
    """HTML -> plain-text lines (block tags become line breaks), entities decoded once."""
    text = unescape(nh3.clean(_BLOCK.sub("\n", fragment), tags=set()))
    text = unicodedata.normalize("NFC", text)
    return [line for line in (" ".join(raw.split()) for raw in text.splitlines()) if line]


def _drop_footer(line: str) -> str:
    """Cut a line at the provider's credit footer or rights notice, which are not article text."""
    starts = [m.start() for p in _NOT_ARTICLE if (m := p.search(line))]
    return _TRAILING_JUNK.sub("", line[: min(starts)]) if starts else line


def _safe_cut(text: str, cut: int) -> int:
    """Move a cut left so it never splits a base character from its combining marks."""
    while 0 < cut < len(text) and (
        unicodedata.combining(text[cut]) or text[cut] in "\u200d\ufe0f" or text[cut - 1] == "\u200d"
    ):
        cut -= 1
    return cut


def excerpt(html: str, limit: int) -> str:
    """Plain-text excerpt of at most `limit` characters (ellipsis included), footer dropped.

    Cut at the last sentence end, else the last space, if either keeps half the budget; else
    (Korean without spaces) at the limit itself, never between a character and its marks.
    """
    lines = (_drop_footer(line) for line in _lines(html))
    text = " ".join(" ".join(lines).split())
    if len(text) <= limit:
        return text
    if limit < 1:
        return ""
    budget = limit - 1  # room for the ellipsis
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, budget + 1) if m.end() <= budget]
    space = text.rfind(" ", 0, budget + 1)
    if ends and ends[-1] >= budget // 2:
        cut = ends[-1]
    elif space >= budget // 2:
        cut = space
    else:
        cut = _safe_cut(text, budget)
    return text[:cut].rstrip(" ,;:·-–—") + "…"


# --- building the published item ---------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    item: StoredItem
    feed: FeedConfig
    decision: Decision
    link: str
    author: str


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


def _story_date(item: StoredItem) -> datetime:
    """When the provider published it; a date later than first seen is not believed."""
    first_seen = _utc(item.first_seen)
    return min(_utc(item.published or first_seen), first_seen)


def _rank(c: _Candidate) -> tuple[int, datetime, int, str, int]:
    # The original publisher usually dated the story first, so it represents ties.
    level = LEVELS.index(c.decision.level)
    return level, _story_date(c.item), -c.feed.priority, c.feed.name, c.item.id


_WORDS = {
    True: ("기사제공처", "기자", "원문", "함께 보도한 곳", "(제목 없음)"),
    False: ("Source", "Author", "Original", "Also reported by", "(untitled)"),
}


def _credit_html(c: _Candidate, also: Sequence[tuple[str, str]], korean: bool) -> str:
    source, author, original, also_word, _ = _WORDS[korean]
    e = escape
    home = _http(c.item.feed_link)
    provider = f'<a href="{e(home)}">{e(c.feed.name)}</a>' if home else e(c.feed.name)
    out = [f'<p class="credit">{source}: {provider} / {author}: {e(c.author)}</p>']
    if c.decision.notice:
        out.append(f'<p class="rights">{e(c.decision.notice)}</p>')
    out.append(f'<p class="original">{original}: <a href="{e(c.link)}">{e(c.link)}</a></p>')
    if also:
        links = ", ".join(f'<a href="{e(link)}">{e(name)}</a>' for name, link in also)
        out.append(f'<p class="also">{also_word}: {links}</p>')
    return "\n".join(out)


def build_item(
    members: Sequence[StoredItem], feeds: Mapping[str, FeedConfig], language: str = "ko"
) -> tuple[PublishedItem | None, str]:
    """One story cluster -> the published item cut to its terms, or None and the reason."""
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
    source, author_word, *_, untitled = _WORDS[korean]
    body = item.content_html if item.content_html.strip() else item.summary_html
    teaser = item.summary_html if item.summary_html.strip() else item.content_html
    summary = excerpt(teaser, best.feed.excerpt_length)
    if level == "full":
        content = f"{body}\n{credit}" if body.strip() else credit
    elif level == "summary":
        content = f"<p>{escape(summary)}</p>\n{credit}" if summary else credit
    else:
        content, summary = credit, ""
    published = _story_date(item)
    updated = max(_utc(item.updated or published), published)
    published_item = PublishedItem(
        guid=item.cluster_guid,
        title=" ".join(item.title.split()) or untitled,
        link=best.link,
        provider=best.feed.name,
        source_url=item.feed_url,
        author=best.author,
        published=published,
        updated=updated,
        level=level,
        content_html=content,
        summary_text=summary,
        credit=f"{source}: {best.feed.name} / {author_word}: {best.author}",
        rule=best.decision.rule,
        provider_link=_http(item.feed_link),
        rights=best.decision.notice,
        also=also,
        categories=item.categories,
    )
    return published_item, f"published {level} from {best.feed.name}"
