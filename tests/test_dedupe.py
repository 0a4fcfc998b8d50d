"""Near-duplicate stories merge; different stories never do.

The evaluation set (tests/data/dedupe/) is realistic Korean and English news written for
this test: reprints with edits, other bylines and footers, truncated and summary-only copies,
and hard negatives (same-provider stories under one long footer, follow-ups sharing names,
template stories that differ in their numbers). It goes through the real store, and the
pairwise precision and recall of the resulting stories are checked.
"""

from __future__ import annotations

import html
import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import yaml

from aggregator import dedupe
from aggregator.models import FeedState, Fetched, ParsedEntry, ParsedFeed
from aggregator.store import Store
from aggregator.store.schema import near_docs
from tests.conftest import run_cli

DATA = Path(__file__).parent / "data" / "dedupe"
KST = timedelta(hours=9)
NOW = datetime(2025, 10, 28, 12, 0, tzinfo=UTC)
MIN_PRECISION, MIN_RECALL = 1.00, 0.95
FIRST_POLL = 3


@dataclass(frozen=True)
class Article:
    id: str
    feed: str
    story: str
    kind: str
    entry: ParsedEntry


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.strip().split("\n\n") if p.strip()]


def _derive(source: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    text = source["text"]
    for old, new in spec.get("replace", []):
        assert old in text, f"{spec['id']}: {old!r} not in {source['id']}"
        text = text.replace(old, new)
    paras = _paragraphs(text)
    paras = [p for i, p in enumerate(paras) if i not in spec.get("drop", [])]
    paras = paras[: spec.get("keep", len(paras))]
    for at, added in spec.get("insert", []):
        paras.insert(at, added)
    return paras


def load_corpus() -> list[Article]:
    """Every article rendered as its provider publishes it (boilerplate included)."""
    feeds = yaml.safe_load((DATA / "feeds.yaml").read_text(encoding="utf-8"))
    specs = yaml.safe_load((DATA / "articles.yaml").read_text(encoding="utf-8"))
    by_id = {s["id"]: s for s in specs}
    articles = []
    for spec in specs:
        feed = feeds[spec["feed"]]
        local = datetime.strptime(spec["date"], "%Y-%m-%d %H:%M")
        fill = {
            "author": spec["author"],
            "email": spec.get("email", ""),
            "date": local.strftime("%Y.%m.%d %H:%M"),
            "city": spec.get("city", ""),
        }
        paras = _derive(by_id[spec["from"]], spec) if "from" in spec else None
        paras = paras or _paragraphs(spec["text"])
        paras[0] = feed.get("lead", "").format(**fill) + paras[0]
        blocks = [h.format(**fill) for h in feed.get("header", [])] + paras
        body = "".join(f"<p>{html.escape(b)}</p>" for b in blocks)
        if "related" in feed:
            siblings = [s for s in specs if s["feed"] == spec["feed"] and s is not spec]
            start = specs.index(spec) % max(1, len(siblings))
            picked = (siblings[start:] + siblings[:start])[:3]
            items = "".join(
                f'<li><a href="https://x.example/{s["id"]}">{html.escape(s["title"])}</a></li>'
                for s in picked
            )
            body += f"<p>{html.escape(feed['related'])}</p><ul>{items}</ul>"
        body += "".join(f"<p>{html.escape(f.format(**fill))}</p>" for f in feed["footer"])
        entry = ParsedEntry(
            key=spec["id"],
            title=spec["title"],
            guid=f"{spec['feed']}-{spec['id']}",
            link=f"https://news.example/{spec['feed']}/{spec['id']}",
            author=spec["author"],
            published=(local - KST).replace(tzinfo=UTC),
            content_html=body,
        )
        articles.append(Article(spec["id"], spec["feed"], spec["story"], spec["kind"], entry))
    return articles


def _save(store: Store, feed: str, entries: list[ParsedEntry], now: datetime) -> None:
    state = FeedState(name=feed, url=f"https://{abs(hash(feed))}.example/rss", status=200)
    fetched = Fetched(name=feed, url=state.url, status=200, body=b"")
    store.store_entries(state, fetched, ParsedFeed(title=feed, entries=tuple(entries)), now)


def ingest(store: Store, articles: list[Article], order: str) -> None:
    """`by-feed`: one poll per feed (file order); `reversed`: feeds in reverse order;
    `one-by-one`: oldest first, each feed's first poll carrying its FIRST_POLL oldest entries
    (a newly added feed lists its recent entries), then every article in a poll of its own."""
    if order == "one-by-one":
        polls: dict[str, int] = {}
        for a in sorted(articles, key=lambda a: a.entry.published or NOW):
            polls[a.feed] = polls.get(a.feed, 0) + 1
            if polls[a.feed] < FIRST_POLL:
                continue
            siblings = [b for b in articles if b.feed == a.feed]
            siblings.sort(key=lambda b: b.entry.published or NOW)
            first = siblings[:FIRST_POLL] if polls[a.feed] == FIRST_POLL else [a]
            _save(store, a.feed, [b.entry for b in first], NOW)
        for feed, seen in polls.items():
            if seen < FIRST_POLL:
                _save(store, feed, [b.entry for b in articles if b.feed == feed], NOW)
        return
    feeds = list(dict.fromkeys(a.feed for a in articles))
    if order == "reversed":
        feeds.reverse()
    for feed in feeds:
        _save(store, feed, [a.entry for a in articles if a.feed == feed], NOW)


def stories_of(store: Store, feeds: list[str]) -> dict[str, int]:
    return {m.key: m.cluster_id for c in store.latest_clusters(feeds, 10_000) for m in c}


def pair_scores(articles: list[Article], cluster: dict[str, int]) -> tuple[float, float, list[str]]:
    tp = fp = fn = 0
    errors = []
    for a, b in itertools.combinations(articles, 2):
        same, merged = a.story == b.story, cluster[a.id] == cluster[b.id]
        tp += same and merged
        fp += merged and not same
        fn += same and not merged
        if same != merged:
            wrong = "false merge" if merged else "missed"
            errors.append(f"{wrong}: {a.id} ~ {b.id} ({b.kind})")
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, errors


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'eval.db'}")
    yield s
    s.close()


