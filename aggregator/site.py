"""The whole published site, from the newest-first stream of published items:

    output/                 the merged feed of everything (feed.xml, atom.xml, feed.json,
                            index.html), archive/ with its RFC 5005 pages
    output/<channel>/       each channel, the same files, its own archive/
    output/sources.opml     the providers (aggregator.opml)
    output/_headers         X-Robots-Tag: noindex for every file holding such an item

Every output reads the one stream, in one pass that goes only as far as the furthest output
needs (`archive.Gathering`): items are built once, and each output holds in memory only its
newest ones (a first publish's catch-up over the whole store keeps the older ones on disk
until their page is written, `archive.Spill`). Write order keeps a crash harmless: archive pages,
then the archive state, then the subscription feeds, then `_headers` - so a feed never links
a page that does not exist, and a page written twice has the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from aggregator import archive, channels, opml, policy
from aggregator.channels import ChannelConfig
from aggregator.config import Config, OutputConfig
from aggregator.models import PublishedItem
from aggregator.publish import (
    ARCHIVED,
    FEED_FILES,
    HEADERS_FILE,
    OUTPUT_FILES,
    Section,
    Staged,
    archive_name,
    documents,
    headers_file,
    public_url,
    render_archive_page,
    url_path,
    write_files,
)

#: A channel reads at most this many times its limit of the newest stories (at least
#: MIN_DEPTH) once its rules are known; what it published before that lies deeper is
#: remembered in its archive state.
CHANNEL_DEPTH = 10
MIN_DEPTH = 1000
#: An output holds in memory its newest `limit` + this many archive pages of items: the feed,
#: the open page, and a page's worth of new stories (so a steady publish that completes a
#: page touches no disk); older ones are spilled until their page is written.
HOLD_PAGES = 2
#: Loads the published items of these guids again (to rewrite an archive page).
Reload = Callable[[Sequence[str]], list[PublishedItem]]


@dataclass(frozen=True)
class Result:
    items: list[PublishedItem]  # the merged subscription feed's
    written: list[Path]  # every file whose bytes changed
    changed_feeds: list[str]  # public URLs of the feed documents among them (for WebSub)


@dataclass(frozen=True)
class _Output:
    folder: str  # relative to output.dir, "" for the merged output
    config: OutputConfig
    rules: channels.Rules | None


def channel_output(output: OutputConfig, channel: ChannelConfig) -> OutputConfig:
    """The channel as an output of its own, served from output.dir/<folder>/."""
    home = public_url(output, channel.folder + "/")
    title = channel.title or f"{output.title} - {channel.name}"
    return output.model_copy(
        update={
            "title": title,
            "description": channel.description or f"{title} ({output.title})",
            "limit": channel.limit or output.limit,
            "link": home,
            "base_url": home if output.base_url else None,
        }
    )


def outputs(config: Config) -> list[_Output]:
    merged = [_Output("", config.output, None)]
    return merged + [
        _Output(c.folder, channel_output(config.output, c), channels.Rules.of(c))
        for c in config.channels
    ]


def _sections(config: Config, here: str) -> list[Section]:
    if not config.channels:
        return []
    up = "../" * (here.count("/") + 1) if here else ""
    found = [Section(config.output.title, up or "./", not here)]
    for channel in config.channels:
        title = channel.title or channel.name
        found.append(Section(title, f"{up}{channel.folder}/", channel.folder == here))
    return found


def publish_site(
    config: Config, stream: Iterable[PublishedItem], reload: Reload, now: datetime
) -> Result:
    """Every output from one pass over the newest-first `stream`; `reload` builds archived
    stories again when a page went missing or its terms changed."""
    terms = {f.name: policy.terms_fingerprint(f) for f in config.feeds}
    root = config.output_dir
    written: list[Path] = []
    changed: list[str] = []
    noindex: list[str] = []
    merged: list[PublishedItem] = []
    with archive.Spill(root) as spill:
        todo = []
        for out in outputs(config):
            out_dir = root / out.folder if out.folder else root
            state = archive.load(out_dir)
            rules = _rules(out, terms)
            todo.append((out, out_dir, state, rules, _gathering(config, out, state, rules, spill)))
        homes = _read(stream, [gathering for *_, gathering in todo])
        for out, out_dir, state, rules, gathering in todo:
            done = _publish_output(
                config, out, out_dir, state, gathering, rules, terms, reload, now
            )
            written += done.written
            changed += [
                public_url(out.config, p.name)
                for p in done.written
                if p.parent == out_dir and p.name in FEED_FILES
            ]
            if any(i.noindex for i in done.items):
                noindex += [url_path(out.config, name) for name in (*OUTPUT_FILES, "")]
            noindex += [url_path(out.config, name) for name in done.noindex_pages]
            if not out.folder:
                merged = done.items
    written += write_files(
        {
            root / opml.SOURCES_FILE: opml.render_sources(config, homes),
            root / HEADERS_FILE: headers_file(noindex),
        }
    )
    return Result(merged, written, changed)


def _read(
    stream: Iterable[PublishedItem], gatherings: Sequence[archive.Gathering]
) -> dict[str, str]:
    """Offer each item of the stream to every output still reading; the providers' home pages
    met on the way (sources.opml)."""
    homes: dict[str, str] = {}
    for item in stream:
        if item.provider_link:
            homes[item.provider] = item.provider_link
        for gathering in gatherings:
            if not gathering.done:
                gathering.offer(item)
        if all(gathering.done for gathering in gatherings):
            break
    return homes


@dataclass(frozen=True)
class _Done:
    items: list[PublishedItem]  # the subscription feed's
    written: list[Path]
    noindex_pages: list[str]  # archive files holding an item that asks for noindex


def _publish_output(
    config: Config,
    out: _Output,
    out_dir: Path,
    state: archive.State,
    gathering: archive.Gathering,
    rules: str | None,
    terms: Mapping[str, str],
    reload: Reload,
    now: datetime,
) -> _Done:
    """One output: its archive pages, then its subscription documents."""
    enabled, size, limit = config.output.archive, config.output.archive_page_size, out.config.limit
    sections = _sections(config, out.folder)
    unarchived = _unarchived(state, gathering)
    if not enabled:
        items = archive.held(sorted(unarchived, key=archive.sort_key, reverse=True)[:limit])
        if out.rules is not None:
            archive.save(out_dir, replace(state, rules=rules, remembered=tuple(items)))
        docs = documents(items, out.config, now, sections=sections)
        return _Done(items, _write(out_dir, docs), [])
    plan = archive.plan(unarchived, limit, size)
    pages = list(state.pages)
    with Staged() as batch:  # each page is staged as it is rendered, all renamed at the end
        for i, page in enumerate(pages):  # a missing page, or one under changed terms
            if archive.stale(page, terms) or not _exists(out_dir, page.ref):
                again = sorted(reload(page.guids), key=archive.sort_key, reverse=True)
                before = _before(pages[:i])
                _stage(batch, out_dir, render_archive_page(again, out.config, page.number, before))
                pages[i] = archive.page_of(page.number, again, terms, page.guids)
        for planned in plan.pages:
            chunk = archive.restore(planned, gathering.spill)
            number = (pages[-1].number if pages else 0) + 1
            _stage(batch, out_dir, render_archive_page(chunk, out.config, number, _before(pages)))
            pages.append(archive.page_of(number, chunk, terms, [i.guid for i in chunk]))
        opened = None
        if plan.open_page:
            number = (pages[-1].number if pages else 0) + 1
            name = archive.open_reference(number, plan.open_page, terms)
            guids = [i.guid for i in plan.open_page]
            opened = archive.page_of(number, plan.open_page, terms, guids, name)
            if not _exists(out_dir, name):  # an open page, too, is written once per name
                page_docs = render_archive_page(plan.open_page, out.config, name, _before(pages))
                _stage(batch, out_dir, page_docs)
        written = batch.commit()
    gone = None
    if _ref(opened) != _ref(state.open_page):
        gone, new_state = state.replaced, replace(state, open_page=opened, replaced=state.open_page)
    else:
        new_state = replace(state, open_page=opened)
    if out.rules is not None:
        remembered = (*plan.feed, *plan.open_page)
        new_state = replace(new_state, rules=rules, remembered=remembered)
    new_state = replace(new_state, pages=tuple(pages))
    if new_state != state:
        archive.save(out_dir, new_state)  # hidden, not part of the published output
    newest = opened.ref if opened else _before(pages)
    written += _write(
        out_dir, documents(plan.feed, out.config, now, prev_archive=newest, sections=sections)
    )
    if gone is not None and gone.ref != newest:
        for kind in ARCHIVED:
            (out_dir / archive_name(kind, gone.ref)).unlink(missing_ok=True)
    on_disk = [*new_state.pages, *(p for p in (opened, new_state.replaced) if p is not None)]
    flagged = [archive_name(k, p.ref) for p in on_disk if p.noindex for k in ARCHIVED]
    return _Done(plan.feed, written, flagged)


def _rules(out: _Output, terms: Mapping[str, str]) -> str | None:
    """A channel's rules' fingerprint, with every provider's terms (None: the merged output)."""
    if out.rules is None:
        return None
    selection = [sorted(out.rules.providers), sorted(out.rules.categories), out.rules.include]
    return archive.rules_fingerprint((selection, out.rules.exclude, sorted(terms.items())))


