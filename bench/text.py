"""Article text for the corpus: varied enough that unrelated stories look unrelated.

A few fixed sentences would make every article share most of its character n-grams, and an
aggregator's near-duplicate detection (and boilerplate learning) would then see one giant
story: a benchmark of a pathology, not of news. So each story gets its own cast of names
(companies, places, people made of real syllables), sentences are built from templates over
a vocabulary of real words and those names, with particles chosen by the final consonant and
story-specific numbers. Every Korean character is in KS X 1001, so strict EUC-KR encodes it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def _words(text: str, sep: str = " ") -> tuple[str, ...]:
    return tuple(text.split(sep))


_KO_SYLLABLES = (
    "가강건경고공광구국권규근금기나남노능다단대도동두라란래려로류리림마만매명모목무문미민"
    "바박반방배백범병보복부북비사산상서석선설성세소손송수숙순승시신심아안양어언여연영예오온"
    "완용우운원위유윤은을의이인일임자장재전정제조종주준중지진차찬창채천철청초최춘충태택파판"
    "평표하학한함해허혁현형호홍화환황효훈휘희"
)
_KO_SUFFIXES = _words(
    "전자|바이오|건설|은행|테크|증권|제약|물산|시|군|"
    "대학교|재단|협회|연구원|공사|병원|항공|에너지|",
    "|",
)
_KO_NOUNS = _words(
    "정부 국회 기업 시장 투자자 소비자 연구진 교육부 서울시 경기도 반도체 인공지능 데이터센터 "
    "전기차 배터리 수출 물가 금리 부동산 일자리 청년 노동자 플랫폼 스타트업 병원 의료진 학교 "
    "학생 환경단체 탄소중립 재생에너지 원전 조선업 철강 항공사 관광객 농민 어민 지역주민 "
    "공공기관 법원 검찰 경찰 소방당국 기상청 통계청 한국은행 금융당국 보험사 카드사 통신사 "
    "게임업계 방송사 출판계 박물관 프로야구 대표팀 선수단 자치단체 주민센터 보건소 대학병원 "
    "중소기업 대기업 협력사 노조 경영진 이사회 주주 수출기업 수입업체 유통업계 식품업계 "
    "건설사 시공사 재건축 조합 임차인 집주인 세입자 예산 세수 적자 흑자 보조금 규제 특례 "
    "실증사업 시범사업 공모전 박람회 축제 전시회 공연 행사 개막식 설명회 간담회 토론회"
)
_KO_STEMS = _words(
    "발표 공개 검토 추진 확대 중단 재개 승인 요구 제안 설명 분석 예고 점검 합의 협의 도입 "
    "시행 보류 지원 투자 개발 출시 수주 인수 매각 조사 단속 경고 환영 비판 강조 개편 축소"
)
_KO_VERB_FORMS = _words(
    "{}했다|{}하기로 했다|{}할 계획이다|{}하고 있다고 밝혔다|"
    "{}한 것으로 알려졌다|{}할 방침이다|{}하겠다고 말했다",
    "|",
)
_KO_METRICS = _words(
    "매출|영업이익|점유율|판매량|방문객 수|수출액|응답률|참가자 수|거래량|순이익|가입자 수|생산량",
    "|",
)
_KO_UNITS = tuple(
    tuple(pair.split("/"))
    for pair in _words("억 원/으로|%/로|명/으로|건/으로|만 대/로|조 원/으로|톤/으로", "|")
)
_KO_WHEN = _words(
    "올해 하반기부터|지난달|다음 주|내년 초까지|이번 분기에|"
    "연말까지|최근|지난 {d}일|오는 {m}월|{d}일",
    "|",
)
_KO_AUTHORS = _words(
    "김유미|이정훈|박서연|최민준|정하늘|강지원|조현우|윤소희|"
    "장민호|임수진|한지민|오세훈|서지수|신동욱|권나래|황보람",
    "|",
)
KO_CATEGORIES = ("정치", "경제", "사회", "IT·과학", "국제", "문화", "스포츠", "지역")

_EN_SYLLABLES = tuple(
    onset + vowel + coda
    for onset in _words("b br c ch d dr f g gr h j k l m n p pr r s st t tr v w z")
    for vowel in _words("a e i o u ai ea ou")
    for coda in ("", "n", "r", "l", "s", "th", "m", "x")
)
_EN_SUFFIXES = (" Corp", " Labs", " Holdings", " University", " Council", " Bank", " Energy", "")
_EN_NOUNS = _words(
    "the ministry|city officials|the central bank|researchers|lawmakers|regulators|investors|"
    "consumers|the union|shareholders|the board|local residents|farmers|hospitals|schools|"
    "chipmakers|carmakers|airlines|insurers|retailers|exporters|startups|the court|prosecutors|"
    "the police|the weather service|the statistics office|a housing plan|a chip export plan|"
    "rules for artificial intelligence|a power budget|a rate decision|a jobs programme|"
    "electric-vehicle subsidies|privacy guidelines|a tax credit|a pilot project|a trade fair|"
    "a festival|the budget|the deficit|a recycling scheme|a new railway line|a data centre|"
    "a vaccine trial|a merger|a strike|a recall|a bond sale|a wage deal|an inquiry|a museum|"
    "fishermen|nurses|tenants|landlords|commuters|pensioners|teachers|truck drivers|miners|"
    "the harbour authority|the opposition|the mayor|the governor|the cabinet|the senate|"
    "a drought|a flood warning|a heatwave|a blackout|a cyberattack|a data breach|a lawsuit|"
    "a bridge repair|a toll increase|a ferry route|a stadium|a concert series|a film prize|"
    "a satellite launch|a battery plant|a steel mill|a shipyard|a wind farm|a solar park",
    "|",
)
_EN_VERBS = tuple(  # (past, base)
    (past, base)
    for past, base in (
        pair.split("/")
        for pair in _words(
            "announced/announce unveiled/unveil reviewed/review expanded/expand suspended/suspend "
            "approved/approve rejected/reject proposed/propose defended/defend "
            "criticised/criticise delayed/delay funded/fund launched/launch acquired/acquire "
            "investigated/investigate welcomed/welcome blocked/block doubled/double "
            "scrapped/scrap audited/audit sued/sue backed/back questioned/question "
            "extended/extend"
        )
    )
)
_EN_METRICS = _words(
    "Sales|Operating profit|Market share|Visitor numbers|Exports|Turnout|Net income|"
    "Subscriptions|Output|Bookings",
    "|",
)
_EN_UNITS = _words("million dollars|percent|thousand people|cases|thousand units", "|")
_EN_WHEN = _words(
    "on Thursday|last month|next week|by early next year|this quarter|on {d} October|"
    "in {m} weeks|late on Monday|this year",
    "|",
)
_EN_AUTHORS = _words(
    "Alice Park|Brian Lee|Carmen Diaz|David Kim|Emma Stone|Farid Khan|Grace Liu|"
    "Henry Ford|Irene Cho|Jamal Reed|Liam Walsh",
    "|",
)
EN_CATEGORIES = ("Politics", "Business", "Tech", "World", "Science", "Culture", "Sport", "Local")


def _batchim(word: str) -> bool:
    """Does the word end in a consonant (받침)? It picks 은/는, 이/가, 을/를, 과/와."""
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def _p(word: str, pair: str) -> str:
    with_final, without = pair.split("/")
    return word + (with_final if _batchim(word) else without)


@dataclass(frozen=True)
class Story:
    """A story as its first provider wrote it (byline and notice are added per provider)."""

    title: str
    paragraphs: tuple[str, ...]
    author: str
    category: str


class _Cast:
    """The names one story is about, mixed with the shared vocabulary."""

    def __init__(self, rng: random.Random, lang: str) -> None:
        self.rng = rng
        self.lang = lang
        self.names = [self._name() for _ in range(rng.randint(4, 8))]

    def _name(self) -> str:
        rng = self.rng
        if self.lang == "ko":
            stem = "".join(rng.choice(_KO_SYLLABLES) for _ in range(rng.randint(2, 3)))
            return stem + rng.choice(_KO_SUFFIXES)
        stem = "".join(rng.choice(_EN_SYLLABLES) for _ in range(rng.randint(2, 3)))
        return stem.capitalize() + rng.choice(_EN_SUFFIXES)

    def noun(self) -> str:
        if self.rng.random() < (0.5 if self.lang == "ko" else 0.6):
            return self.rng.choice(self.names)
        return self.rng.choice(_KO_NOUNS if self.lang == "ko" else _EN_NOUNS)

    def when(self) -> str:
        table = _KO_WHEN if self.lang == "ko" else _EN_WHEN
        return self.rng.choice(table).format(d=self.rng.randint(1, 30), m=self.rng.randint(2, 12))

    def number(self) -> str:
        value = self.rng.choice((self.rng.randint(2, 99), self.rng.randint(100, 99_999)))
        return f"{value:,}"


def _ko_sentence(c: _Cast) -> str:
    rng = c.rng
    a, b, d = c.noun(), c.noun(), c.noun()
    stem = rng.choice(_KO_STEMS)
    verb = rng.choice(_KO_VERB_FORMS).format(stem)
    metric = rng.choice(_KO_METRICS)
    unit, ro = rng.choice(_KO_UNITS)
    kind = rng.randrange(6)
    if kind == 0:
        return f"{_p(a, '은/는')} {c.when()} {_p(b, '을/를')} {verb}."
    if kind == 1:
        other = rng.choice(_KO_STEMS)
        return f"{_p(a, '이/가')} {_p(b, '과/와')} 함께 {d} {stem} 방안을 {other}했다."
    if kind == 2:
        return f'{a} 관계자는 "{_p(b, "은/는")} {_p(d, "을/를")} {stem}할 것"이라고 말했다.'
    if kind == 3:
        return f"{a}에 따르면 {b}의 {_p(metric, '은/는')} {c.number()}{unit}{ro} 집계됐다."
    if kind == 4:
        return f"{c.when()} {a}에서는 {b} {d} 문제를 두고 {stem} 여부가 논의됐다."
    return (
        f"{_p(a, '은/는')} 지난해 {c.number()}{unit}였던 {_p(metric, '이/가')} 올해 "
        f"{c.number()}{unit}까지 늘어날 것으로 {rng.choice(('예상', '전망', '분석'))}했다."
    )


def _en_sentence(c: _Cast) -> str:
    rng = c.rng
    a, b, d = c.noun(), c.noun(), c.noun()
    past, base = rng.choice(_EN_VERBS)
    unit = rng.choice(_EN_UNITS)
    when = c.when()
    sentence = rng.choice(
        (
            f"{a} {past} {b} {when}.",
            f"{a} and {b} agreed to {base} {d}.",
            f'"We will {base} {d}," said {a}.',
            f"{rng.choice(_EN_METRICS)} at {a} reached {c.number()} {unit}.",
            f"{a} expects {b} to {base} {d}.",
            f"{when.capitalize()}, {b} {past} {d}.",
            f"{b}, which {past} {d} {when}, declined to comment.",
            f"Asked about {d}, {a} said {b} had {past} it.",
            f"{a} has {past} {b} {rng.randint(2, 9)} times since {rng.randint(1998, 2024)}.",
        )
    )
    return sentence[0].upper() + sentence[1:]


def story(rng: random.Random, lang: str, idxno: int, outlet: str) -> Story:
    """A new story of 1-4 KB of HTML (UTF-8 bytes), with what portals put in articles."""
    cast = _Cast(rng, lang)
    sentence = _ko_sentence if lang == "ko" else _en_sentence
    author = rng.choice(_KO_AUTHORS if lang == "ko" else _EN_AUTHORS)
    target = rng.randint(1000, 4000) - 150  # room for the byline and notice
    parts: list[str] = []
    size = 0
    if rng.random() < 0.5:
        caption = f"{cast.names[0]} {'제공' if lang == 'ko' else 'handout'}"
        parts.append(
            f'<figure><img src="/photo/{idxno}_1.jpg" alt="{caption}" width="640">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    if rng.random() < 0.15:
        parts.append(f'<script type="text/javascript">track("{idxno}");</script>')
    if rng.random() < 0.1:
        parts.append('<iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ"></iframe>')
    first = True
    while size < target:
        text = " ".join(sentence(cast) for _ in range(rng.randint(2, 4)))
        if first:
            dateline = (
                f"(서울={outlet}) {author} 기자 = " if lang == "ko" else f"SEOUL ({outlet}) — "
            )
            text = f"<strong>{dateline}</strong>{text}"
            first = False
        if rng.random() < 0.2:
            label = "관련기사" if lang == "ko" else "Related"
            text += f' <a href="/news/articleView.html?idxno={idxno - 1}">{label}</a>'
        style = ' style="font-size:15px" onclick="ga()"' if rng.random() < 0.1 else ""
        para = f"<p{style}>{text}</p>"
        parts.append(para)
        size += len(para.encode("utf-8"))
    a, b = cast.names[0], cast.noun()
    if lang == "ko":
        metric, (unit, _) = rng.choice(_KO_METRICS), rng.choice(_KO_UNITS)
        title = f"{a}, {b} {rng.choice(_KO_STEMS)}…{metric} {cast.number()}{unit}"
        category = rng.choice(KO_CATEGORIES)
    else:
        past, _ = rng.choice(_EN_VERBS)
        title = f"{a} {past} {b} as {rng.choice(_EN_METRICS).lower()} hit {cast.number()}"
        category = rng.choice(EN_CATEGORIES)
    return Story(title, tuple(parts), author, category)


def footer(lang: str, author: str, idxno: int, notice: str | None) -> list[str]:
    """The provider's byline and rights notice that end an article."""
    byline = f"{author} 기자" if lang == "ko" else f"By {author}"
    lines = [f"<p>{byline} (reporter{idxno % 97}@example.org)</p>"]
    if notice:
        lines.append(f"<p>{notice}</p>")
    return lines
