"""Feed aggregator and republisher.

The pipeline, one module per stage, data flowing one way as frozen dataclasses
(aggregator/models.py):

    config ──► schedule ──► fetch ──► parse ──► dedupe/store ──► policy ──► publish
    feeds.yaml  what is due   Fetched   ParsedFeed  StoredItem      PublishedItem  output/
                (FeedState)   (httpx)   (feedparser) (SQLAlchemy)   (terms, credit) (feedgen)

- config:   YAML -> validated `Config`; errors name the key and the line.
- schedule: pure decisions (when is a feed due, how long to back off) + the APScheduler daemon.
- fetch:    conditional GET with caps and timeouts; never raises for one bad feed.
- parse:    bytes -> `ParsedFeed`: decoding, hostile-XML refusal, dates, sanitising.
- dedupe:   identity keys (normalised link, global guid, main-text hash).
- store:    feeds' state, entries and story clusters; one transaction per feed.
- policy:   picks each story's representative and cuts it to what its terms allow.
- publish:  RSS, Atom, JSON Feed and HTML, each written atomically.
- pipeline: runs one cycle through the stages; cli: the commands.
"""

__version__ = "0.1.0"
