"""Smoke test of benchmarks/sgmcmc_step.py: every part of the step is timed, the profile lists operations, and the
report files are written."""

import json

from tests_support import load_script


def test_step_parts_are_timed_and_reported(tmp_path):
    script = load_script("benchmarks/sgmcmc_step.py")
    assert script.main(["--repeats", "50", "--no-compile", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sgmcmc_step.json").read_text())
    assert set(result["timings_us"]) == {"torch forward+backward", "probnets value_and_grad", "torch SGLD step",
                                         "probnets SGLD step"}
    assert all(t > 0 for t in result["timings_us"].values())
    assert result["profile"] and all(row["calls_per_step"] > 0 for row in result["profile"])
    assert "probnets SGLD step / torch SGLD step" in (tmp_path / "sgmcmc_step.md").read_text()