@pytest.mark.parametrize("order", ["by-feed", "reversed", "one-by-one"])
def test_evaluation_set_precision_and_recall(sqlite_store: Store, order: str) -> None:
    articles = load_corpus()
    ingest(sqlite_store, articles, order)
    cluster = stories_of(sqlite_store, list(dict.fromkeys(a.feed for a in articles)))
    precision, recall, errors = pair_scores(articles, cluster)
    positives = sum(a.story == b.story for a, b in itertools.combinations(articles, 2))
    print(
        f"\nnear-duplicate evaluation ({order}): {len(articles)} articles,"
        f" {positives} duplicate pairs: precision {precision:.2f}, recall {recall:.2f}"
    )
    print("\n".join(errors))
    assert precision >= MIN_PRECISION, errors
    assert recall >= MIN_RECALL, errors


# -- the pure decisions, table-tested ---------------------------------------------------------

ARTICLE = (
    "<p>(서울=파트너통신) 김유미 기자 = 삼성전자가 3분기 영업이익이 12조1000억원으로"
    " 잠정 집계됐다고 14일 공시했다. 증권가 전망치인 10조1000억원을 웃돌았다.</p>"
    "<p>매출은 86조원으로 분기 기준 역대 최대다.</p>"
    "<p>관련기사</p><ul><li><a href='https://x.example/1'>SK하이닉스 실적 발표</a></li></ul>"
    "<p>yumi@partner.example</p><p>&lt;저작권자(c) 파트너통신, 무단 전재-재배포 금지&gt;</p>"
)


