"""``inference.sample(..., compile=True)``: the compiled gradient gives the eager run's draws and reports its cost."""

from __future__ import annotations

import pytest
import torch

import inference
from probnets import BNN, Bernoulli
from tests_support import make_regression

SETTINGS = dict(method="hmc", num_chains=2, num_warmup=4, num_samples=5, seed=3, progress=False,
                check_convergence=False)


def test_compiled_run_equals_eager_run_and_reports_compile_time():
    x, y = make_regression(17, 3)
    data = (x, (y > 0).double())
    model = BNN(3, [4], activation="silu", likelihood=Bernoulli())  # no fused kernel for SiLU
    eager = inference.sample(model, data, **SETTINGS)
    compiled = inference.sample(model, data, compile=True, **SETTINGS)
    assert compiled.info["compile_seconds"] > 0 and compiled.info["compile_fallback"] is None
    assert "compile_seconds" not in eager.info
    # the same trajectories: the gradients differ only by rounding of reordered sums (1e-16 relative), which
    # the warm-up's step-size adaptation amplifies to ~1e-8 over these 9 iterations; a wrong log density
    # (temperature, data, chains) moves the draws by orders of magnitude more
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=1e-6, atol=1e-6)


def test_compile_needs_the_full_batch():
    x, y = make_regression(8, 3)
    with pytest.raises(ValueError, match="compile=True needs the full-batch"):
        inference.sample(BNN(3, [4]), (x, y), method="sgld", batch_size=4, compile=True, progress=False)
    with pytest.raises(TypeError, match="compile must be True or False"):
        inference.sample(BNN(3, [4]), (x, y), compile=1, progress=False)
