"""Items built at the last publish, found again by everything that decided them.

A daemon publishes after every cycle and builds the newest `output.limit` stories again each
time (and the archive's catch-up), though few of them changed: building an item - rights
detection over its bodies, the excerpt, the credit - is most of a publish's time. The key is
a digest of every field of every member entry, of each member's provider terms and of the
output language, so a changed entry or changed terms build the item afresh; only the items
the last publish used are kept, so the memo never outgrows one publish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import fields

from aggregator.config import FeedConfig
from aggregator.models import PublishedItem, StoredItem
from aggregator.policy.item import build_item

Built = tuple[PublishedItem | None, str]
_FIELDS = tuple(f.name for f in fields(StoredItem))


class Memo:
    def __init__(self) -> None:
        self._last: dict[bytes, Built] = {}
        self._now: dict[bytes, Built] = {}
        self._keep = 0

    def start(self, keep: int) -> None:
        """A new publish: what the one before used stays findable, the rest is let go.

        Only the first `keep` items a publish builds are kept for the next: those are the
        newest stories, which every publish reads again. A first publish's archive catch-up
        (every stored story, once) would otherwise stay in memory for two more cycles.
        """
        self._last, self._now, self._keep = self._now, {}, keep

    def build(
        self,
        members: Sequence[StoredItem],
        feeds: Mapping[str, FeedConfig],
        language: str,
        terms: Mapping[str, str],
    ) -> Built:
        """`build_item`, or what it returned for the very same entries under the same terms
        (`terms`: provider name -> `archive.terms_fingerprint`, covering what build_item
        reads of a FeedConfig)."""
        keeping = len(self._now) < self._keep
        if not keeping and not self._last:  # nothing to find, nothing to keep: no key needed
            return build_item(members, feeds, language)
        key = _key(members, language, terms)
        built = self._now.get(key) or self._last.get(key)
        if built is None:
            built = build_item(members, feeds, language)
        if keeping:
            self._now[key] = built
        return built


def _key(members: Sequence[StoredItem], language: str, terms: Mapping[str, str]) -> bytes:
    digest = hashlib.blake2b(language.encode(), digest_size=24)
    for member in members:
        values = (terms.get(member.feed_name), *(getattr(member, f) for f in _FIELDS))
        # Strings length-prefixed, anything else as its repr: no two members read the same.
        text = "\0".join(f"{len(v)}:{v}" if isinstance(v, str) else repr(v) for v in values)
        digest.update(text.encode("utf-8", "surrogatepass") + b"\1")
    return digest.digest()


#: The publishing process's memo (a daemon publishes from one thread).
PUBLISHED = Memo()