@pytest.mark.parametrize(
    ("segment", "boilerplate"),
    [
        ("무단 전재 및 재배포금지", True),
        ("rss피드 기사제공처 : 한국it산업뉴스 / 등록기자: 김유미", True),
        ("김유미 기자 yumi.kim@kitnews.example", True),
        ("입력 2025.10.16 19:58 | 수정 2025.10.16 20:10", True),
        ("지역뉴스24 | 등록번호 서울 아 01234 | 대표전화 02-123-4567", True),
        ("© 2025 wire service. all rights reserved.", True),
        ("reporting by howard schneider; editing by mark porter", True),
        ("by priya natarajan, tech daily", True),
        ("김유미 기자", True),
        ("(c) 2025 파트너통신", True),
        ("입력 : 2025.10.16", True),
        ("related coverage of the vote", True),
        ("문의 yumi@partner.example", True),
        ("등급은 (c)로 낮아졌다", False),  # "(c)" counts at the start only
        ("오늘 입력 2025건을 넘었다", False),
        ("the vote, reported by the wire", False),
        ("이메일 주소를 공개하지 않았다 @ 표시만", False),
        ("담당 김유미 기자", False),  # a byline is the whole segment
        ("삼성전자가 3분기 영업이익이 12조1000억원으로 잠정 집계됐다고 14일 공시했다.", False),
        ("the fed held its benchmark rate in a range of 4.25% to 4.50%.", False),
    ],
)
def test_known_boilerplate_patterns(segment: str, boilerplate: bool) -> None:
    assert dedupe.is_boilerplate(segment) is boilerplate


def test_main_text_drops_dateline_byline_related_box_and_footer() -> None:
    text = dedupe.article_text(dedupe.segments(ARTICLE))
    assert text == (
        "삼성전자가 3분기 영업이익이 12조1000억원으로 잠정 집계됐다고 14일 공시했다."
        " 증권가 전망치인 10조1000억원을 웃돌았다. 매출은 86조원으로 분기 기준 역대 최대다."
    )
    assert dedupe.numbers(text) == {"3", "121000", "12", "1000", "14", "101000", "10", "86"} - {
        "121000",
        "101000",
    }


def test_segments_recurring_in_other_entries_of_the_feed_are_boilerplate() -> None:
    batch = {"a": {1, 2, 3}, "b": {1, 4}, "c": {1, 5}}
    # 1 is in two other batch entries; 4 is in one other stored entry (not enough), 5 in two.
    common = dedupe.recurring_segments(batch, stored={4: 1, 5: 2})
    assert common == {"a": {1}, "b": {1}, "c": {1, 5}}


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ({"3", "12", "2025"}, {"3", "12", "2025", "91200"}, True),  # a sentence with a number added
        (set(), {"7"}, True),  # nothing to disagree about
        ({"41.51", "1.12", "3748.37"}, {"19.12", "0.51", "3729.25"}, False),  # next day's close
        ({"6.1", "38", "62", "2010"}, {"5.4", "96", "31", "2007"}, False),  # another quake
        ({"1", "2", "3", "4", "5"}, {"1", "2", "3", "4", "9"}, True),  # 4 of 5 agree
        ({"1", "2", "3", "4", "5"}, {"1", "2", "3", "8", "9"}, False),
    ],
)
def test_numbers_must_agree(a: set[str], b: set[str], agree: bool) -> None:
    assert dedupe.numbers_agree(frozenset(a), frozenset(b)) is agree


BASE = (
    "한국은행 금융통화위원회는 23일 통화정책방향 회의를 열고 기준금리를 연 2.50%로 유지했다."
    " 지난 7월과 8월에 이은 세 번째 연속 동결이다. 금통위는 수도권 주택가격 상승세와"
    " 가계부채 증가세가 아직 꺾이지 않은 점을 고려한 것으로 풀이된다. 금통위는 의결문에서"
    " 성장의 하방 위험이 여전히 크지만 금융안정 상황을 좀 더 점검할 필요가 있다고 밝혔다."
    " 이번 결정으로 한국과 미국의 기준금리 차이는 상단 기준 1.75%포인트로 유지됐다."
    " 시장에서는 금통위가 다음 달 회의에서 기준금리를 내릴 것이라는 전망이 우세하다."
)
UNRELATED = (
    "서울 지하철 기본요금이 다음 달 7일부터 1,400원에서 1,550원으로 150원 오른다."
    " 서울시는 물가대책위원회 심의를 거쳐 이같이 결정했다고 밝혔다."
)


