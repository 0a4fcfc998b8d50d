"""What of an entry's text readers may see: excerpts, image removal, sizes for `explain`.

Input is the sanitised HTML the parse stage stored (nh3 output: well-formed tags, attribute
values double-quoted), so tags can be found reliably without a second parse.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Sequence

from aggregator.policy.rights import _FOOTER, NOT_ARTICLE, maybe_rights, text_of

_TRAILING_JUNK = re.compile(r"[\s<\[(〈《【/|·\-–—,:=]+$")
_SENTENCE_END = re.compile(r"(?:[.!?。])[\"'”’」』)\]]*(?=\s|$)")
_ATTRS = r"""(?:[^>"']|"[^"]*"|'[^']*')*"""
#: A figure holding an image goes whole (its caption credits a photo no longer shown).
_FIGURE = re.compile(rf"<figure\b{_ATTRS}>(?:(?!</?figure\b).)*?<img\b.*?</figure\s*>", re.I | re.S)
_IMAGE = re.compile(rf"<img\b{_ATTRS}>|</?(?:picture|source|video|audio)\b{_ATTRS}>", re.I)
_IMG = re.compile(r"<img\b", re.I)


def plain(html: str) -> str:
    """All the text of an HTML fragment on one line."""
    return " ".join(text_of(html).lines)


def count_images(html: str) -> int:
    return len(_IMG.findall(html))


def strip_images(html: str) -> str:
    """The fragment without images (and without figures that held one)."""
    return _IMAGE.sub("", _FIGURE.sub("", html))


def _drop_footer(line: str) -> str:
    """Cut a line at the provider's credit footer or rights notice, which are not article text."""
    if not (maybe_rights(line) or _FOOTER.search(line)):
        return line
    starts = [m.start() for p in NOT_ARTICLE if (m := p.search(line))]
    return _TRAILING_JUNK.sub("", line[: min(starts)]) if starts else line


def _safe_cut(text: str, cut: int) -> int:
    """Move a cut left so it never splits a base character from its combining marks."""
    while 0 < cut < len(text) and (
        unicodedata.combining(text[cut]) or text[cut] in "\u200d\ufe0f" or text[cut - 1] == "\u200d"
    ):
        cut -= 1
    return cut


def _excerpt_text(lines: Sequence[str], maybe: Collection[int]) -> str:
    """The lines on one line, footer and notice cut from the lines that may hold one."""
    text = " ".join(lines)  # the lines are whitespace-collapsed already
    footer = _FOOTER.search(text) is not None  # else no line holds one
    if maybe or footer:  # cut only the lines that may hold a footer or notice
        kept = (
            _drop_footer(line) if i in maybe or (footer and _FOOTER.search(line)) else line
            for i, line in enumerate(lines)
        )
        text = " ".join(" ".join(kept).split())
    return text


#: Characters of HTML the first excerpt attempt reads, per character of excerpt, and at least.
_HEAD_PER_CHAR, _HEAD_MIN = 3, 600
_TABLE = re.compile(r"<table\b", re.I)


def _head_text(html: str, limit: int) -> str | None:
    """The excerpt text of the opening of `html`, when that opening decides the excerpt.

    An article is kilobytes and an excerpt a few hundred characters, and turning HTML into
    text was most of a published item's cost. The HTML is cut before a tag and the last line
    of its text (perhaps cut short) is dropped: every earlier line comes out as in the whole
    body, since tags, entities and the rights and footer patterns never span a line. When
    what is left is longer than the excerpt, the excerpt cannot see past it; else (a short
    body, one long paragraph) the caller reads it all. Each try reads twice as much. An
    opening with a table is not cut: in HTML not yet sanitised, text a table holds outside
    its cells belongs before the table, where a cut opening would never show it.
    """
    size = max(_HEAD_MIN, _HEAD_PER_CHAR * limit)
    while (cut := html.find("<", size)) > 0 and not _TABLE.search(html, 0, cut):
        found = text_of(html[:cut])
        lines = found.lines[:-1]
        text = _excerpt_text(lines, [i for i in found.maybe if i < len(lines)])
        if len(text) > limit:
            return text
        size = 2 * cut
    return None


def excerpt(html: str, limit: int) -> str:
    """Plain-text excerpt of at most `limit` characters (ellipsis included), footer dropped.

    Cut at the last sentence end, else the last space, if either keeps half the budget; else
    (Korean without spaces) at the limit itself, never between a character and its marks.
    """
    text = _head_text(html, limit) if limit >= 1 else None
    if text is None:
        found = text_of(html)
        text = _excerpt_text(found.lines, set(found.maybe))
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
