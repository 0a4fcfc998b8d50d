"""Configuration: YAML in, validated typed models out, errors that point at the line.

The config file is the operator's contract with each provider, so a typo must never be
silently ignored: unknown keys are errors, and every error names the key and its line.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from string import Formatter
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from aggregator.channels import ChannelConfig

Redistribution = Literal["full", "summary", "title", "none", "auto"]

DEFAULT_CONFIG = "feeds.yaml"


class ConfigError(Exception):
    """A problem with the configuration file, phrased for the operator."""


class LocatedError(ConfigError):
    """A cross-field problem at a key path (`parse()` adds its line); pydantic lets it through
    (it is no ValueError), where a ValueError would be reported at the top level."""

    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(f"{_format_loc(loc)}: {message}")
        self.loc = loc
        self.message = message


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> timedelta:
    """Accept 900, "900s", "15m", "1h", "1d" - what operators actually write."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 15m, 1h or 900")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"must be a duration such as 15m, 1h or 900 (seconds), got {value!r}")


def _timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Asia/Seoul)"
        ) from exc
    return value


#: What a credit line template may name; both are required (every item credits both).
CREDIT_PLACEHOLDERS = ("provider", "author")


def credit_template(value: str) -> str:
    """A credit line such as "기사제공처: {provider} / 기자: {author}"; `{{`/`}}` are braces."""
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in Formatter().parse(value) if f is not None]
    except ValueError as exc:
        msg = f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        raise ValueError(msg) from None
    allowed = ", ".join(f"{{{p}}}" for p in CREDIT_PLACEHOLDERS)
    for name, spec, conv in fields:
        if name not in CREDIT_PLACEHOLDERS or spec or conv:
            shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"unknown placeholder {shown}; use {allowed}")
    missing = [p for p in CREDIT_PLACEHOLDERS if p not in {f for f, _, _ in fields}]
    if missing:
        raise ValueError(f"must contain {allowed} (every item credits its provider and author)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutputConfig(_Strict):
    dir: Path = Path("output")
    title: str = "Aggregated news"
    link: Annotated[str, Field(description="public home page of the merged feed")] = (
        "http://localhost/"
    )
    description: str | None = None
    language: str = "ko"
    limit: Annotated[int, Field(ge=1, le=10000)] = 100
    base_url: str | None = None
    rights: str | None = None
    credit_template: str | None = None
    #: WebSub hub announced in the feeds and notified after each publish that changed one.
    hub: str | None = None
    #: RFC 5005 archived feeds: items beyond `limit` move to immutable pages of this size.
    archive: bool = True
    archive_page_size: Annotated[int, Field(ge=1, le=10000)] = 50

    @field_validator("link", "base_url", "hub")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        return None if v is None else _http_url(v)

    @model_validator(mode="after")
    def _hub_needs_base_url(self) -> OutputConfig:
        if self.hub is not None and self.base_url is None:
            raise ValueError(
                "hub needs base_url: WebSub subscribers and the hub identify a feed by its"
                " public URL (the feeds' rel=self link)"
            )
        return self

    @field_validator("credit_template")
    @classmethod
    def _check_template(cls, v: str | None) -> str | None:
        return None if v is None else credit_template(v)


class StoreConfig(_Strict):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite", "postgresql")):
            raise ValueError(f"must start with sqlite:/// or postgresql://, got {v!r}")
        return v


class FetchConfig(_Strict):
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    connect_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    max_bytes: Annotated[int, Field(ge=1024)] = 15 * 1024 * 1024
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 32
    per_host: Annotated[int, Field(ge=1, le=64)] = 2
    block_private_networks: bool = False
    batch: Annotated[int, Field(ge=1, le=10000)] = 100


class ScheduleConfig(_Strict):
    interval: timedelta = timedelta(minutes=30)
    min_interval: timedelta = timedelta(minutes=15)
    max_interval: timedelta = timedelta(hours=24)
    tick: timedelta = timedelta(seconds=30)
    lease: timedelta = timedelta(minutes=5)

    @field_validator("interval", "min_interval", "max_interval", "tick", "lease", mode="before")
    @classmethod
    def _check_duration(cls, v: Any) -> timedelta:
        return _duration(v)

    @model_validator(mode="after")
    def _bounds(self) -> ScheduleConfig:
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval must not exceed max_interval")
        return self


class FeedConfig(_Strict):
    name: Annotated[str, Field(min_length=1)]
    url: str
    redistribution: Redistribution = "auto"
    author: str | None = None
    timezone: str | None = None
    interval: timedelta | None = None
    excerpt_length: Annotated[int, Field(ge=20, le=5000)] = 200
    priority: int = 0
    headers: dict[str, str] = Field(default_factory=dict)
    images: bool = False
    credit: str | None = None
    noindex: Literal["auto", True, False] = "auto"
    credit_template: str | None = None  # unset: output.credit_template, else the language's

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _http_url(v)

    @field_validator("credit_template")
    @classmethod
    def _check_template(cls, v: str | None) -> str | None:
        return None if v is None else credit_template(v)

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str | None) -> str | None:
        return _timezone(v)

    @field_validator("interval", mode="before")
    @classmethod
    def _check_interval(cls, v: Any) -> timedelta | None:
        return None if v is None else _duration(v)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class Config(_Strict):
    output: OutputConfig = Field(default_factory=OutputConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    timezone: str | None = None
    feeds: list[FeedConfig]
    channels: list[ChannelConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str | None) -> str | None:
        return _timezone(v)

    @model_validator(mode="after")
    def _lease_outlives_a_fetch(self) -> Config:
        # Leases are renewed between fetches; one fetch must not outlast half a lease.
        if self.schedule.lease.total_seconds() < 2 * self.fetch.timeout:
            raise ValueError(
                f"schedule.lease ({self.schedule.lease}) must be at least twice "
                f"fetch.timeout ({self.fetch.timeout:g} s)"
            )
        return self

    @model_validator(mode="after")
    def _unique(self) -> Config:
        for attr in ("name", "url"):
            seen: set[str] = set()
            for i, feed in enumerate(self.feeds):
                value = getattr(feed, attr)
                if value in seen:
                    raise ValueError(f"feeds[{i}].{attr} {value!r} is listed twice")
                seen.add(value)
        return self

    @model_validator(mode="after")
    def _check_channels(self) -> Config:
        """Channel names and folders are unique, and name only configured providers."""
        names = {f.name for f in self.feeds}
        seen: dict[str, str] = {}
        for i, channel in enumerate(self.channels):
            if channel.name in seen.values():
                raise LocatedError(("channels", i, "name"), f"{channel.name!r} is listed twice")
            for other, other_name in seen.items():
                a, b = channel.folder + "/", other + "/"
                if a.startswith(b) or b.startswith(a):
                    raise LocatedError(
                        ("channels", i, "path" if channel.path else "name"),
                        f"folder {channel.folder!r} overlaps channel {other_name!r}'s {other!r}",
                    )
            seen[channel.folder] = channel.name
            for j, provider in enumerate(channel.providers):
                if provider not in names:
                    raise LocatedError(
                        ("channels", i, "providers", j),
                        f"no feed is named {provider!r} (providers are feeds[].name)",
                    )
        return self

    @model_validator(mode="after")
    def _inherit_credit_template(self) -> Config:
        """Feeds without their own credit template use the output's (policy sees only feeds)."""
        if self.output.credit_template is not None:
            for i, feed in enumerate(self.feeds):
                if feed.credit_template is None:
                    update = {"credit_template": self.output.credit_template}
                    self.feeds[i] = feed.model_copy(update=update)
        return self

    # Filled in by parse(); not part of the file format.
    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def output_dir(self) -> Path:
        return self.output.dir if self.output.dir.is_absolute() else self.base_dir / self.output.dir

    @property
    def store_url(self) -> str:
        if self.store.url:
            return self.store.url
        return f"sqlite:///{(self.base_dir / 'aggregator.db').resolve()}"

    def feed(self, name: str) -> FeedConfig | None:
        return next((f for f in self.feeds if f.name == name), None)

    def feed_timezone(self, feed: FeedConfig) -> str | None:
        return feed.timezone or self.timezone


def _node_lines(
    node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int], source: str
) -> None:
    """Map every key path to its 1-based line so errors can point into the file."""
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                # YAML would silently keep the last one; for a contract that is a trap.
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
            out[(*path, key)] = key_node.start_mark.line + 1
            _node_lines(value_node, (*path, key), out, source)
            out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, (*path, i), out, source)


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _explain(err: ValidationError, lines: dict[tuple[Any, ...], int], source: str) -> str:
    messages = []
    for item in err.errors():
        loc = tuple(item["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        where = f"{source}:{line}" if line else source
        if item["type"] == "extra_forbidden":
            msg = f"unknown key {_format_loc(loc)!r}"
        elif item["type"] == "missing":
            msg = f"missing required key {_format_loc(loc)!r}"
        else:
            text = str(item["msg"]).removeprefix("Value error, ")
            if item["type"] in ("literal_error", "enum"):
                text += f", got {item['input']!r}"
            msg = f"{_format_loc(loc)}: {text}"
        messages.append(f"{where}: {msg}")
    return "\n".join(messages)


def parse(text: str, source: str = DEFAULT_CONFIG, base_dir: Path = Path(".")) -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'feeds:' list at the top level")
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _node_lines(node, (), lines, source)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, lines, source)) from None
    except LocatedError as exc:
        line = next(
            (lines[exc.loc[:n]] for n in range(len(exc.loc), -1, -1) if exc.loc[:n] in lines), None
        )
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {exc}") from None
    config._base_dir = base_dir
    return config


def load(path: Path) -> Config:
    """Read and validate a config file; relative paths inside resolve against its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    return parse(text, str(path), path.resolve().parent)
