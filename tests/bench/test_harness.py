"""bench/harness.py: verdicts only on a quiet machine, min/median/max, the JSON copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import harness


@pytest.fixture
def quiet(monkeypatch, tmp_path):
    monkeypatch.setattr(harness, "OUT_DIR", tmp_path)
    monkeypatch.setattr(harness, "loadavg", lambda: (0.1, 0.2, 0.3))
    monkeypatch.setattr(harness, "run_queue", lambda seconds=0: 0.0)
    monkeypatch.setattr(harness, "cpu_ticks", lambda: (1000, 0))  # nothing stolen
    monkeypatch.delenv("BENCH_SUITE_LOAD", raising=False)
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


def test_a_busy_run_queue_at_start_gives_no_verdict(quiet, monkeypatch, capsys):
    """The 1-minute average is low (the machine was idle when the run began), but
    something is running now: no verdict."""
    monkeypatch.setattr(harness, "run_queue", lambda seconds=0: harness.CORES + 1.5)
    report = make_report()
    report.target("ours / theirs", report.ratio("ours", "theirs", "req/s"), ">=", 0.9)
    assert report.finish() == 0
    doc = json.loads((quiet / "demo.json").read_text())
    assert doc["targets"][0]["met"] is None and "runnable tasks" in doc["verdict_refused"]
    assert doc["run_queue_before"] == harness.CORES + 1.5


def test_the_suites_start_load_decides_for_every_bench_of_it(quiet, monkeypatch):
    """Under make bench the load when the suite began counts, not the average the
    previous bench left behind."""
    monkeypatch.setattr(harness, "loadavg", lambda: (harness.CORES + 4.0, 1.0, 1.0))
    monkeypatch.setenv("BENCH_SUITE_LOAD", "0.3")
    report = make_report()
    report.target("ours / theirs", report.ratio("ours", "theirs", "req/s"), ">=", 0.9)
    assert report.finish() == 0
    doc = json.loads((quiet / "demo.json").read_text())
    assert doc["verdict_refused"] is None and doc["targets"][0]["met"] is True
    monkeypatch.setenv("BENCH_SUITE_LOAD", str(harness.CORES + 0.5))
    assert make_report().refusal is not None


def test_settle_waits_for_the_run_queue_to_fall(monkeypatch):
    readings = iter([5.0, 4.0, 3.0, 0.5])
    monkeypatch.setattr(harness, "run_queue", lambda seconds=0: next(readings))
    _, runq = harness.settle(60)
    assert runq == 0.5
    with pytest.raises(StopIteration):  # it stopped reading once the queue was quiet
        next(readings)


def test_run_queue_counts_a_busy_process():
    """A real reading of /proc/stat: a process spinning on a core is runnable the whole
    time, so the average over a second is close to one task more than without it."""
    burner = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        assert harness.run_queue(1.0) >= 0.7
    finally:
        burner.kill()
        burner.wait()


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


@pytest.mark.parametrize(("stolen", "verdict"), [(40, True), (500, False)])
def test_cpu_stolen_by_the_hypervisor_is_printed_and_decides(quiet, monkeypatch, capsys,
                                                             stolen, verdict):
    readings = iter([(1000, 10), (3000, 10 + stolen)])  # of 2000 ticks meanwhile
    monkeypatch.setattr(harness, "cpu_ticks", lambda: next(readings))
    report = make_report()
    report.target("ours / theirs (strict)", report.ratio("ours", "theirs", "req/s"), ">=", 1)
    assert report.finish() == (1 if verdict else 0)
    out = capsys.readouterr().out
    assert f"CPU stolen by the hypervisor {100 * stolen / 2000:.1f} %" in out
    doc = json.loads((quiet / "demo.json").read_text())
    assert doc["steal_percent"] == 100 * stolen / 2000
    assert (doc["verdict_refused"] is None) == verdict
    assert ("MISSED" in out) == verdict and ("hypervisor took" in out) != verdict


def test_cpu_ticks_reads_this_machine():
    total, stolen = harness.cpu_ticks()
    assert total > 0 and 0 <= stolen <= total
    assert harness.steal_percent((total, stolen), (total, stolen)) == 0.0
