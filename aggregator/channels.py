"""Channels: further output feeds, each a selection of the published items.

A channel (`channels:` in the config) keeps an item when every rule it sets holds:

- `providers`: the story was carried by one of these providers (its representative, or one
  listed under "also reported by");
- `categories`: one of the item's categories equals one of these;
- `include`: one of these keywords occurs in the item's title or text;
- `exclude`: none of these keywords occurs there.

An empty rule holds for every item. Text is compared after Unicode NFKC normalisation and
case folding, so full-width `ＡＩ` matches `ai` and compatibility jamo compose; keywords are
plain substrings with no word boundaries, which is what Korean needs (`반도체` matches
`반도체주`, `AI` matches `AI반도체`). The text searched is the title and what readers get
of the body (the excerpt, or the full text for `full` items), never the credit lines: an
`exclude: [연합뉴스]` drops stories about 연합뉴스, not everything credited to it.

`select` is a pure function of the items and the rules, tested with tables of cases. The
channel's schema (`ChannelConfig`) lives here too, beside its meaning; `aggregator.config`
validates it as part of the config file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from html import unescape
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aggregator.models import PublishedItem

#: Where policy's credit block starts in a `full` item body (the sanitiser strips every class
#: attribute from provider markup, so this can only be ours).
_CREDIT_START = '<p class="credit">'
#: Bodies are sanitiser output (well-formed tags, quoted attributes): a tag ends at its `>`.
_TAG = re.compile(r"<[^>]*>")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Folder names of the output directory that a channel's path must not take.
RESERVED_PATHS = ("archive",)


class ChannelConfig(BaseModel):
    """`channels[]`: a further output feed, the published items chosen by the rules below."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str | None = None
    description: str | None = None
    path: str | None = None  # under output.dir; default: the name
    limit: Annotated[int, Field(ge=1, le=10000)] | None = None  # default: output.limit
    providers: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError(
                f"must be letters, digits, '-' or '_' (it names the channel's folder), got {v!r}"
            )
        return v

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parts = v.strip("/").split("/")
        if v.startswith("/") or not all(_SLUG.match(p) for p in parts):
            raise ValueError(
                "must be a relative folder under output.dir made of letters, digits, '-' and"
                f" '_' (e.g. it or news/local), got {v!r}"
            )
        if parts[0] in RESERVED_PATHS:
            raise ValueError(f"{parts[0]!r} is reserved for the archive pages")
        return "/".join(parts)

    @field_validator("categories", "include", "exclude")
    @classmethod
    def _check_words(cls, v: list[str]) -> list[str]:
        if any(not w.strip() for w in v):
            raise ValueError("must not contain a blank entry (it would match everything)")
        return v

    @property
    def folder(self) -> str:
        """Where the channel is written, relative to output.dir (`/`-separated)."""
        return self.path or self.name


def fold(text: str) -> str:
    """The form keywords and text are compared in: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class Rules:
    """A channel's selection, folded once (see the module docstring)."""

    providers: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def keeps(self, item: PublishedItem) -> bool:
        return matches(item, self)

    @classmethod
    def of(cls, channel: ChannelConfig) -> Rules:
        return cls(
            providers=frozenset(channel.providers),
            categories=frozenset(fold(c) for c in channel.categories),
            include=tuple(fold(w) for w in channel.include),
            exclude=tuple(fold(w) for w in channel.exclude),
        )


def searchable_text(item: PublishedItem) -> str:
    """Title and body text as readers get them, without the credit block, folded."""
    if item.level == "full":
        body, found, _ = item.content_html.rpartition(_CREDIT_START)
        body_text = unescape(_TAG.sub(" ", body if found else item.content_html))
    else:
        body_text = item.summary_text
    return fold(f"{item.title}\n{body_text}")


def matches(item: PublishedItem, rules: Rules) -> bool:
    if rules.providers and not (
        item.provider in rules.providers or any(name in rules.providers for name, _ in item.also)
    ):
        return False
    if rules.categories and not any(fold(c) in rules.categories for c in item.categories):
        return False
    if rules.include or rules.exclude:
        text = searchable_text(item)
        if rules.include and not any(word in text for word in rules.include):
            return False
        if any(word in text for word in rules.exclude):
            return False
    return True


def select(items: Iterable[PublishedItem], rules: Rules) -> list[PublishedItem]:
    """The items the channel keeps, in the given order."""
    return [item for item in items if matches(item, rules)]
