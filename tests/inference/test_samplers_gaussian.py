"""Monte Carlo standard-error z-tests of every sampler against Gaussians with known moments.

For a statistic ``q`` with known expectation, ``z = (mean(q) - truth) / MCSE(q)`` must satisfy
``|z| < 3.5``. Each test checks a handful of statistics (means and variances along the extreme and a
middle coordinate), so the family-wise false-alarm rate of a correct sampler stays well below 1%.
"""

import pytest

import inference
from inference import diagnostics
from inference.testing import correlated_gaussian_2d, ill_conditioned_gaussian
from tests_support import z_scores

Z_BOUND = 3.5
SETTINGS = {
    "nuts": dict(num_chains=4, num_warmup=500, num_samples=1000),
    "hmc": dict(num_chains=4, num_warmup=500, num_samples=1000, num_steps=16),
    "chees": dict(num_chains=32, num_warmup=400, num_samples=300),
}


def check(post, target, coords):
    z = z_scores(post.samples, target.mean, target.cov.diagonal(), coords)
    assert all(abs(v) < Z_BOUND for v in z.values()), z
    assert post.num_divergences == 0


@pytest.mark.parametrize("method", ["nuts", "hmc", "chees"])
def test_correlated_2d_gaussian(method):
    target = correlated_gaussian_2d(0.9, (1.0, 10.0))
    post = inference.sample(target, dim=2, method=method, seed=11, progress=False, **SETTINGS[method])
    check(post, target, [0, 1])
    product = post.samples[..., 0] * post.samples[..., 1]
    z_cov = (product.mean() - target.cov[0, 1]) / diagnostics.mcse_mean(product)
    assert abs(float(z_cov)) < Z_BOUND


@pytest.mark.parametrize("method", ["nuts", "hmc", "chees"])
def test_ill_conditioned_50d_gaussian(method):
    """The extreme and middle coordinates at the usual bound, and all 50 coordinates (100 z-scores) at the
    Bonferroni-corrected bound 4 (false-alarm rate of a correct sampler about 0.6%)."""
    target = ill_conditioned_gaussian(50, condition_number=1e4)
    post = inference.sample(target, dim=50, method=method, seed=12, progress=False, **SETTINGS[method])
    check(post, target, [0, 25, 49])
    z = z_scores(post.samples, target.mean, target.cov.diagonal(), range(50))
    assert all(abs(v) < 4.0 for v in z.values()), {k: v for k, v in z.items() if abs(v) >= 4.0}


def test_nuts_dense_mass_on_rotated_gaussian():
    target = ill_conditioned_gaussian(10, condition_number=1e3, rotate=True)
    post = inference.sample(target, dim=10, method="nuts", dense_mass=True, seed=13, progress=False,
                            num_chains=4, num_warmup=500, num_samples=500)
    var = target.cov.diagonal()
    check(post, target, [int(var.argmin()), int(var.argmax())])
    # With the dense metric adapted, trajectories are short.
    assert float(post.sample_stats["n_steps"].float().mean()) < 16
