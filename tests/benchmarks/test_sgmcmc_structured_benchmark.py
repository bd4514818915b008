"""Smoke test of benchmarks/sgmcmc_structured.py: one structured configuration for a few epochs gives finite cost,
IAT and NLL figures, and the markdown table lists it."""

import math

from tests_support import load_script


def test_measure_fills_every_column():
    bench = load_script("benchmarks/sgmcmc_structured.py")
    label, method, options = next(c for c in bench.CONFIGS if c[0] == "structured dropout p=0.5 L=1")
    # 5 kept epochs: enough draws for a bulk ESS
    row = bench.measure(label, method, options, seed=0, epochs=6, burnin=1)
    assert row["num_groups"] == 4
    assert all(math.isfinite(row[c]) and row[c] > 0 for c in bench.COLUMNS[2:]), row
    assert f"| {label} | 4 |" in bench.markdown([row], (0.0, 0.0))
