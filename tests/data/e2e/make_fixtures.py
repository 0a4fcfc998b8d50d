"""Writes the end-to-end fixture feeds (run once; the outputs are committed as real bytes)."""

from pathlib import Path

HERE = Path(__file__).parent

KIT_ITEM = """<item>
<title>{title}</title>
<link>https://kitnews.example/news/articleView.html?idxno={n}</link>
<guid>https://kitnews.example/news/articleView.html?idxno={n}</guid>
<pubDate>{date}</pubDate>
<dc:creator>김유미</dc:creator>
<description><![CDATA[<p>{lead}</p><p>{tail}</p><p>RSS피드 기사제공처 : 한국IT산업뉴스 / 등록기자: 김유미 문화부</p><p>무단 전재 및 재배포금지</p>]]></description>
</item>
"""

KIT = """<?xml version="1.0" encoding="euc-kr"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
<title>한국IT산업뉴스</title>
<link>https://kitnews.example/</link>
<description>IT 산업 뉴스</description>
<language>ko</language>
<copyright>무단 전재 및 재배포 금지</copyright>
{items}</channel>
</rss>
"""

ITEMS = [
    dict(
        n=1001,
        title="똠방각하 데이터센터 3곳 신설",
        date="2025.10.16 19:58",
        lead="광주 광산구에 데이터센터 3곳이 새로 들어선다.",
        tail="구 관계자는 주민 설명회를 거쳐 환경 영향을 최소화하겠다고 말했다. " * 5
        + "UNIQUE-TAIL-1001",
    ),
    dict(
        n=1002,
        title="반도체 장비 수출 석 달째 증가",
        date="2025-10-17 09:05:00",
        lead="반도체 장비 수출이 석 달 연속 늘었다.",
        tail="업계는 인공지능 서버 투자가 이어지는 한 증가세가 유지될 것으로 본다. " * 5
        + "UNIQUE-TAIL-1002",
    ),
]
NEW_ITEM = dict(
    n=1003,
    title="새 소식: 광산구 스마트 버스정류장",
    date="2025.10.18 08:30",
    lead="광산구가 스마트 버스정류장 20곳을 연다.",
    tail="정류장에는 냉난방과 공기청정 설비, 실시간 도착 안내판을 갖췄다. " * 5
    + "UNIQUE-TAIL-1003",
)


def kit(items: list[dict[str, object]]) -> bytes:
    body = KIT.format(items="".join(KIT_ITEM.format(**i) for i in items))
    return body.encode("cp949")


(HERE / "kitnews.xml").write_bytes(kit(ITEMS))
(HERE / "kitnews-2.xml").write_bytes(kit([NEW_ITEM, *ITEMS]))

(HERE / "bomb.xml").write_bytes(
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY big "' + b"A" * 30000 + b'">]>\n'
    b'<rss version="2.0"><channel><title>bomb</title>'
    + b"<item><title>&big;</title></item>" * 2000
    + b"</channel></rss>"
)
(HERE / "garbage.xml").write_bytes(bytes(range(256)) * 40)
