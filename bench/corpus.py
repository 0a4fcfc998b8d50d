"""Deterministic provider feeds: exactly the bytes the farm serves, from a seed.

Every feed is a provider with its own host name, language (Korean or English), encoding
(UTF-8 or EUC-KR), format (RSS 2.0 or Atom), rights statement and date style. Each entry is
an HTML article of 1-4 KB with the things real portals put in them: photos and relative
links, bylines, rights notices, and the odd script, iframe or inline style the aggregator must
strip. About 8% of entries are reprints of another provider's story (same link with tracking
parameters, or the same text under the reprinter's own link), so cross-provider dedupe works.

Generation `g` of the farm: generation 0 is the initial state; in each generation g >= 1 a
seeded 10% of the healthy feeds gain 2 new entries at the top (the oldest 2 drop out, as a
fixed-size feed window does). A few feeds are slow (they answer after a delay) or failing
(500, 503, 404, or an HTML page instead of a feed).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import lru_cache
from xml.sax.saxutils import escape, quoteattr

from bench import text

#: Entry dates count back from here (a fixed past instant: no entry is ever in the future).
BASE_TIME = datetime(2025, 10, 16, 9, 0, tzinfo=UTC)
KST_OFFSET = timedelta(hours=9)

HEALTHY = ("ok", "slow")
FAILURES = ("http500", "garbage", "http404", "http503")


@dataclass(frozen=True)
class FarmSpec:
    """What the farm serves; equal specs give byte-identical feeds."""

    feeds: int = 500
    entries: int = 50
    seed: int = 8
    churn: float = 0.10  # share of healthy feeds that change in each generation
    churn_entries: int = 2  # new entries per changed feed
    slow: float = 0.01  # share of feeds that answer after `slow_delay`
    failing: float = 0.01  # share of feeds that fail (HTTP error or not a feed)
    slow_delay: float = 0.5


@dataclass(frozen=True)
class FeedPlan:
    """One provider: everything about its feed except the entries."""

    index: int
    name: str
    host: str
    kind: str  # ok | slow | http500 | http404 | http503 | garbage
    lang: str  # ko | en
    encoding: str  # utf-8 | euc-kr
    fmt: str  # rss | atom
    rights: str  # key of _RIGHTS
    date_style: str  # rfc822 | kst | dotted | iso | gmt
    charset_header: bool  # Content-Type names the charset
    last_modified: bool  # sends Last-Modified besides the ETag
    numeric_guid: bool  # guid is a per-feed counter (isPermaLink="false"), else the link
    cdata: bool  # descriptions in CDATA, else escaped

    @property
    def path(self) -> str:
        return f"/feeds/{self.index:05d}.xml"

    @property
    def healthy(self) -> bool:
        return self.kind in HEALTHY


@dataclass(frozen=True)
class Document:
    """One HTTP answer of the farm (before conditional-request and gzip handling)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    delay: float = 0.0
    etag: str | None = None
    last_modified: str | None = None


_KO_OUTLETS = (
    *("한길뉴스", "디지털경제", "IT조선일보", "서울데일리", "과학신문", "산업일보"),
    *("미래경제", "중앙통신", "테크플러스", "지역신문", "국제뉴스", "금융타임스"),
)
_EN_OUTLETS = (
    *("Daily Tech", "Harbor Herald", "Metro Ledger", "Science Wire", "Market Post"),
    *("Planet Python", "Open Source Weekly", "Valley Times"),
)

_CC = {
    "cc-by": "https://creativecommons.org/licenses/by/4.0/",
    "cc-by-sa": "https://creativecommons.org/licenses/by-sa/4.0/",
    "cc-by-nd": "https://creativecommons.org/licenses/by-nd/4.0/",
}
#: rights key -> (feed-level statement or None, notice line appended to articles or None)
_RIGHTS: dict[str, tuple[str | None, str | None]] = {
    "ko-notice": ("Copyright ⓒ {name}. All rights reserved.", "무단 전재 및 재배포 금지"),
    "ko-notice2": ("저작권자 ⓒ {name}", "무단전재-재배포, AI 학습 및 활용 금지"),
    "kogl1": ("공공누리 제1유형: 출처표시", None),
    "en-notice": ("Copyright © 2025 {name}. All rights reserved.", None),
    "cc-by": (None, None),
    "cc-by-sa": (None, None),
    "cc-by-nd": (None, None),
    "none": (None, None),
}
_KO_RIGHTS = (
    *(("ko-notice", 45), ("ko-notice2", 15), ("cc-by", 12)),
    *(("kogl1", 5), ("cc-by-nd", 5), ("none", 18)),
)
_EN_RIGHTS = (("en-notice", 45), ("cc-by", 20), ("cc-by-sa", 10), ("none", 25))


