"""WebSub publisher side: tell the hub which feeds changed, so subscribers need not poll.

With `output.hub` set, every feed advertises `rel="hub"` (and `rel="self"`, its public URL
under `output.base_url`; JSON Feed: `hubs`). After a publish that changed a feed document's
bytes, one `POST hub.mode=publish&hub.url=<feed URL>` per changed feed goes to the hub, which
then fetches the feed and pushes it to its subscribers. An unchanged feed (publish did not
rewrite it) is never announced. The hub being slow or down costs a log line, not the cycle:
the feeds are published either way and subscribers' next poll still finds them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

from aggregator import __version__

log = logging.getLogger(__name__)

TIMEOUT = 5.0


def notify(hub: str, feed_urls: Sequence[str], timeout: float = TIMEOUT) -> list[str]:
    """Announce each changed feed to the hub; return the URLs the hub accepted (2xx)."""
    accepted: list[str] = []
    if not feed_urls:
        return accepted
    headers = {"User-Agent": f"aggregator/{__version__} (WebSub publisher)"}
    with httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as client:
        for url in feed_urls:
            try:
                response = client.post(hub, data={"hub.mode": "publish", "hub.url": url})
            except httpx.HTTPError as exc:
                log.warning("WebSub hub %s not notified of %s: %s", hub, url, exc or repr(exc))
                continue
            if response.is_success:
                accepted.append(url)
                log.info("WebSub hub %s notified of %s", hub, url, extra={"event": "websub"})
            else:
                log.warning("WebSub hub %s refused %s: HTTP %d", hub, url, response.status_code)
    return accepted
