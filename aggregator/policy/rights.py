"""Rights detection: every licence and notice a feed or entry states, and the level it allows.

Rights *fields* (RSS `copyright`, `dc:rights`, `dcterms:rights`, `media:copyright`, Atom
`rights`; licence fields `creativeCommons:license`, `cc:license`, `media:license`,
`dcterms:license`, Atom `link rel="license"`) are statements: one that is not recognised still
restricts to summary. Entry *bodies* are running prose: only licence names and notices that
stand as notices count there (not "무단 전재 및 재배포 금지를 요구했다", not a quoted phrase).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from html import unescape
from typing import Literal

import nh3

from aggregator.models import LEVELS, Level

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


_CC_URL = re.compile(
    r"creativecommons\.org/(?:licenses/(?P<code>by(?:-(?:nc|nd|sa))*)(?:/(?P<ver>\d\.\d))?"
    r"|publicdomain/(?P<pd>zero|mark))",
    re.I,
)
_CC_TEXT = re.compile(
    r"(?<![A-Za-z])CC[ -]?(?P<code>BY(?:[ -](?:NC|ND|SA))*)(?![A-Za-z])(?:[ -]?(?P<ver>\d\.\d))?",
    re.I,
)
_CC_LONG = re.compile(
    r"Creative\s+Commons\s+Attribution(?P<rest>(?:[\s-]+(?:Non-?Commercial|No-?Deriv\w*"
    r"|Share-?Alike))*)",
    re.I,
)
_CC_PD = re.compile(r"(?<![A-Za-z])CC[ -]?(?:0|Zero)(?![\w.])|Public\s+Domain\s+Mark", re.I)
#: A rights field that says nothing but "public domain" (not prose that mentions it).
_PD_STATEMENT = re.compile(
    r"\W*(?:this\s+(?:work|content|article|post)\s+is\s+)?(?:in\s+the\s+)?public\s+domain\W*",
    re.I,
)
_KOGL = (
    re.compile(r"공공누리[\"”']?\s*(?:\(KOGL\)\s*)?제?\s*(?P<n>[0-4])\s*유형"),
    re.compile(r"KOGL\s*(?:Type\s*(?P<n>[0-4])(?!\d)|제?\s*(?P<m>[0-4])\s*유형)", re.I),
    re.compile(r"kogl\.or\.kr/info/licenseType(?P<n>[0-4])\.do", re.I),
    re.compile(
        r"Korea\s+Open\s+Government\s+Licen[cs]e\s*(?:\(KOGL\)\s*)?Type\s*(?P<n>[0-4])", re.I
    ),
)
#: The KOGL mark by its conditions: 출처표시 (1), +상업용금지 (2), +변경금지 (3), both (4).
_KOGL_TERMS = re.compile(
    r"공공누리[^\n]{0,40}?출처\s*표시(?P<terms>(?:\s*[+\-·ㆍ,/]?\s*"
    r"(?:상업(?:용|적\s*이용)\s*금지|변경\s*금지))*)"
)
_SEP = r"\s*(?:및|[·ㆍ‧\-,/])?\s*"
_RESERVED = (
    re.compile(
        rf"무단\s*(?:전재|복제)(?:{_SEP}(?:재배포|배포))?(?:{_SEP}AI\s*학습\s*(?:및\s*)?"
        r"(?:활용|이용)?)?\s*금지(?![가-힣])"
    ),
    re.compile(rf"재판매{_SEP}DB\s*(?:사용\s*)?금지(?![가-힣])"),
    re.compile(r"AI\s*학습\s*(?:및\s*)?(?:활용|이용|사용)?\s*금지(?![가-힣])"),
    re.compile(r"All\s+rights\s+reserved(?![가-힣])", re.I),
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
#: (The lookahead names each branch's first character: the regex engine then skips ahead fast.)
_FOOTER = re.compile(
    r"(?=[R기등원])(?:RSS\s*피드|기사\s*제공처?\s*[:：]|등록\s*기자\s*[:：]|원문\s*보기)"
)
#: Where article text ends: credit footers, notices and licence marks.
NOT_ARTICLE = (
    _FOOTER,
    *_RESERVED,
    *_OWNERSHIP,
    _CC_URL,
    _CC_TEXT,
    _CC_LONG,
    _CC_PD,
    *_KOGL,
    _KOGL_TERMS,
)
#: Text no rights pattern above can match lacks all of these (the patterns' required literals,
#: matched case-insensitively like them): a cheap test that skips the ~20 patterns per line.
#: The lookahead (each branch's first character) lets the engine skip ahead ~10x faster.
_MAYBE = re.compile(
    r"(?=[cdkr공금저ⓒ©(])(?:(?<![A-Za-z])CC|creative|domain|공공누리|KOGL|korea|금지|rights"
    r"|저작권자|copyright|[ⓒ©]|\(c\))",
    re.I,
)


@lru_cache(maxsize=1024)  # the same line is asked about by `detect` and by excerpts
def maybe_rights(line: str) -> bool:
    """False when no rights pattern can match `line` (most article lines)."""
    return _MAYBE.search(line) is not None


#: A notice in prose is a mention when it is quoted: "'무단 전재 금지' 문구가 쟁점이 됐다".
_QUOTES = "'\"‘“「『"

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


def _kogl(n: int) -> tuple[str, Level, str]:
    return f"KOGL 공공누리 제{n}유형", "full" if n < 2 else "title", _KOGL_WHY[n]


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
        found += [_kogl(int(next(g for g in m.groups() if g))) for m in pattern.finditer(text)]
    for m in _KOGL_TERMS.finditer(text):
        terms = m["terms"]
        found.append(_kogl(1 + ("상업" in terms) + 2 * ("변경" in terms)))
    return found


def _spans(patterns: Sequence[re.Pattern[str]], text: str, prose: bool = False) -> list[str]:
    """Matched notice texts, left to right, without overlapping repeats of the same notice.

    In `prose`, a notice directly after a quotation mark is a quotation, not a notice.
    """
    hits = sorted((m.start(), -m.end(), m.group()) for p in patterns for m in p.finditer(text))
    spans, reach = [], -1
    for start, neg_end, matched in hits:
        if prose and start and text[start - 1] in _QUOTES:
            continue
        if start >= reach:
            spans.append(matched.strip())
            reach = -neg_end
    return spans


@lru_cache(maxsize=4096)
def _signals(scope: Literal["feed", "entry"], text: str, statement: bool) -> tuple[Signal, ...]:
    """Signals in one text; a rights *field* (`statement`) always yields at least one.

    Cached: feed-level fields and providers' footer lines recur in every entry.
    """
    if not statement and not maybe_rights(text):
        return ()
    found = [Signal(scope, "licence", lab, lvl, why) for lab, lvl, why in _licences(text)]
    if statement and _PD_STATEMENT.fullmatch(text):
        found.append(Signal(scope, "licence", "public domain", "full", _FULL))
    groups: tuple[tuple[Kind, tuple[re.Pattern[str], ...], str], ...] = (
        ("notice", _RESERVED, "reserves rights"),
        ("copyright notice", _OWNERSHIP, "names a holder but grants no licence"),
    )
    for kind, patterns, why in groups:
        found += [
            Signal(scope, kind, span, "summary", f"{why}: restricts to summary")
            for span in _spans(patterns, text, prose=not statement)
        ]
    if statement and not found:
        why = "is not a recognised permissive licence: restricts to summary"
        found.append(Signal(scope, "statement", clip(text, 80), "summary", why))
    return tuple(dict.fromkeys(found))


@lru_cache(maxsize=4096)  # providers' footer lines recur in every entry, like `_signals`
def _notices(line: str) -> tuple[str, ...]:
    """The notices a body line states (quoted mentions excepted), for the item's notice."""
    return tuple(_spans((*_RESERVED, *_OWNERSHIP), line, prose=True))


