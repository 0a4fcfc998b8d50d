"""Policy: how much of each provider's entry may be republished, and with what credit.

Every published item names its provider, original link and author; an entry that cannot be
attributed is not published. Redistribution is decided FAIL-CLOSED: when in doubt, publish less.

An explicit ``redistribution`` in the config (full/summary/title/none) is the operator's contract
and wins; detected rights are still carried as the notice. ``auto`` reads rights signals:

================================================================  =========  ==================
Signal (feed rights/licence fields; entry rights/licence fields;  Level      Why
notices inside the entry body, matched as notices, not keywords)
================================================================  =========  ==================
CC BY, CC BY-SA, CC0, Public Domain Mark (URL or "CC BY 4.0"),    full       permissive
a rights field saying only "Public domain";
KOGL 공공누리 제0유형 / 제1유형 (text, "KOGL Type 1", licence URL,
"공공누리 출처표시")
CC BY-ND, BY-NC-ND, KOGL 제3·4유형 (출처표시+변경금지)             title      no changes: no excerpt
CC BY-NC, BY-NC-SA, KOGL 제2유형 (출처표시+상업용금지)             title      users are commercial
무단 전재(·및·-) 재배포 금지, 재판매 및 DB 금지, AI 학습 및 활용   summary    rights reserved
금지, All rights reserved
저작권자 ⓒ …, Copyright ⓒ/©/(c) …, ⓒ holder (unless a licence in  summary    terms not stated
the same scope - same feed, or same entry - grants terms)
any other rights/licence field text                                summary    not recognised
no statement at all                                                summary    default
================================================================  =========  ==================

Within a scope the most restrictive signal wins (conflicts fail closed). The feed level (or the
summary default when the feed says nothing) is the ceiling: entry signals only restrict.

Modules: `rights` (signals -> level), `text` (excerpts, images), `item` (representative, cut
text, credit block, noindex, what was removed), `memo` (items a daemon's last publish built).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aggregator.policy.item import (
        CREDIT_TEMPLATES,
        build_item,
        decide,
        terms_fingerprint,
        why_not,
    )
    from aggregator.policy.memo import PUBLISHED, Memo
    from aggregator.policy.rights import Detection, Signal, detect
    from aggregator.policy.text import excerpt, strip_images

#: Where each name lives. Loaded on first use (PEP 562), so that the parse workers, which
#: need only `rights`, do not load the config schema (pydantic, ~11 MB) through `item`.
_HOMES = {
    "CREDIT_TEMPLATES": "item",
    "build_item": "item",
    "decide": "item",
    "terms_fingerprint": "item",
    "why_not": "item",
    "PUBLISHED": "memo",
    "Memo": "memo",
    "Detection": "rights",
    "Signal": "rights",
    "detect": "rights",
    "excerpt": "text",
    "strip_images": "text",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CREDIT_TEMPLATES",
    "PUBLISHED",
    "Detection",
    "Memo",
    "Signal",
    "build_item",
    "decide",
    "detect",
    "excerpt",
    "strip_images",
    "terms_fingerprint",
    "why_not",
]
