"""Smoke test of benchmarks/pyro_logistic.py: the probnets runner samples the Pyro model on the plated path, the
summary rows carry ESS, R-hat and the z-score against a reference, and the markdown states the target."""

import numpy as np
import pytest

from tests_support import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/pyro_logistic.py")


def test_probnets_runner_uses_the_plate_and_rows_are_summarised(script):
    x, y = script.load_data()
    cfg = dict(chains=2, warmup=20, samples=20, seed=0)
    samples, info = script._probnets(x[:100], y[:100], cfg, loop=False, compile=False)
    assert samples.shape == (2, 20, 31) and info["batching"] == "plate" and info["compile_seconds"] is None
    row = script.summarise("probnets NUTS (plate)", samples, dict(info, wall_time=1.0), samples)
    assert row["min_ess_bulk"] > 0 and row["max_rhat"] > 0 and row["max_mean_z_vs_numpyro"] == 0.0
    check = dict(target="t", value="v", passed=False)
    text = script.markdown(dict(machine="x", cpus=2, loadavg_start=0, loadavg_end=0, **cfg), [row], check)
    assert "| t | v | FAIL |" in text and np.isfinite(row["ess_per_s"])
