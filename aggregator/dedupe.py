"""Identity keys that say "this is the same story" across providers.

A false merge hides news from readers, which is worse than showing a story twice, so
only strong evidence merges: the same normalised link, the same globally unique guid, or
the same main text. Each key is a pure function of one entry; the store looks them up.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from html import unescape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import nh3
import xxhash

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


# -- near-duplicates ------------------------------------------------------------------------
#
# Edited reprints share most of their main text but not their bytes. The main text is the
# entry's segments (blocks and sentences) minus boilerplate: segments matching known
# patterns (bylines, datelines, e-mail lines, rights notices) and segments that recur in
# other entries of the same feed (footers, related-news boxes). What remains is shingled
# into character n-grams; MinHash bands (datasketch) find candidates, and a candidate only
# counts when its shingles overlap enough AND the numbers of the two texts agree.

#: Character n-gram length (whitespace removed); 5 separated best on the evaluation set.
NGRAM = 5
#: MinHash permutations; the first BANDS x ROWS are split into bands of ROWS rows. Two texts
#: share a band with probability 1-(1-J^ROWS)^BANDS: 0.85 at Jaccard 0.3, 0.997 at 0.5,
#: 0.99999 at 0.7. Every band is a row in the database's index, written and looked up for
#: each new entry, so fewer bands store faster (there were 32; tests/test_dedupe.py checks
#: the settings at the threshold). 64 permutations are kept so stored band keys stay valid.
NUM_PERM = 64
BANDS, ROWS = 20, 2
#: A second set of LEAD_BANDS bands covers only the opening of the main text (characters,
#: whitespace removed), so a summary-only or truncated copy is found by the article it came
#: from. A copy of 60 characters shares 0.4 of a 150-character opening: 0.985 with 24 bands.
LEAD_CHARS = 150
LEAD_BANDS = 24
#: Seed of the lead's first band key (the text's bands use 0..BANDS-1); 32 as when the text
#: had 32 bands, so lead keys stored before still match.
LEAD_SEED = 32
#: Main text shorter than this (characters, whitespace removed) is never near-matched.
MIN_NEAR_CHARS = 60
#: Jaccard similarity of the shingle sets at or above which two texts are one story.
JACCARD_MIN = 0.5
#: Share of the smaller text's shingles found in the larger (truncated reprints).
CONTAINMENT_MIN = 0.8
#: Share of the numbers of the text with fewer numbers that the other must contain.
NUMBERS_MIN = 0.8
#: A segment found in this many other entries of the same feed is boilerplate.
BOILERPLATE_MIN_OTHERS = 2
#: The near-duplicate index keeps entries first seen in this window, at most this many.
WINDOW = timedelta(days=7)
WINDOW_ENTRIES = 50_000
#: Candidates verified per new entry, most shared bands first (keeps the cost flat).
MAX_CANDIDATES = 20
#: Entries read per band when looking for candidates, newest first (keeps the cost flat).
BAND_READ = 20

_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:br|p|div|li|ul|ol|h[1-6]|tr|td|blockquote|section|article|figure|"
    r"figcaption|hr|table)\b[^>]*>",
    re.I,
)
#: A list item that is only a link: a related-news or "read more" box, not article text.
_LINK_ITEM = re.compile(r"<li\b[^>]*>\s*<a\b[^>]*>.*?</a>\s*</li>", re.I | re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")
#: Anywhere in a segment (the lookahead names each branch's first character, so the engine
#: skips ahead instead of trying every branch at every position: ~10x faster).
_KNOWN_BOILERPLATE = re.compile(
    r"(?=[무재저기등a발편청대관많주인cⓒ©n])"
    r"(?:무단\s*전재|재배포|재판매|저작권자|기사\s*제공처|등록\s*기자|ai\s*학습|"
    r"등록번호|발행인|편집인|청소년\s*보호\s*책임자|대표\s*전화|관련\s*기사|많이\s*본\s*뉴스|"
    r"주요\s*뉴스|인기\s*기사|"
    r"all\s+rights\s+reserved|copyright|[ⓒ©]|newsletter)"
)
#: At a segment's start only: timestamps, bylines, "(c)", "related".
_KNOWN_OPENING = re.compile(
    r"\(c\)|(?:입력|수정|승인|등록|기사입력|업데이트)\s*:?\s*\d|"
    r"\S{2,4}\s*(?:기자|특파원|객원기자)$|"
    r"(?:by|reporting by|editing by|written by)\s|(?:related|read more|more from)\b",
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
#: Datelines that open the first sentence: "(서울=통신) 김유미 기자 = ", "LIMA (Wire) — ".
_DATELINE = re.compile(
    r"^(?:\([^()=]{1,20}=[^()]{1,20}\)\s*(?:\S{2,4}\s*(?:기자|특파원)\s*=\s*)?|"
    r"[a-z][a-z .,'-]{1,40}\([^()]{1,40}\)\s*[—–-]+\s*)"
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
#: Short boilerplate is stripped by pattern; longer segments are article text.
_MAX_BOILERPLATE_CHARS = 220


def segments(html: str) -> list[str]:
    """Blocks and sentences of an entry's text, case and whitespace folded."""
    text = _BLOCK_TAG.sub("\n", _LINK_ITEM.sub("\n", html))
    text = unicodedata.normalize("NFKC", unescape(nh3.clean(text, tags=set()))).lower()
    found = []
    for block in text.splitlines():
        for sentence in _SENTENCE_END.split(block):
            sentence = _SPACE.sub(" ", sentence).strip()
            if sentence:
                found.append(sentence)
    return found