def _weighted(rng: random.Random, table: Sequence[tuple[str, int]]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def plan_feeds(spec: FarmSpec) -> list[FeedPlan]:
    """Every provider of the farm, in index order."""
    rng = random.Random(f"{spec.seed}:plan")
    n = spec.feeds
    n_fail = max(1, round(n * spec.failing)) if n >= 5 else 0
    n_slow = max(1, round(n * spec.slow)) if n >= 5 else 0
    special = rng.sample(range(1, n), n_fail + n_slow) if n > n_fail + n_slow else []
    kinds = {i: FAILURES[k % len(FAILURES)] for k, i in enumerate(special[:n_fail])}
    kinds |= {i: "slow" for i in special[n_fail:]}
    plans = []
    for i in range(n):
        lang = "ko" if rng.random() < 0.7 else "en"
        euc = lang == "ko" and rng.random() < 0.4
        fmt = "atom" if not euc and rng.random() < 0.2 else "rss"
        outlets = _KO_OUTLETS if lang == "ko" else _EN_OUTLETS
        if lang == "ko":
            date_style = rng.choice(("rfc822", "rfc822", "kst", "dotted", "iso"))
            host = f"www.news{i:04d}.co.kr"
        else:
            date_style = rng.choice(("rfc822", "gmt"))
            host = f"news{i:04d}.example.com"
        plans.append(
            FeedPlan(
                index=i,
                name=f"{rng.choice(outlets)} {i:04d}",
                host=host,
                kind=kinds.get(i, "ok"),
                lang=lang,
                encoding="euc-kr" if euc else "utf-8",
                fmt=fmt,
                rights=_weighted(rng, _KO_RIGHTS if lang == "ko" else _EN_RIGHTS),
                date_style=date_style,
                charset_header=rng.random() < 0.6,
                last_modified=rng.random() < 0.5,
                numeric_guid=rng.random() < 0.3,
                cdata=rng.random() < 0.5,
            )
        )
    return plans


# --- entries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    title: str
    link: str
    guid: str
    author: str
    category: str
    published: datetime
    html: str


# A slot names one entry of one feed: (feed index, generation, number). Generation 0 slots are
# the initial window (0 = newest); generation g >= 1 slots are the entries added by churn.
Slot = tuple[int, int, int]


class Corpus:
    """The plans plus on-demand rendering of any feed at any generation."""

    def __init__(self, spec: FarmSpec) -> None:
        self.spec = spec
        self.plans = plan_feeds(spec)
        self._by_lang = {
            lang: [p.index for p in self.plans if p.lang == lang] for lang in ("ko", "en")
        }

    @lru_cache(maxsize=64)  # noqa: B019 - one Corpus per process, kept for its lifetime
    def churned(self, generation: int) -> frozenset[int]:
        """Feeds that gain entries in `generation` (none in generation 0)."""
        if generation <= 0:
            return frozenset()
        healthy = [p.index for p in self.plans if p.healthy]
        rng = random.Random(f"{self.spec.seed}:churn:{generation}")
        count = max(1, round(len(healthy) * self.spec.churn)) if healthy else 0
        return frozenset(rng.sample(healthy, count))

    def version(self, index: int, generation: int) -> int:
        """The latest generation <= `generation` in which the feed changed (0 if never)."""
        return next((g for g in range(generation, 0, -1) if index in self.churned(g)), 0)

    def slots(self, index: int, generation: int) -> list[Slot]:
        added = [
            (index, g, k)
            for g in range(generation, 0, -1)
            if index in self.churned(g)
            for k in reversed(range(self.spec.churn_entries))
        ]
        base = [(index, 0, j) for j in range(self.spec.entries)]
        return (added + base)[: self.spec.entries]

    def _idxno(self, slot: Slot) -> int:
        index, generation, number = slot
        return index * 100_000 + (90_000 + generation * 100 if generation else 0) + number

    def _link(self, slot: Slot) -> str:
        return f"https://{self.plans[slot[0]].host}/news/articleView.html?idxno={self._idxno(slot)}"

    def _date(self, slot: Slot) -> datetime:
        index, generation, number = slot
        if generation:
            return BASE_TIME + timedelta(minutes=generation * 30 + number * 5 + index % 5)
        return BASE_TIME - timedelta(minutes=number * 47 + (index * 7) % 45)

    @lru_cache(maxsize=4096)  # noqa: B019 - reprints ask for the same stories again
    def _story(self, slot: Slot) -> text.Story:
        """The story first published in `slot`, as its provider wrote it."""
        plan = self.plans[slot[0]]
        rng = random.Random(f"{self.spec.seed}:story:{slot}")
        return text.story(rng, plan.lang, self._idxno(slot), plan.name.rsplit(" ", 1)[0])

    def entry(self, slot: Slot) -> Entry:
        """One entry as feed `slot[0]` carries it; about 8% reprint another feed's story:
        the same link with tracking parameters, a verbatim copy under the reprinter's own
        link, or an edited copy (last paragraph cut, headline marked, own byline)."""
        index, generation, _ = slot
        plan = self.plans[index]
        own_link = self._link(slot)
        link = own_link
        rng = random.Random(f"{self.spec.seed}:entry:{slot}")
        peers = self._by_lang[plan.lang]
        peers = peers[: bisect.bisect_left(peers, index)]
        notice = _RIGHTS[plan.rights][1]
        idxno = self._idxno(slot)
        if generation == 0 and peers and rng.random() < 0.08:
            source = (rng.choice(peers), 0, rng.randrange(self.spec.entries))
            story = self._story(source)
            kind = rng.randrange(3)
            if kind == 0:  # the same article, linked with tracking parameters
                link = f"{self._link(source)}&utm_source=rss&utm_medium=feed{index}"
                body = [*story.paragraphs, *text.footer(plan.lang, story.author, idxno, notice)]
                title = story.title
            elif kind == 1:  # a verbatim copy, the original's footer included
                source_plan = self.plans[source[0]]
                source_notice = _RIGHTS[source_plan.rights][1]
                footer = text.footer(plan.lang, story.author, self._idxno(source), source_notice)
                body, title = [*story.paragraphs, *footer], story.title
            else:  # an edited copy
                kept = story.paragraphs[:-1] if len(story.paragraphs) > 2 else story.paragraphs
                body = [*kept, *text.footer(plan.lang, story.author, idxno, notice)]
                title = ("[종합] " if plan.lang == "ko" else "UPDATE: ") + story.title
        else:
            story = self._story(slot)
            body = [*story.paragraphs, *text.footer(plan.lang, story.author, idxno, notice)]
            title = story.title
        guid = str(idxno) if plan.numeric_guid else own_link
        html = "\n".join(body)
        return Entry(title, link, guid, story.author, story.category, self._date(slot), html)

    def render(self, index: int, generation: int) -> Document:
        """The farm's answer for feed `index` at `generation`."""
        plan = self.plans[index]
        if plan.kind in FAILURES:
            return _failure(plan)
        entries = [self.entry(s) for s in self.slots(index, generation)]
        text = _rss(plan, entries) if plan.fmt == "rss" else _atom(plan, entries)
        body = text.encode("euc_kr" if plan.encoding == "euc-kr" else "utf-8")
        mime = "application/rss+xml" if plan.fmt == "rss" else "application/atom+xml"
        if plan.encoding == "euc-kr" and not plan.charset_header:
            content_type = "text/xml"
        elif plan.charset_header:
            content_type = f"{mime}; charset={plan.encoding.upper()}"
        else:
            content_type = mime
        etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
        newest = max((e.published for e in entries), default=BASE_TIME)
        modified = format_datetime(newest, usegmt=True) if plan.last_modified else None
        headers = [("Content-Type", content_type), ("ETag", etag)]
        if modified:
            headers.append(("Last-Modified", modified))
        delay = self.spec.slow_delay if plan.kind == "slow" else 0.0
        return Document(200, tuple(headers), body, delay, etag, modified)


def _failure(plan: FeedPlan) -> Document:
    html = ("Content-Type", "text/html; charset=utf-8")
    if plan.kind == "garbage":  # a CMS error page served as 200 instead of the feed
        page = "<!DOCTYPE html><html><head><title>점검 중</title></head><body>"
        page += "<h1>서비스 점검 중입니다</h1><p>잠시 후 다시 시도해 주세요.</p></body></html>"
        return Document(200, (html,), page.encode())
    status = {"http500": 500, "http404": 404, "http503": 503}[plan.kind]
    return Document(status, (html,), f"<h1>error {status}</h1>".encode())


# --- serialisation ------------------------------------------------------------------------


def _rss_date(when: datetime, style: str) -> str:
    kst = (when + KST_OFFSET).replace(tzinfo=None)
    if style == "gmt":
        return format_datetime(when, usegmt=True)
    if style == "kst":
        return kst.strftime("%a, %d %b %Y %H:%M:%S KST")
    if style == "dotted":
        return kst.strftime("%Y.%m.%d %H:%M")
    if style == "iso":
        return kst.strftime("%Y-%m-%d %H:%M:%S")
    return kst.strftime("%a, %d %b %Y %H:%M:%S +0900")


def _html_text(html: str, cdata: bool) -> str:
    return f"<![CDATA[{html}]]>" if cdata else escape(html)


def _rss(plan: FeedPlan, entries: Sequence[Entry]) -> str:
    statement, _ = _RIGHTS[plan.rights]
    out = [
        f'<?xml version="1.0" encoding="{plan.encoding.upper()}"?>',
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:creativeCommons="http://backend.userland.com/creativeCommonsRssModule">',
        "<channel>",
        f"<title>{escape(plan.name)}</title>",
        f"<link>https://{plan.host}/</link>",
        f"<description>{escape(plan.name)} {'전체기사' if plan.lang == 'ko' else 'all news'}"
        "</description>",
        f"<language>{plan.lang}</language>",
    ]
    if statement:
        out.append(f"<copyright>{escape(statement.format(name=plan.name))}</copyright>")
    if plan.rights in _CC:
        out.append(f"<creativeCommons:license>{_CC[plan.rights]}</creativeCommons:license>")
    if entries:
        out.append(f"<lastBuildDate>{_rss_date(entries[0].published, 'rfc822')}</lastBuildDate>")
    out.append("<ttl>30</ttl>")
    for e in entries:
        permalink = "false" if plan.numeric_guid else "true"
        out += [
            "<item>",
            f"<title>{escape(e.title)}</title>",
            f"<link>{escape(e.link)}</link>",
            f'<guid isPermaLink="{permalink}">{escape(e.guid)}</guid>',
            f"<description>{_html_text(e.html, plan.cdata)}</description>",
            f"<dc:creator>{escape(e.author)}</dc:creator>",
            f"<category>{escape(e.category)}</category>",
            f"<pubDate>{_rss_date(e.published, plan.date_style)}</pubDate>",
            "</item>",
        ]
    out += ["</channel>", "</rss>", ""]
    return "\n".join(out)


def _atom(plan: FeedPlan, entries: Sequence[Entry]) -> str:
    statement, _ = _RIGHTS[plan.rights]
    updated = (entries[0].published if entries else BASE_TIME).isoformat()
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{plan.lang}">',
        f"<title>{escape(plan.name)}</title>",
        f"<id>https://{plan.host}/</id>",
        f"<updated>{updated}</updated>",
        f'<link rel="alternate" href="https://{plan.host}/"/>',
    ]
    if statement:
        out.append(f"<rights>{escape(statement.format(name=plan.name))}</rights>")
    if plan.rights in _CC:
        out.append(f'<link rel="license" href="{_CC[plan.rights]}"/>')
    for e in entries:
        stamp = e.published.astimezone(UTC).isoformat().replace("+00:00", "Z")
        entry_id = e.guid if e.guid.startswith("http") else f"tag:{plan.host},2025:{e.guid}"
        out += [
            "<entry>",
            f"<title>{escape(e.title)}</title>",
            f"<id>{escape(entry_id)}</id>",
            f'<link rel="alternate" href={quoteattr(e.link)}/>',
            f"<published>{stamp}</published>",
            f"<updated>{stamp}</updated>",
            f"<author><name>{escape(e.author)}</name></author>",
            f"<category term={quoteattr(e.category)}/>",
            f'<content type="html">{escape(e.html)}</content>',
            "</entry>",
        ]
    out += ["</feed>", ""]
    return "\n".join(out)