def _decisive(signals: Sequence[Signal]) -> Signal | None:
    """Most restrictive signal of one scope; a licence there qualifies bare copyright marks."""
    licensed = any(s.kind == "licence" for s in signals)
    counted = [s for s in signals if not (licensed and s.kind == "copyright notice")]
    return max(counted, key=lambda s: LEVELS.index(s.level), default=None)


#: Block tags, which become line breaks. (Matching the "<" itself, not only a lookahead, lets
#: the regex engine jump from one "<" to the next: ~3x faster on a body.)
_BLOCK = re.compile(r"<(?=(?:br|p|div|li|h[1-6]|tr|blockquote|/p|/div|/li|/h[1-6]|/tr)\b)", re.I)
#: nh3 with no tag allowed: the text. A `Cleaner` is set up once, not per call (~4 us of
#: ~25 us per body).
_strip_tags: Callable[[str], str] = nh3.Cleaner(tags=set()).clean


@dataclass(frozen=True)
class Text:
    """One HTML fragment as plain-text lines, and which lines may hold a rights notice."""

    lines: tuple[str, ...]
    #: Indexes of the lines `maybe_rights` accepts (found in one pass over the whole text).
    maybe: tuple[int, ...]


@lru_cache(maxsize=64)  # one item's policy reads its bodies several times (level, excerpt, sizes)
def text_of(fragment: str) -> Text:
    """HTML -> plain-text lines (block tags become line breaks, entities decoded once), each
    whitespace-collapsed, blank lines dropped; and the lines `maybe_rights` accepts.

    `maybe_rights` is one search over the text, not one per line: no rights pattern spans a
    line, so a line may hold one exactly when a match in the whole text starts on it.
    """
    text = unescape(_strip_tags(_BLOCK.sub("\n<", fragment)))
    text = unicodedata.normalize("NFC", text)
    # " ".join(raw.split()) per line, blank ones dropped; map() keeps the loop out of bytecode
    found = tuple(filter(None, map(" ".join, map(str.split, text.splitlines()))))
    text = "\n".join(found)
    if not found:
        return Text((), ())
    maybe: list[int] = []
    line, line_end = 0, len(found[0])
    for m in _MAYBE.finditer(text):
        while m.start() > line_end:  # the match is on a later line
            line += 1
            line_end += 1 + len(found[line])
        if not maybe or maybe[-1] != line:
            maybe.append(line)
    return Text(found, tuple(maybe))


