"""OPML 2.0 both ways: `output/sources.opml` lists the providers; `import-opml` adds feeds.

`sources.opml` is written on every publish from the config: one `<outline type="rss">` per
provider that is published at all (`redistribution: none` providers are never named), with
`text`/`title` (the provider's name), `xmlUrl` (its configured feed URL) and `htmlUrl` (the
provider's home page, when a published item told us). It has no date, so unchanged providers
give identical bytes and the file is not rewritten.

`import_opml` adds an OPML file's feeds (nested outlines too) to a config file, editing it as
round-trip YAML (ruamel.yaml) so its comments, order, quoting and indentation stay as the
operator wrote them. Feeds whose URL is already configured (compared as the store compares
links: scheme, `www.`, tracking parameters ignored) are skipped and reported; a name already
taken gets the feed's host appended. The edited text is validated with `aggregator.config`
before it replaces the file atomically, so a bad import never leaves a broken config.
"""

from __future__ import annotations

import io
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from aggregator import config as config_module
from aggregator.config import Config, ConfigError
from aggregator.dedupe import normalize_url
from aggregator.parse import decode
from aggregator.publish import write_atomic

SOURCES_FILE = "sources.opml"
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)


class OpmlError(ConfigError):
    """The OPML file cannot be read (exit code 2, like any other bad input)."""


# --- writing sources.opml -------------------------------------------------------------


def render_sources(config: Config, home_pages: Mapping[str, str | None]) -> bytes:
    """The providers as OPML 2.0; `home_pages` maps provider names to their home pages."""
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = f"{config.output.title} - sources"
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(opml, "body")
    for feed in config.feeds:
        if feed.redistribution == "none":
            continue
        attrs = {"type": "rss", "text": feed.name, "title": feed.name, "xmlUrl": feed.url}
        if home := home_pages.get(feed.name):
            attrs["htmlUrl"] = home
        ET.SubElement(body, "outline", attrs)
    ET.indent(opml)
    data: bytes = ET.tostring(opml, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


# --- reading OPML ---------------------------------------------------------------------


@dataclass(frozen=True)
class OpmlFeed:
    name: str
    url: str


def read_opml(data: bytes) -> list[OpmlFeed]:
    """Every outline with an `xmlUrl`, depth first, in document order."""
    if _ENTITY.search(data):
        raise OpmlError("the OPML file declares XML entities; refused")
    try:
        root = ET.fromstring(decode(data, None))
    except ET.ParseError as exc:
        raise OpmlError(f"not an OPML file: {exc}") from None
    if root.tag != "opml" or root.find("body") is None:
        raise OpmlError("not an OPML file: no <opml> with a <body>")
    return list(_outlines(root.find("body")))


def _outlines(parent: ET.Element | None) -> Iterator[OpmlFeed]:
    for outline in parent.findall("outline") if parent is not None else ():
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if url:
            name = (outline.get("title") or outline.get("text") or "").strip()
            yield OpmlFeed(" ".join(name.split()), url)
        yield from _outlines(outline)


# --- adding feeds to the config -------------------------------------------------------


@dataclass
class ImportReport:
    added: list[tuple[str, str]] = field(default_factory=list)  # (name, url)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (url, why)


def import_opml(config_path: Path, opml_data: bytes, redistribution: str) -> ImportReport:
    """Add the OPML's new feeds to the config file; write it only if anything was added."""
    feeds = read_opml(opml_data)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = "feeds:\n"
    yaml = _yaml(text)
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise ConfigError(f"{config_path}: expected a mapping with a 'feeds:' list")
    if doc.get("feeds") is None:
        doc["feeds"] = CommentedSeq()
    existing = doc["feeds"]
    if not isinstance(existing, CommentedSeq):
        raise ConfigError(f"{config_path}: 'feeds' must be a list")
    report = ImportReport()
    urls = {normalize_url(str(f.get("url"))): str(f.get("name")) for f in _maps(existing)}
    names = {str(f.get("name")) for f in _maps(existing)}
    for feed in feeds:
        why = _refusal(feed.url, urls)
        if why:
            report.skipped.append((feed.url, why))
            continue
        name = _free_name(feed, names)
        existing.append(
            CommentedMap([("name", name), ("url", feed.url), ("redistribution", redistribution)])
        )
        urls[normalize_url(feed.url)] = name
        names.add(name)
        report.added.append((name, feed.url))
    if report.added:
        out = io.StringIO()
        yaml.dump(doc, out)
        new_text = out.getvalue()
        config_module.parse(new_text, str(config_path), config_path.resolve().parent)
        write_atomic(config_path, new_text.encode("utf-8"))
    return report


def _maps(seq: CommentedSeq) -> Iterator[Mapping[str, Any]]:
    return (f for f in seq if isinstance(f, Mapping))


def _refusal(url: str, urls: Mapping[str | None, str]) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    if (known := urls.get(normalize_url(url))) is not None:
        return f"already in the config as {known!r}"
    return None


def _free_name(feed: OpmlFeed, taken: set[str]) -> str:
    host = urlsplit(feed.url).hostname or "feed"
    base = feed.name or host
    candidates = [base, f"{base} ({host})"] if feed.name else [base]
    candidates += [f"{base} ({n})" for n in range(2, 1000)]
    return next(c for c in candidates if c not in taken)


def _yaml(text: str) -> YAML:
    """A round-trip YAML that writes the file's own indentation back."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long value onto a second line
    sequence, offset = 4, 2  # the project's style: "  - name: …"
    try:
        _, guessed, guessed_offset = load_yaml_guess_indent(text)
        if guessed is not None and guessed_offset is not None:
            sequence, offset = guessed, guessed_offset
    except YAMLError:
        pass  # load() reports it
    yaml.indent(mapping=_mapping_indent(text), sequence=sequence, offset=offset)
    return yaml


def _mapping_indent(text: str) -> int:
    """How far the file indents a nested mapping's keys (the first one found), else 2."""
    lines = [line for line in text.splitlines() if line.strip() and line.lstrip()[:1] != "#"]
    for above, line in itertools.pairwise(lines):
        if re.match(r"^[^\s#-][^#]*:\s*$", above) and not line.lstrip().startswith("-"):
            indent = len(line) - len(line.lstrip())
            if indent:
                return indent
    return 2