def segment_hash(segment: str) -> int:
    """Signed 64-bit hash of a segment (fits a BIGINT on every database)."""
    return int.from_bytes(xxhash.xxh64_digest(segment.replace(" ", "").encode()), signed=True)


def is_boilerplate(segment: str) -> bool:
    """Known non-article lines: rights notices, bylines, e-mail lines, timestamps."""
    return len(segment) <= _MAX_BOILERPLATE_CHARS and bool(
        _KNOWN_OPENING.match(segment)
        or _KNOWN_BOILERPLATE.search(segment)
        or ("@" in segment and _EMAIL.search(segment))
    )


@dataclass(frozen=True)
class Fingerprint:
    """What near-duplicate matching keeps of an entry: its main text, numbers and bands."""

    text: str
    numbers: frozenset[str]
    bands: tuple[int, ...]


@dataclass(frozen=True)
class Match:
    """Why an entry is in its story: the rule, its score (0-1) and the entry it matched."""

    rule: str
    score: float
    other: int | None = None

    def describe(self, other: str | None = None) -> str:
        """One line for `aggregator explain`; `other` names the entry it matched."""
        said = f"{self.rule}, score {self.score:.2f}: {RULES.get(self.rule, self.rule)}"
        return f"{said}, matching {other}" if other else said


#: Rules in the order they are tried; the store records the one that placed each entry.
RULES = {
    "same-link": "same normalised link",
    "same-guid": "same globally unique guid",
    "same-text": "same main text",
    "near-jaccard": "nearly the same main text (Jaccard similarity of 5-grams)",
    "near-containment": "main text contained in the other's (5-gram containment)",
    "first": "first entry of the story",
}


def article_text(segs: Sequence[str], common: Container[int] = frozenset()) -> str:
    """The segments that are neither known boilerplate nor recurring in the feed."""
    kept = []
    for i, seg in enumerate(segs):
        if i == 0:
            seg = _DATELINE.sub("", seg)
        if seg and not is_boilerplate(seg) and segment_hash(seg) not in common:
            kept.append(seg)
    return " ".join(kept)


def numbers(text: str) -> frozenset[str]:
    return frozenset(n.replace(",", "") for n in _NUMBER.findall(text))


#: xxHash32's primes (its specification), for hashing every gram of a text at once.
_XXH_PRIMES = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)


