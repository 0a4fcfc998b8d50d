"""Config mistakes are reported with the key and its line, never a traceback."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator import config
from tests.conftest import run_cli

GOOD = """\
output:
  dir: out
  title: "광산 뉴스 모음"
  link: "https://news.example.org/"
feeds:
  - name: 한국IT산업뉴스
    url: https://provider.example/rss.xml
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_checks_ok_and_paths_resolve_against_its_folder(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 feeds" in result.stdout
    cfg = config.load(path)
    assert cfg.output_dir == tmp_path / "out"
    assert cfg.store_url == f"sqlite:///{tmp_path / 'aggregator.db'}"
    assert cfg.feeds[0].redistribution == "auto"  # the default
    assert cfg.schedule.interval == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("    redistribution: everything\n", ":8: feeds[0].redistribution: Input should be"),
        ("    colour: red\n", ":8: unknown key 'feeds[0].colour'"),
        ("    interval: soon\n", ":8: feeds[0].interval: must be a duration"),
        ("    timezone: Mars/Olympus\n", ":8: feeds[0].timezone: unknown time zone"),
    ],
)
def test_bad_feed_key_is_named_with_its_line(tmp_path: Path, snippet: str, expected: str) -> None:
    path = write(tmp_path, GOOD + snippet)
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_url_and_non_http_url(tmp_path: Path) -> None:
    text = GOOD + "  - name: b\n  - name: c\n    url: ftp://files.example/feed\n"
    result = run_cli("check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert ":8: missing required key 'feeds[1].url'" in result.stderr
    assert ":10: feeds[2].url: must be an http:// or https:// URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_top_level_key(tmp_path: Path) -> None:
    result = run_cli("check", "--config", str(write(tmp_path, GOOD + "extra: 1\n")))
    assert result.returncode == 2
    assert ":8: unknown key 'extra'" in result.stderr


def test_duplicate_feed_names_and_duplicate_yaml_keys(tmp_path: Path) -> None:
    text = GOOD + "  - name: 한국IT산업뉴스\n    url: https://other.example/rss\n"
    result = run_cli("check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert "feeds[1].name '한국IT산업뉴스' is listed twice" in result.stderr
    text = GOOD + "    url: https://again.example/rss\n"
    result = run_cli("check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert ":8: duplicate key 'url'" in result.stderr


def test_missing_config_is_one_line_error(tmp_path: Path) -> None:
    result = run_cli("poll", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "aggregator: feeds.yaml: config file not found"


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    bad = write(tmp_path, "feeds: [\n  - name: x\n")
    result = run_cli("check", "--config", str(bad))
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "dir.yaml").mkdir()
    result = run_cli("check", "--config", str(tmp_path / "dir.yaml"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_repository_example_config_is_valid() -> None:
    cfg = config.load(Path(__file__).parent.parent / "feeds.yaml")
    assert cfg.feeds


def test_migrate_then_refuse_unknown_schema(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = run_cli("migrate", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    with sqlite3.connect(tmp_path / "aggregator.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    result = run_cli("poll", "--config", str(path))
    assert result.returncode == 3
    assert "schema revision ffff is unknown" in result.stderr
    assert "Traceback" not in result.stderr
