"""Smoke test of benchmarks/sgmcmc_resnet.py: the ResNet from ``from_module`` is sampled by SGHMC and structured
SGHMC (default and layer groups) for a few epochs on a digits subset, and the JSON and markdown results are
written with every metric filled in."""

import json

from tests_support import load_script


def test_smoke_run_writes_every_configuration(tmp_path):
    bench = load_script("benchmarks/sgmcmc_resnet.py")
    assert bench.main(["--epochs", "5", "--burnin", "1", "--seeds", "0", "--train", "128", "--out",
                       str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sgmcmc_resnet.json").read_text())
    summary = {s["label"]: s for s in result["summary"]}
    assert set(summary) == {c["label"] for c in bench.CONFIGS}
    # stem, two blocks of two convs, head: 6 layers
    assert [summary[c["label"]]["num_groups"] for c in bench.CONFIGS] == [1, 4, 6]
    for row in result["runs"]:
        assert row["draws"] == 4 and row["divergences"] == 0
        assert all(row[k] is not None for k in bench.METRICS), row
        assert 0.0 <= row["accuracy"] <= 1.0 and row["iat"] > 0
    assert "| structured SGHMC (layer groups) |" in (tmp_path / "sgmcmc_resnet.md").read_text()
