"""``avatar bench all`` (``make bench``): runs benchmarks as processes, keeps their results, writes the table."""

from __future__ import annotations

import json

from avatar.cli.bench_all import BEGIN, END, Metric
from tests.conftest import run_avatar


def test_targets_are_judged_both_ways():
    assert Metric("fps", ">= 30").met(31.0) and not Metric("fps", ">= 30").met(29.9)
    assert Metric("ms", "<= 200").met(200) and not Metric("ms", "< 8").met(8)
    assert Metric("x").met(1.0) is None and Metric("fps", ">= 30").met(None) is None


def test_bench_all_runs_writes_the_table_and_keeps_the_rest_of_the_page(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nhand-written text above\n")
    store = tmp_path / "store"
    args = ("bench", "all", "--only", "startup,motion", "--store", store, "--subject", tmp_path / "nothing",
            "--write", page)
    r = run_avatar(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written text above\n") and text.count(BEGIN) == 1
    table = text.split(BEGIN)[1].split(END)[0]
    startup = json.loads((store / "results.json").read_text())["startup"]
    assert startup["result"]["help_s"] > 0 and "cores" in startup["machine"]
    row = next(line for line in table.splitlines() if "`help_s`" in line)
    assert str(startup["result"]["help_s"]) in row and "<= 1" in row and "met" in row
    assert "`avatar bench startup --json`" in table
    assert "motion" in table and "skipped: no fitted subject" in table  # its subject is absent: said, not run
    assert "not run yet" in table  # the benchmarks not asked for
    # again: the block is replaced, not added; the earlier result is kept for what is not rerun
    page.write_text(text + "\nhand-written text below\n")
    r = run_avatar("bench", "all", "--only", "motion", "--store", store, "--subject", tmp_path / "nothing",
                   "--write", page)
    assert r.returncode == 0, r.stderr[-2000:]
    again = page.read_text()
    assert again.count(BEGIN) == 1 and again.endswith("hand-written text below\n")
    assert str(startup["result"]["help_s"]) in again


def test_bench_all_names_an_unknown_benchmark(tmp_path):
    r = run_avatar("bench", "all", "--only", "rastr", "--store", tmp_path)
    assert r.returncode != 0 and "rastr" in r.stderr and "raster" in r.stderr