def gram_hashes(chars: str) -> Any:
    """xxHash32 (seed 0) of the UTF-8 bytes of each NGRAM-character gram of `chars`, in
    order (numpy uint32); a text shorter than NGRAM is its one gram.

    The same values as `xxhash.xxh32_intdigest(gram.encode())` (tests/test_dedupe.py checks
    that), so stored band keys stay valid, computed for all grams in a few array operations
    instead of a Python call per gram (that loop was a third of preparing an entry). Grams
    of 16 UTF-8 bytes or more (only with 4-byte characters) take xxHash32's other path and
    are hashed one by one.
    """
    import numpy as np

    p1, p2, p3, p4, p5 = (np.uint32(p) for p in _XXH_PRIMES)
    points = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
    widths = 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)
    offsets = np.zeros(len(points) + 1, dtype=np.int64)
    np.cumsum(widths, out=offsets[1:])
    count = max(1, len(points) - NGRAM + 1)
    start = offsets[:count]
    size = offsets[np.minimum(np.arange(count) + NGRAM, len(points))] - start
    data = chars.encode()
    raw = np.frombuffer(data + bytes(20), dtype=np.uint8).astype(np.uint32)
    words = raw[:-3] | raw[1:-2] << 8 | raw[2:-1] << 16 | raw[3:] << 24  # LE, at every byte

    def rotl(x: Any, r: int) -> Any:
        return (x << np.uint32(r)) | (x >> np.uint32(32 - r))

    h = size.astype(np.uint32) + p5
    for k in range(3):  # whole 4-byte words
        h = np.where(size >= 4 * (k + 1), rotl(h + words[start + 4 * k] * p3, 17) * p4, h)
    tail = start + (size & ~3)
    for k in range(3):  # the last 1-3 bytes
        h = np.where(size % 4 > k, rotl(h + raw[tail + k] * p5, 11) * p1, h)
    h ^= h >> np.uint32(15)
    h *= p2
    h ^= h >> np.uint32(13)
    h *= p3
    h ^= h >> np.uint32(16)
    for i in np.flatnonzero(size >= 16).tolist():
        h[i] = xxhash.xxh32_intdigest(data[start[i] : start[i] + size[i]])
    return h


def shingles(text: str) -> frozenset[int]:
    return frozenset(gram_hashes(text.replace(" ", "")).tolist())


@cache
def _permutations() -> tuple[Any, Any]:
    """datasketch's affine32 permutations for seed 1 (its MinHash(num_perm=64, seed=1)).

    numpy (~27 MB) is loaded on first use: publishing never needs it.
    """
    import numpy as np

    gen = np.random.RandomState(1)
    a = gen.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


def minhash(hashes: Any) -> Any:
    """The 64 MinHash values of 32-bit hashes (a numpy array; repeats change nothing), exactly
    as datasketch's MinHash (scheme "affine32", seed 1) computes them from the same hashes;
    tests/test_dedupe.py checks the two agree.

    Done here in one numpy expression because datasketch hashes its input in a Python loop
    (half its cost per entry) and importing it loads scipy (~55 MB in every process).
    """
    import numpy as np

    a, b = _permutations()
    hv = hashes.astype(np.uint32)  # a copy: mixed in place below
    hv ^= hv >> np.uint32(16)  # MurmurHash3's finalizer, datasketch's pre-mix for affine32
    hv *= np.uint32(0x85EBCA6B)
    hv ^= hv >> np.uint32(13)
    hv *= np.uint32(0xC2B2AE35)
    hv ^= hv >> np.uint32(16)
    return (hv[:, None] * a + b).min(axis=0)  # uint32 arithmetic wraps: mod 2^32


def bands(hashes: Any, seed: int = 0, count: int = BANDS) -> tuple[int, ...]:
    """LSH band keys of a text's gram hashes; `seed` keeps the text's and the lead's apart."""
    values = minhash(hashes)
    return tuple(
        int.from_bytes(
            xxhash.xxh64_digest(values[b * ROWS : (b + 1) * ROWS].tobytes(), seed=seed + b),
            signed=True,
        )
        for b in range(count)
    )


def fingerprint(segs: Sequence[str], common: Container[int] = frozenset()) -> Fingerprint | None:
    """The entry's near-duplicate fingerprint, or None when its main text is too short.

    The lead's grams are the text's first ones: hashed once for both. A minimum does not
    mind a gram that repeats, so the hashes need not be made a set.
    """
    text = article_text(segs, common)
    chars = text.replace(" ", "")
    if len(chars) < MIN_NEAR_CHARS:
        return None
    grams = gram_hashes(chars)
    lead = grams[: max(1, min(len(chars), LEAD_CHARS) - NGRAM + 1)]
    keys = bands(grams) + bands(lead, seed=LEAD_SEED, count=LEAD_BANDS)
    return Fingerprint(text=text, numbers=numbers(text), bands=keys)