#: Names the rules `notice_lines` selects lines by (bump the leading number when `text_of`
#: changes): lines stored under other rules, an older version's, are not trusted, and the
#: bodies are read again.
NOTICE_RULES = hashlib.sha256(f"1|{_BLOCK.pattern}|{_MAYBE.pattern}".encode()).hexdigest()[:12]


def notice_lines(bodies: Sequence[str]) -> tuple[str, ...]:
    """The lines of these HTML bodies where a rights notice may stand (`text_of`'s `maybe`),
    in order: all `detect` reads of a body. Made once per entry when it is parsed and stored
    with it (under NOTICE_RULES), so publishing need not turn every body into text again."""
    return tuple(
        text.lines[i] for text in (text_of(body) for body in bodies if body) for i in text.maybe
    )


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters, `…` when cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def detect(
    texts_feed: Sequence[str | None],
    texts_entry: Sequence[str | None],
    *,
    bodies: Sequence[str] = (),
    lines: Sequence[str] | None = None,
) -> Detection:
    """Read rights fields (feed, entry) and notices inside entry `bodies` (HTML) into a level.

    `lines`, when given, are `notice_lines(bodies)` made earlier (the bodies are not read).
    The feed level (or the summary default when the feed says nothing) is the ceiling; entry
    signals only restrict. Within a scope the most restrictive signal wins.
    """
    feed_sig = [s for t in texts_feed if t and t.strip() for s in _signals("feed", t, True)]
    entry_sig = [s for t in texts_entry if t and t.strip() for s in _signals("entry", t, True)]
    body_spans: list[str] = []
    for line in notice_lines(bodies) if lines is None else lines:
        entry_sig += _signals("entry", line, False)
        body_spans += _notices(line)
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
    notice = clip(" / ".join(parts), 300) if parts else None
    return Detection(level, rule, (*feed_sig, *dict.fromkeys(entry_sig)), notice)
