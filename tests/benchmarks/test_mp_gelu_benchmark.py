"""Smoke test of benchmarks/mp_gelu.py at tiny settings: every method (HMC-BNN included) runs, the training-time
section and the targets are computed, the JSON and markdown are written."""

import json

from tests_support import load_script


def test_benchmark_runs_tiny(tmp_path, capsys):
    bench = load_script("benchmarks/mp_gelu.py")
    report = bench.main(["--datasets", "diabetes", "--splits", "2", "--steps", "5", "--widths", "4,4",
                         "--methods", "mp-gelu,gelu-mp,relu-mp,relu-mp-full,mfvi,hmc-bnn,no-such-method",
                         "--hmc-chains", "2", "--hmc-warmup", "10", "--hmc-draws", "5",
                         "--timing-widths", "6", "--timing-steps", "3", "--out", str(tmp_path), "--tag", "_tiny"])
    rows = report["results"]
    assert [r["method"] for r in rows] == ["mp-gelu", "gelu-mp", "relu-mp", "relu-mp-full", "mfvi", "hmc-bnn"] * 2
    assert report["settings"]["skipped_methods"] == ["no-such-method"]
    for row in rows:
        assert set(row) >= {"test_ll", "rmse", "crps", "coverage_0.9", "calibration_error", "train_seconds",
                            "predict_seconds"}
        assert 0 <= row["coverage_0.9"] <= 1 and row["rmse"] > 0
    (timing,) = report["timing"]
    assert timing["width"] == 6 and timing["mp-gelu_train_seconds"] > 0 and timing["gelu-mp_train_seconds"] > 0
    assert [t["target"].split(" (")[0] for t in report["targets"]] == [
        "test LL >= relu-mp's", "test LL >= relu-mp-full's", "prediction >= 10x faster than 30-draw mfvi",
        "test LL - mfvi's >= -2 SE", "training >= 3x faster than relu-mp-full at width 6"]
    gelu = [r["test_ll"] for r in rows if r["method"] == "mp-gelu"]
    relu = [r["test_ll"] for r in rows if r["method"] == "relu-mp"]
    assert report["targets"][0]["pass"] == (sum(gelu) >= sum(relu))
    assert json.loads((tmp_path / "mp_gelu_tiny.json").read_text())["results"] == rows
    markdown = (tmp_path / "mp_gelu_tiny.md").read_text()
    assert "| diabetes | hmc-bnn |" in markdown and "skipped" in markdown and "## Targets" in markdown
