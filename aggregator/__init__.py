"""Feed aggregator and republisher.

The pipeline, one module per stage, data flowing one way as frozen dataclasses
(aggregator/models.py):

    config ──► schedule ──► fetch ──► parse ──► dedupe/store ──► policy ──► publish ──► serve
    feeds.yaml  what is due   Fetched   ParsedFeed  StoredItem      PublishedItem  output/   HTTP
                (FeedState)   (httpx)   (feedparser) (SQLAlchemy)   (terms, credit) (feedgen)

- config:   YAML -> validated `Config`; errors name the key and the line.
- schedule: pure decisions (when is a feed due, back-off, redirect adoption) + the daemon loop.
- fetch:    conditional GET with caps and timeouts; never raises for one bad feed.
- parse:    bytes -> `ParsedFeed`: decoding, hostile-XML refusal, dates, sanitising, JSON Feed.
- dedupe:   pure identity and near-duplicate decisions (normalised links, MinHash, boilerplate).
- store/:   schema, story assignment, leases and heartbeats for several daemons; one
            transaction per feed; Alembic migrations in migrations/.
- policy/:  rights detection, the level each entry may be republished at, excerpts, credits.
- publish:  RSS, Atom, JSON Feed and HTML files written atomically (formats.py renders them);
            site.py lays out the merged feed, channels (channels.py), RFC 5005 archives
            (archive.py), sources.opml (opml.py) and _headers; websub.py pings a hub.
- serve:    the ASGI server for output/ (validators, compression, /healthz).
- pipeline: runs one cycle through the stages; cli: the commands; demo: the offline tour.
"""

__version__ = "0.1.0"