def numbers_agree(a: frozenset[str], b: frozenset[str]) -> bool:
    """Template stories (results, forecasts, prices) differ mostly in their numbers."""
    fewer = min(len(a), len(b))
    return fewer == 0 or len(a & b) / fewer >= NUMBERS_MIN


def compare(a: Fingerprint, b_text: str, b_numbers: frozenset[str]) -> Match | None:
    """Is the stored text `b` the same story as `a`? Precise check of an LSH candidate."""
    if not numbers_agree(a.numbers, b_numbers):
        return None
    return _compare_shingles(shingles(a.text), shingles(b_text))


def _compare_shingles(sa: frozenset[int], sb: frozenset[int]) -> Match | None:
    common = len(sa & sb)
    jaccard = common / len(sa | sb)
    if jaccard >= JACCARD_MIN:
        return Match("near-jaccard", round(jaccard, 3))
    containment = common / min(len(sa), len(sb))
    if containment >= CONTAINMENT_MIN:
        return Match("near-containment", round(containment, 3))
    return None


def best_match(
    fp: Fingerprint, feed: str, candidates: Iterable[tuple[int, str, str, frozenset[str]]]
) -> Match | None:
    """The best verified match among (entry id, feed, text, numbers) candidates.

    Only other feeds' entries count: a feed's own entries share its whole template and
    boilerplate, and a provider's stories are told apart by their guids. Earliest wins ties.
    """
    best: Match | None = None
    own: frozenset[int] | None = None  # the entry's shingles, made once for all candidates
    for entry_id, other_feed, text, nums in sorted(candidates, key=lambda c: c[0]):
        if other_feed == feed or not numbers_agree(fp.numbers, nums):
            continue
        own = shingles(fp.text) if own is None else own
        found = _compare_shingles(own, shingles(text))
        if found and (best is None or found.score > best.score):
            best = Match(found.rule, found.score, entry_id)
    return best


def recurring_segments(
    batch: Mapping[str, AbstractSet[int]], stored: Mapping[int, int]
) -> dict[str, frozenset[int]]:
    """For each new entry (key -> its segment hashes), the segments that are boilerplate.

    A segment is boilerplate when at least BOILERPLATE_MIN_OTHERS other entries of the same
    feed contain it: stored ones (`stored` counts) or others in the same batch.
    """
    in_batch = Counter(h for hashes in batch.values() for h in hashes)
    return {
        key: frozenset(
            h for h in hashes if stored.get(h, 0) + in_batch[h] - 1 >= BOILERPLATE_MIN_OTHERS
        )
        for key, hashes in batch.items()
    }


@dataclass(frozen=True)
class Prepared:
    """Everything storing an entry needs that depends on the entry alone.

    Computed before the store's transaction (in a worker process during a big cycle), so
    the database lock that serialises story assignment covers only reads and writes.
    `fingerprint` assumes the feed's boilerplate is what recurs within this batch (true on
    a feed's first poll); the store recomputes it when stored entries say otherwise.
    """

    key_hash: str
    content_hash: str
    text_hash: str | None
    segments: tuple[str, ...]
    segment_hashes: frozenset[int]
    assumed_common: frozenset[int]
    fingerprint: Fingerprint | None


def prepare(batch: Sequence[ParsedEntry]) -> dict[str, Prepared]:
    """Entry key -> its Prepared values (the last entry wins when the batch repeats a key)."""
    by_key = {e.key: e for e in batch}
    segs = {key: segments(e.content_html or e.summary_html) for key, e in by_key.items()}
    hashes = {key: frozenset(segment_hash(s) for s in ss) for key, ss in segs.items()}
    common = recurring_segments(hashes, {})
    return {
        key: Prepared(
            key_hash=key_hash(key),
            content_hash=content_hash(e),
            text_hash=text_hash(e),
            segments=tuple(segs[key]),
            segment_hashes=hashes[key],
            assumed_common=common[key],
            fingerprint=fingerprint(segs[key], common[key]),
        )
        for key, e in by_key.items()
    }
