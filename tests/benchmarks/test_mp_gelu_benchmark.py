"""Smoke test of benchmarks/mp_gelu.py at tiny settings: every method runs, the JSON and markdown are written."""

import json

from tests_support import load_script


def test_benchmark_runs_tiny(tmp_path, capsys):
    bench = load_script("benchmarks/mp_gelu.py")
    report = bench.main(["--datasets", "diabetes", "--splits", "2", "--steps", "5", "--widths", "4,4",
                         "--methods", "mp-gelu,relu-mp,relu-mp-full,no-such-method", "--out", str(tmp_path),
                         "--tag", "_tiny"])
    rows = report["results"]
    assert [r["method"] for r in rows] == ["mp-gelu", "relu-mp", "relu-mp-full"] * 2
    assert report["settings"]["skipped_methods"] == ["no-such-method"]
    for row in rows:
        assert set(row) >= {"test_ll", "rmse", "crps", "coverage_0.9", "calibration_error", "train_seconds",
                            "predict_seconds"}
        assert 0 <= row["coverage_0.9"] <= 1 and row["rmse"] > 0
    assert json.loads((tmp_path / "mp_gelu_tiny.json").read_text())["results"] == rows
    markdown = (tmp_path / "mp_gelu_tiny.md").read_text()
    assert "| diabetes | relu-mp-full |" in markdown and "skipped" in markdown
