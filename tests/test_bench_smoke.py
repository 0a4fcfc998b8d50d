"""The benchmark harness runs end to end on a tiny farm (correctness only, nothing timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.corpus import Corpus, FarmSpec

ROOT = Path(__file__).parent.parent

SCENARIOS = ("cold", "warm", "churn", "publish", "parser_floor", "reader", "naive", "fetch_only")


def test_corpus_is_deterministic_and_encodes_korean_as_euc_kr() -> None:
    spec = FarmSpec(feeds=40, entries=5)
    first, again = Corpus(spec), Corpus(spec)
    plans = first.plans
    assert [first.render(p.index, 1).body for p in plans] == [
        again.render(p.index, 1).body for p in plans
    ]
    euc = next(p for p in plans if p.encoding == "euc-kr" and p.healthy)
    body = first.render(euc.index, 0).body
    assert body.startswith(b'<?xml version="1.0" encoding="EUC-KR"?>')
    assert "기자" in body.decode("euc_kr")
    changed = first.churned(1)
    assert changed and all(plans[i].healthy for i in changed)
    index = min(changed)
    assert first.render(index, 1).etag != first.render(index, 0).etag


def test_harness_writes_every_scenario_and_target(tmp_path: Path) -> None:
    out = tmp_path / "results"
    tiny = ["--feeds", "5", "--entries", "5", "--runs", "1", "--no-variants", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", *tiny, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((out / "latest.json").read_text())
    for key in SCENARIOS:
        scenario = data["scenarios"][key]
        assert "median" in scenario or scenario.get("skipped"), key
    cold = data["scenarios"]["cold"]["runs"][0]["detail"]
    farm = data["farm"]
    assert cold["new"] == farm["healthy"] * data["spec"]["entries"]
    assert cold["outcomes"]["failed"] == farm["failing"]
    warm = data["scenarios"]["warm"]["runs"][0]["detail"]
    assert warm["outcomes"]["not-modified"] == farm["healthy"] and warm["new"] == 0
    churn = data["scenarios"]["churn"]["runs"][0]["detail"]
    assert churn["new"] == farm["churned"] * data["spec"]["churn_entries"]
    assert data["scenarios"]["publish"]["runs"][0]["detail"]["items"] > 0
    assert data["scenarios"]["parser_floor"]["runs"][0]["detail"]["entries"] == cold["new"]
    names = [t["name"] for t in data["targets"]]
    assert len(names) == 7 and any("parser floor" in n for n in names)
    table = (out / "latest.md").read_text()
    assert "| cold cycle" in table and "| target (issue 8)" in table


def test_memory_bench_runs_a_real_daemon_and_writes_its_peaks(tmp_path: Path) -> None:
    """`python -m bench.memory` on a tiny farm: both cycles, a clean SIGTERM, every field."""
    out = tmp_path / "results"
    tiny = ["--feeds", "5", "--entries", "3", "--quiet", "--time-limit", "240"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", *tiny, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    data = json.loads((out / "memory.json").read_text())
    assert data["complete"] and data["daemon"]["clean_exit"], data["daemon"]
    assert data["daemon"]["exit_code"] == 0 and data["daemon"]["errors_logged"] == 0
    phases = data["phases"]
    assert list(phases) == ["cold", "later", "shutdown"]
    for phase in phases.values():
        assert phase["wall"] is not None and phase["peak_rss_mb"] > 0
    healthy, entries = data["farm"]["healthy"], data["spec"]["entries"]
    assert phases["cold"]["entries"] == healthy * entries
    churned = data["farm"]["churned"] * data["spec"]["churn_entries"]
    assert phases["later"]["entries"] == healthy * entries + churned
    assert data["status"]["entries"] == phases["later"]["entries"]
    target = data["target"]
    assert target["measured_mb"] > 0 and target["met"] is None  # not at full size
    table = (out / "memory.md").read_text()
    assert "| cold cycle" in table and "| target (issue 8)" in table
