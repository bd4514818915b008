"""Smoke test of benchmarks/vi.py at a tiny size: every configuration runs and the outputs are written."""

import json

from tests_support import load_script


def test_vi_benchmark_writes_json_and_markdown(tmp_path):
    bench = load_script("benchmarks/vi.py")
    result = bench.main(["--in-features", "8", "--widths", "16", "--densities", "0.5", "--num-data", "64",
                         "--batch-size", "32", "--steps", "2", "--rounds", "1", "--pred-samples", "4",
                         "--out", str(tmp_path)])
    assert [row["method"] for row in result["rows"]] == ["mfvi", "ssvi@0.5"]
    assert result["rows"][1]["active"] < result["rows"][0]["active"]
    assert json.loads((tmp_path / "vi.json").read_text())["rows"] == result["rows"]
    assert "ssvi@0.5" in (tmp_path / "vi.md").read_text()
