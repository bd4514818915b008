"""The Nagler bias/variance diagnostic of examples/pfn_gp_regression.py: the reference table of the
Nadaraya-Watson smoother, and the pretrained PFN's variance falling with the training-set size."""

import math

import pytest
import torch

from probnets.pfn import load_pretrained
from tests_support import load_script


@pytest.fixture(scope="module")
def diagnostics():
    return load_script("examples/pfn_gp_regression.py")


def test_nadaraya_watson_reproduces_the_reference_bias_variance_table(diagnostics):
    """Gaussian kernel, bandwidth 0.2 (fixed) or 0.2 (n / 10)^-1/5 (shrinking), 400 replications: the reference
    table of the method notes, within 3.5 standard errors of the difference of two Monte Carlo estimates."""
    bias_variance, nadaraya_watson = diagnostics.bias_variance, diagnostics.nadaraya_watson
    sizes = [10, 100, 1000, 10_000]
    fixed = bias_variance(nadaraya_watson(0.2), sizes, generator=torch.Generator().manual_seed(0))
    shrinking = bias_variance(nadaraya_watson(0.2, shrink=0.2), sizes, generator=torch.Generator().manual_seed(1))
    reference = {"fixed_bias": [-0.476, -0.445, -0.437, -0.436], "fixed_var": [2.6e-2, 2.6e-3, 2.6e-4, 2.2e-5],
                 "shrinking_bias": [-0.476, -0.253, -0.117, -0.049]}
    for result, key in ((fixed, "fixed_bias"), (shrinking, "shrinking_bias")):
        for mine, se, ref in zip(result.bias.tolist(), result.bias_se.tolist(), reference[key]):
            assert abs(mine - ref) < 3.5 * math.sqrt(2) * se + 0.0005, (key, mine, ref, se)
    for mine, ref in zip(fixed.variance.tolist(), reference["fixed_var"]):
        assert abs(mine / ref - 1) < 0.35  # relative standard error of a 400-draw variance: 7%
    assert abs(fixed.bias[-1] - fixed.bias[1]) < 0.02 and abs(shrinking.bias[-1]) < abs(shrinking.bias[1]) / 3


def test_pfn_diagnostics_variance_falls_with_n(diagnostics, tmp_path):
    model = load_pretrained("gp-rbf-1d")
    result = diagnostics.bias_variance(diagnostics.pfn_predictor(model), [5, 20, 50], num_replications=200,
                                       generator=torch.Generator().manual_seed(4))
    assert result.variance[2] < result.variance[0] / 3
    diagnostics.plot_bias_variance({"PFN gp-rbf-1d": result}, tmp_path / "bv.png")
    assert (tmp_path / "bv.png").stat().st_size > 0
