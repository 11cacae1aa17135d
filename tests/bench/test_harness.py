"""bench/harness.py: verdicts only on a quiet machine, min/median/max, the JSON copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import harness


@pytest.fixture
def quiet(monkeypatch, tmp_path):
    monkeypatch.setattr(harness, "OUT_DIR", tmp_path)
    monkeypatch.setattr(harness, "loadavg", lambda: (0.1, 0.2, 0.3))
    return tmp_path


def make_report() -> harness.Report:
    report = harness.Report("demo", "a demo bench", settle_seconds=0)
    for ours, theirs in ((90, 100), (95, 100), (120, 100)):
        report.add("ours", "req/s", ours)
        report.add("theirs", "req/s", theirs)
    return report


def test_quiet_machine_gets_verdicts_and_json(quiet, capsys):
    report = make_report()
    report.target("ours / theirs", report.ratio("ours", "theirs", "req/s"), ">=", 0.9)
    report.target("ours / theirs (strict)", report.ratio("ours", "theirs", "req/s"), ">=", 1)
    assert report.finish() == 1  # one target missed
    out = capsys.readouterr().out
    assert "met" in out and "MISSED" in out
    doc = json.loads((quiet / "demo.json").read_text())
    row = next(r for r in doc["rows"] if r["system"] == "ours")
    assert (row["min"], row["median"], row["max"]) == (90, 95, 120)
    assert [t["met"] for t in doc["targets"]] == [True, False]
    assert doc["load_before"] == [0.1, 0.2, 0.3] and doc["verdict_refused"] is None


def test_loaded_machine_prints_why_and_no_verdict(quiet, monkeypatch, capsys):
    monkeypatch.setattr(harness, "loadavg", lambda: (harness.CORES + 3.0, 1.0, 1.0))
    report = make_report()
    report.target("ours / theirs (strict)", report.ratio("ours", "theirs", "req/s"), ">=", 1)
    assert report.finish() == 0
    out = capsys.readouterr().out
    assert "no verdict" in out and "exceeds" in out and "MISSED" not in out
    doc = json.loads((quiet / "demo.json").read_text())
    assert doc["targets"][0]["met"] is None and "exceeds" in doc["verdict_refused"]


def test_settle_waits_for_the_load_to_fall(monkeypatch):
    readings = iter([5.0, 4.0, 3.0, 1.0])
    monkeypatch.setattr(harness, "loadavg", lambda: (next(readings), 0.0, 0.0))
    monkeypatch.setattr(harness.time, "sleep", lambda s: None)
    harness.settle(60, cores=2)
    with pytest.raises(StopIteration):  # it stopped reading once the load was 1.0
        next(readings)


def test_targets_need_a_known_operator(quiet):
    with pytest.raises(ValueError):
        make_report().target("x", 1.0, ">", 1.0)


def test_paired_ratio_is_the_median_of_same_round_ratios(quiet):
    report = harness.Report("pairs", "pairs", settle_seconds=0)
    # a slow spell hits round 2 of both: the pair stays fair, the medians would not be
    for ours, theirs in ((90, 100), (30, 33), (95, 100)):
        report.add("ours", "req/s", ours)
        report.add("theirs", "req/s", theirs)
    assert report.paired_ratio("ours", "theirs", "req/s") == pytest.approx(0.909, abs=1e-3)