def _fp(text: str) -> dedupe.Fingerprint:
    fp = dedupe.fingerprint([text])
    assert fp is not None
    return fp


@pytest.mark.parametrize(
    ("other", "rule"),
    [
        (BASE.replace("유지했다", "동결했다").replace("풀이된다", "분석된다"), "near-jaccard"),
        (BASE.split(" 금통위는")[0], "near-containment"),  # truncated to its first paragraph
        (BASE.replace("2.50%", "2.25%").replace("23일", "28일"), None),  # other numbers
        (UNRELATED, None),
    ],
)
def test_compare_rules(other: str, rule: str | None) -> None:
    fp = _fp(other)
    found = dedupe.compare(_fp(BASE), fp.text, fp.numbers)
    assert (found.rule if found else None) == rule
    if found:
        assert 0 < found.score <= 1


def test_best_match_ignores_the_same_feed_and_prefers_the_highest_score() -> None:
    near = BASE.replace("유지했다", "동결했다")
    near_score = dedupe.compare(_fp(BASE), near, _fp(near).numbers)
    assert near_score is not None
    candidates = [
        (1, "wire", BASE, _fp(BASE).numbers),
        (2, "econ", near, _fp(near).numbers),
        (3, "region", UNRELATED, _fp(UNRELATED).numbers),
    ]
    assert dedupe.best_match(_fp(BASE), "wire", candidates) == dedupe.Match(
        "near-jaccard", near_score.score, 2
    )
    assert dedupe.best_match(_fp(BASE), "other", candidates) == dedupe.Match("near-jaccard", 1.0, 1)
    assert dedupe.best_match(_fp(BASE), "other", candidates[2:]) is None


def test_short_text_gets_no_fingerprint_and_bands_are_stable() -> None:
    assert dedupe.fingerprint(["짧은 기사 한 줄."]) is None
    assert _fp(BASE).bands == _fp(BASE).bands
    assert len(_fp(BASE).bands) == dedupe.BANDS + dedupe.LEAD_BANDS


def test_minhash_is_datasketchs_so_stored_band_keys_stay_valid() -> None:
    """Band keys stored by earlier versions (which called datasketch) must still match."""
    datasketch = pytest.importorskip("datasketch")
    reference = datasketch.MinHash(num_perm=dedupe.NUM_PERM, seed=1)
    rng = random.Random(5)
    texts = [
        dedupe.shingles(BASE),
        *(frozenset(rng.getrandbits(32) for _ in range(n)) for n in (1, 7, 4000)),
    ]
    for shingle_set in texts:
        theirs = datasketch.MinHash(
            num_perm=dedupe.NUM_PERM,
            permutations=reference.permutations,
            scheme="affine32",
            hashfunc=int,
        )
        theirs.update_batch(list(shingle_set))
        ours = dedupe.minhash(np.fromiter(shingle_set, dtype=np.uint32))
        assert ours.tolist() == theirs.hashvalues.tolist()


def test_gram_hashes_are_xxhash32_of_each_grams_utf8_so_stored_band_keys_stay_valid() -> None:
    """Every gram hashed at once must give what hashing it alone (as earlier versions did)
    gives: ASCII, Hangul, Latin with accents, combining marks, 4-byte characters (the other
    xxHash32 path), texts shorter than a gram, the empty text."""
    xxhash = pytest.importorskip("xxhash")
    rng = random.Random(11)
    alphabet = "ab09.%가힣ㄱ한글éü\u0301\u200d€😀𝔸"
    texts = ["", "a", "가나", "abcd", "😀😀😀😀😀", "𝔸a😀가é"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(400)]
    for text in texts:
        grams = [text[i : i + dedupe.NGRAM] for i in range(max(1, len(text) - 4))]
        expected = [xxhash.xxh32_intdigest(g.encode()) for g in grams]
        assert dedupe.gram_hashes(text).tolist() == expected, text
    assert dedupe.shingles("가 나다 라마바") == frozenset(
        xxhash.xxh32_intdigest(g.encode()) for g in ("가나다라마", "나다라마바")
    )