def _gathering(
    config: Config, out: _Output, state: archive.State, rules: str | None, spill: archive.Spill
) -> archive.Gathering:
    """How far the output reads the stream, and what it keeps.

    The merged output reads as far as `archive.Gathering` needs. A channel whose rules (and
    providers' terms) are unchanged since the last publish reads at most `CHANNEL_DEPTH` x
    its limit stories (see `_unarchived`); a new or changed channel reads the whole store once.
    """
    archiving, limit = config.output.archive, out.config.limit
    archived = state.archived if archiving else frozenset()
    hold = limit + HOLD_PAGES * config.output.archive_page_size
    if out.rules is None:
        return archive.Gathering(_everything, archived, limit, archiving, hold, spill)
    depth = max(CHANNEL_DEPTH * limit, MIN_DEPTH) if state.rules == rules else None
    return archive.Gathering(out.rules.keeps, archived, limit, archiving, hold, spill, depth)


def _unarchived(state: archive.State, gathering: archive.Gathering) -> list[archive.Listed]:
    """The output's items not archived yet: those gathered, and for a channel that read only
    `CHANNEL_DEPTH` x its limit, the items it published before that lie deeper, as it
    remembered them."""
    if gathering.seen is None:
        return gathering.found
    seen = gathering.archived | gathering.seen
    return gathering.found + [i for i in state.remembered if i.guid not in seen]


def _everything(_: PublishedItem) -> bool:
    return True


def _before(pages: Sequence[archive.Page]) -> int | None:
    """The number of the newest complete page among `pages`, which the next one links."""
    return pages[-1].number if pages else None


def _ref(page: archive.Page | None) -> int | str | None:
    return None if page is None else page.ref


def _exists(out_dir: Path, ref: int | str) -> bool:
    return all((out_dir / archive_name(kind, ref)).is_file() for kind in ARCHIVED)


def _write(out_dir: Path, docs: Iterable[tuple[str, bytes]]) -> list[Path]:
    """Replace these documents (rendered one by one) together; the paths that changed."""
    with Staged() as batch:
        for name, data in docs:
            _stage(batch, out_dir, {name: data})
        return batch.commit()


def _stage(batch: Staged, out_dir: Path, docs: Mapping[str, bytes]) -> None:
    for name, data in docs.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        batch.add(path, data)
