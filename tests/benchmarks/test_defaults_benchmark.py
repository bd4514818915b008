"""Smoke test of benchmarks/defaults.py: the CLI and estimator runs are parsed into rows, the target table checks
convergence, time and Boston's NLL against the reference, and a failing run is recorded, not raised."""

import json

from tests_support import load_script


def test_tiny_runs_are_reported_with_their_targets(tmp_path):
    script = load_script("benchmarks/defaults.py")
    assert script.main(["--datasets", "diabetes,breast_cancer", "--modes", "defaults", "--fit-options",
                        "--chains 2 --warmup 10 --samples 10", "--classifier-options",
                        '{"num_chains": 2, "num_warmup": 10, "num_samples": 10}', "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "defaults.json").read_text())
    assert [(r["data"], r["mode"]) for r in result["runs"]] == [("diabetes", "defaults"), ("breast_cancer", "defaults")]
    for row in result["runs"]:
        assert row["grad_evals"] > 0 and row["wall_time"] > 0 and row["nll_se"] > 0
    assert [c["passed"] for c in result["targets"]] == [False, False]  # 10 draws cannot converge


def test_boston_target_and_failed_runs():
    script = load_script("benchmarks/defaults.py")
    converged = dict(max_rhat=1.005, min_ess_bulk=800.0, min_ess_tail=500.0, wall_time=100.0)
    rows = [dict(data="boston", mode="defaults", nll=2.50, nll_se=0.1, **converged),
            dict(data="boston", mode="reference", nll=2.45, nll_se=0.08, **converged),
            dict(data="concrete", mode="defaults", error="boom")]
    checks = {c["target"]: c["passed"] for c in script.targets(rows)}
    assert checks == {"boston defaults: converged in <= 300 s": True,
                      "boston: |NLL(defaults) - NLL(reference)| <= SE(reference)": True}
    rows[0]["nll"] = 2.60
    assert not script.targets(rows)[-1]["passed"]
    assert "failed: boom" in script.markdown(dict(machine="x", cpus=2, loadavg_start=0, loadavg_end=0), rows, [])
