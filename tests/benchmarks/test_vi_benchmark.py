"""Smoke test of benchmarks/vi.py at a tiny size: every (method, seed) runs in its own process, the summary, the
targets and the outputs are written."""

import json

from tests_support import load_script


def test_vi_benchmark_writes_json_markdown_and_targets(tmp_path):
    bench = load_script("benchmarks/vi.py")
    report = bench.main(["--widths", "16", "--densities", "0.5", "--seeds", "0", "--epochs", "1",
                         "--batch-size", "64", "--num-train", "128", "--pred-samples", "4", "--out", str(tmp_path)])
    assert [(r["method"], r["seed"]) for r in report["rows"]] == [("mfvi", 0), ("ssvi@0.5", 0)]
    dense, sparse = report["summary"]["mfvi"], report["summary"]["ssvi@0.5"]
    assert sparse["params"] < dense["params"]
    for row in report["rows"]:
        assert 0 <= row["accuracy"] <= 1 and row["nll"] > 0 and 0 <= row["ece"] <= 1
        assert row["train_seconds"] > 0 and row["predict_seconds"] > 0
    compression = next(t for t in report["targets"] if t["target"].startswith("compression"))
    assert compression["value"] == dense["params"] / sparse["params"] and compression["pass"] is False
    assert len(report["targets"]) == 6
    assert json.loads((tmp_path / "vi.json").read_text())["rows"] == report["rows"]
    markdown = (tmp_path / "vi.md").read_text()
    assert "| ssvi@0.5 | compression >= 10x |" in markdown and "FAIL" in markdown
