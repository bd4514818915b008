"""Smoke test of benchmarks/moment_predict.py at tiny settings (eager only: compiling takes tens of seconds)."""

import json

from tests_support import load_script


def test_benchmark_runs_tiny(tmp_path):
    bench = load_script("benchmarks/moment_predict.py")
    report = bench.main(["--datasets", "diabetes", "--widths", "4", "--steps", "3", "--repeats", "3", "--no-compile",
                         "--out", str(tmp_path)])
    methods = [r["method"] for r in report["rows"]]
    assert methods == ["mp-gelu", "gelu-mp", "relu-mp", "mfvi (30 draws)"]
    assert all(r["eager"]["best"] > 0 and r["eager"]["median"] >= r["eager"]["best"] for r in report["rows"])
    assert json.loads((tmp_path / "moment_predict.json").read_text())["rows"] == report["rows"]
    assert "| diabetes | mp-gelu | 45 |" in (tmp_path / "moment_predict.md").read_text()
