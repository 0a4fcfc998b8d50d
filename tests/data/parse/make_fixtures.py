"""Write the fixtures that cannot be kept as plain UTF-8 text files (run from anywhere).

The Korean feeds must be real EUC-KR/CP949 bytes, because that is what breaks feedparser;
the entity bombs are generated because they are large and repetitive.
"""

from __future__ import annotations

import codecs
from pathlib import Path

HERE = Path(__file__).resolve().parent

# 똠, 햏 and 뷁 exist only in CP949 (windows-949), not in strict EUC-KR (KS X 1001).
KOREAN_RSS = """<?xml version="1.0" encoding="{label}"?>
<rss version="2.0">
<channel>
<title>한국IT산업뉴스</title>
<link>http://www.koreaitnews.example/</link>
<description>한국IT산업뉴스 전체기사 RSS</description>
<language>ko</language>
<copyright>무단 전재 및 재배포 금지</copyright>
<managingEditor>webmaster@koreaitnews.example (한국IT산업뉴스 편집국)</managingEditor>
<ttl>60</ttl>
<item>
<title><![CDATA['똠방각하' 햏·뷁 신조어, 국립국어원 사전 등재 검토]]></title>
<link>/news/articleView.html?idxno=1001</link>
<description><![CDATA[<p>인터넷 신조어 \u2018햏\u2019과 \u2018뷁\u2019이 사전 등재 후보에 올랐다.</p>
<p><img src="/news/photo/202510/1001_1.jpg" alt="국립국어원"></p>
<p>RSS피드 기사제공처 : 한국IT산업뉴스 / 등록기자: 김유미 문화부</p>]]></description>
<author>kym@koreaitnews.example (김유미)</author>
<category>문화</category>
<category>IT</category>
<pubDate>2025.10.16 19:58</pubDate>
</item>
<item>
<title>중소 SW기업 10곳 중 4곳 \u201cAI 도입 검토\u201d</title>
<link>http://www.koreaitnews.example/news/articleView.html?idxno=1002</link>
<guid isPermaLink="false">koreaitnews-1002</guid>
<description>&lt;p&gt;조사 결과 중소 소프트웨어 기업의 41%가 AI 도입을 검토 중이다.&lt;/p&gt;
&lt;p&gt;RSS피드 기사제공처 : 한국IT산업뉴스 / 등록기자: 박정훈 산업부&lt;/p&gt;</description>
<pubDate>2025년 10월 16일 오후 7:58</pubDate>
</item>
<item>
<title></title>
<description>&lt;p&gt;제목 없이 송고된 단신입니다. 데이터센터 전력 수요가 계속 늘고 있다.&lt;/p&gt;</description>
<pubDate>2025-10-17 09:05:00</pubDate>
</item>
</channel>
</rss>
"""

TRUNCATED_TITLE = "출판계, 전자책 구독 서비스 확대"


def korean_rss(label: str) -> str:
    return KOREAN_RSS.format(label=label)


def write(name: str, data: bytes) -> None:
    (HERE / name).write_bytes(data)


def main() -> None:
    write("ko_euckr.xml", korean_rss("euc-kr").encode("cp949"))
    write("ko_ks_c_5601.xml", korean_rss("ks_c_5601-1987").encode("cp949"))
    write("ko_windows949.xml", korean_rss("windows-949").encode("cp949"))
    # A mislabelled feed: the declaration says euc-kr, the bytes are UTF-8.
    write("ko_utf8_declared_euckr.xml", korean_rss("euc-kr").encode("utf-8"))
    # No encoding anywhere (served as bare text/xml): only the bytes can tell.
    no_label = korean_rss("x").replace(' encoding="x"', "")
    write("ko_no_label.xml", no_label.encode("cp949"))
    # PHP templates that emit blank lines before the declaration.
    write("ko_blank_lines.xml", ("\n\n  \n" + korean_rss("euc-kr")).encode("cp949"))
    write("ko_bom_utf8.xml", codecs.BOM_UTF8 + korean_rss("utf-8").encode("utf-8"))
    write("ko_utf16.xml", codecs.BOM_UTF16_LE + korean_rss("UTF-16").encode("utf-16-le"))
    # A CMS cut the description at a byte limit, in the middle of a two-byte character.
    cut = korean_rss("euc-kr").encode("cp949")
    cut = cut.replace(
        "인터넷 신조어".encode("cp949"), "인터넷 신조어".encode("cp949") + "출".encode("cp949")[:1]
    )
    write("ko_truncated_char.xml", cut)

    big = "x" * 30_000
    write(
        "entity_quadratic.xml",
        (
            f'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "{big}">]>\n'
            '<rss version="2.0"><channel><title>t</title><item><title>boom</title>'
            f"<description>{'&a;' * 20_000}</description></item></channel></rss>\n"
        ).encode(),
    )
    utf16_bomb = (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        '<!DOCTYPE rss [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;">]>\n'
        '<rss version="2.0"><channel><title>&lol1;</title></channel></rss>\n'
    )
    write("entity_utf16.xml", codecs.BOM_UTF16_LE + utf16_bomb.encode("utf-16-le"))
    write("garbage.bin", bytes(range(256)) * 4)


if __name__ == "__main__":
    main()