# -- through the store, on SQLite and PostgreSQL ----------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        f"sqlite:///{tmp_path / 'test.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    s = Store(url)
    yield s
    s.close()


def _entry(key: str, text: str, **kw: Any) -> ParsedEntry:
    values: dict[str, Any] = {
        "title": f"title {key}",
        "guid": key,
        "link": f"https://{key}.example/news",
        "author": "기자",
        "published": NOW - timedelta(hours=1),
        "content_html": f"<p>{text}</p>",
    }
    return ParsedEntry(key=key, **(values | kw))


def test_edited_reprint_joins_the_story_guid_kept_and_explained(store: Store) -> None:
    _save(store, "wire", [_entry("w1", BASE)], NOW)
    guid = store.latest_clusters(["wire"], 10)[0][0].cluster_guid
    reprint = BASE.replace("유지했다", "동결했다") + " 경제일보 이서연 기자 sy@econ.example"
    _save(store, "econ", [_entry("e1", reprint)], NOW + timedelta(hours=1))
    _save(store, "region", [_entry("r1", BASE.split(" 금통위는")[0])], NOW + timedelta(hours=2))
    [story] = store.latest_clusters(["wire", "econ", "region"], 10)
    assert {m.cluster_guid for m in story} == {guid}
    reasons = store.match_reasons([m.id for m in story])
    by_key = {m.key: reasons[m.id] for m in story}
    assert by_key["w1"].rule == "first"
    assert by_key["e1"].rule == "near-jaccard" and 0.5 <= by_key["e1"].score < 1
    assert by_key["r1"].rule == "near-containment" and by_key["r1"].score >= 0.8
    assert {by_key["e1"].other, by_key["r1"].other} <= {m.id for m in story}


def test_exact_keys_still_merge_and_say_so(store: Store) -> None:
    _save(store, "a", [_entry("a1", "짧은 글", link="https://n.example/s")], NOW)
    _save(store, "b", [_entry("b1", "다른 짧은 글", link="http://n.example/s?utm_source=x")], NOW)
    [story] = store.latest_clusters(["a", "b"], 10)
    reasons = store.match_reasons([m.id for m in story])
    assert sorted(r.rule for r in reasons.values()) == ["first", "same-link"]


def test_template_story_with_other_numbers_stays_apart(store: Store) -> None:
    _save(store, "wire", [_entry("w1", BASE)], NOW)
    other = BASE.replace("2.50%", "2.25%").replace("23일", "28일").replace("7월과 8월", "5월과 7월")
    _save(store, "econ", [_entry("e1", other)], NOW)
    assert len(store.latest_clusters(["wire", "econ"], 10)) == 2


def test_index_survives_reopen_and_forgets_outside_the_window(store: Store) -> None:
    _save(store, "wire", [_entry("w1", BASE)], NOW)
    again = Store(store.url)
    try:
        _save(again, "econ", [_entry("e1", BASE.replace("유지했다", "동결했다"))], NOW)
        # A week and a day later the first story has left the window: a reprint starts anew.
        later = NOW + dedupe.WINDOW + timedelta(days=1)
        _save(again, "region", [_entry("r1", BASE.replace("풀이된다", "분석된다"))], later)
        sizes = sorted(len(c) for c in again.latest_clusters(["wire", "econ", "region"], 10))
    finally:
        again.close()
    assert sizes == [1, 2]


def test_window_is_bounded_by_entry_count(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedupe, "WINDOW_ENTRIES", 2)
    _save(store, "wire", [_entry("w1", BASE)], NOW)
    filler = [_entry(f"f{i}", f"전혀 다른 기사 {i}번 " * 20) for i in range(3)]
    _save(store, "other", filler, NOW)
    _save(store, "econ", [_entry("e1", BASE.replace("유지했다", "동결했다"))], NOW)
    assert len(store.latest_clusters(["wire", "econ", "other"], 10)) == 5


