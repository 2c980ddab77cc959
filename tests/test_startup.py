"""`avatar bench startup` reports the start-up times docs/benchmarks.md records."""

from __future__ import annotations

import json

from tests.conftest import run_avatar


def test_bench_startup_reports_both_commands():
    r = run_avatar("bench", "startup", "--repeats", "1", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["repeats"] == 1 and "cores" in result["machine"]
    for key in ("help_s", "config_s"):
        assert 0 < result[key] < 60, key