def test_explain_names_the_rule_score_and_matched_entry(tmp_path: Path) -> None:
    db = tmp_path / "aggregator.db"
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        f"store:\n  url: sqlite:///{db}\nfeeds:\n"
        "  - {name: wire, url: 'https://wire.example/rss'}\n"
        "  - {name: econ, url: 'https://econ.example/rss'}\n",
        encoding="utf-8",
    )
    store = Store(f"sqlite:///{db}")
    try:
        _save(store, "wire", [_entry("w1", BASE)], NOW)
        _save(store, "econ", [_entry("e1", BASE.replace("유지했다", "동결했다"))], NOW)
    finally:
        store.close()
    done = run_cli("explain", "--config", str(cfg), "https://e1.example/news")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(2 entries)" in done.stdout
    assert "in this story by first, score 1.00" in done.stdout
    assert re.search(
        r"in this story by near-jaccard, score 0\.\d\d: nearly the same main text .*"
        r"matching wire's entry w1",
        done.stdout,
    ), done.stdout


def _random_sentences(rng: random.Random, n: int) -> list[str]:
    words = ["정부", "기업", "시장", "발표", "투자", "growth", "policy", "market", "data", "city"]
    return [
        " ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(8)) + "."
        for _ in range(n)
    ]


def test_bands_find_a_reprint_that_shares_half_its_text() -> None:
    """The LSH settings, not only the evaluation set: of 300 copies at the Jaccard threshold
    (0.5-0.56, the hardest to find) at least 99% share a band with the article, and so do
    summary-only copies: the article's opening cut at 60-150 characters."""
    rng = random.Random(5)
    found = summaries = pairs = 0
    while pairs < 300:
        article = _random_sentences(rng, 20)
        text = " ".join(article)
        copy = list(article)
        for k in range(20):
            copy[k] = _random_sentences(rng, 1)[0]
            jaccard = _jaccard(text, " ".join(copy))
            if jaccard <= 0.56:
                break
        if jaccard < 0.5:
            continue
        pairs += 1
        cut = rng.randrange(dedupe.MIN_NEAR_CHARS, dedupe.LEAD_CHARS)
        summary = text.replace(" ", "")[:cut]
        a, b, c = (dedupe.fingerprint(t) for t in (article, copy, [summary]))
        assert a is not None and b is not None and c is not None
        found += bool(set(a.bands) & set(b.bands))
        summaries += bool(set(a.bands) & set(c.bands))
    assert found >= 0.99 * pairs
    assert summaries >= 0.99 * pairs


def _jaccard(a: str, b: str) -> float:
    sa, sb = dedupe.shingles(a), dedupe.shingles(b)
    return len(sa & sb) / len(sa | sb)


def test_a_footer_is_learnt_from_the_feeds_earlier_polls(store: Store) -> None:
    """A promotional footer no pattern knows, one entry per poll: only the counts stored by
    the earlier polls show it recurring, and the third entry's main text leaves it out."""
    footer = "오늘의 추천 프로모션 행사에 참여하시면 다양한 선물을 받으실 수 있습니다 지금 응모"
    stories = [
        "서울시는 올해 한강 공원에 새로운 자전거 도로를 만들기로 했다고 발표했다",
        "부산항의 컨테이너 물동량이 지난달 처음으로 이백만 개를 넘어섰다고 밝혔다",
        "대전의 한 연구소가 새로운 배터리 소재를 개발해 특허를 출원했다고 전했다",
    ]
    for i, text in enumerate(stories):
        # A second sentence (the first reversed): main text long enough to be indexed.
        html = f"<p>{text}.</p><p>{text[::-1]}.</p><p>{footer}.</p>"
        _save(store, "promo", [_entry(f"p{i}", "", content_html=html)], NOW + timedelta(hours=i))
    with store.engine.connect() as conn:
        texts = [r.text for r in conn.execute(sa.select(near_docs).order_by(near_docs.c.entry_id))]
    assert [footer[:10] in t for t in texts] == [True, True, False]
