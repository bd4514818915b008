"""SG-MCMC on a partial BNN (``probnets.partial_bnn``): only ``phi`` is sampled, ``psi`` stays as it is.

With the last linear layer stochastic, fixed hidden features ``h(x)`` (``psi``), a Gaussian likelihood of known
noise and a ``N(0, 1)`` prior, the posterior of ``phi = (w, b)`` is Bayesian linear regression's, with mean
``A^-1 H^T y / s^2`` and ``A = I + H^T H / s^2`` (``H = [h(x), 1]``). Both SGHMC and structured SGHMC (one group
per coordinate; the mean-field of a Gaussian has the posterior's mean) must hit that mean from minibatches of 20:
|chain mean - exact| / MCSE < 3.5 on every coordinate, fixed seed. A short history (100 iterates) keeps the
structured sampler's lag behind its own mean-field fixed point small within the warm-up.
"""

import pytest
import torch

import inference
from inference import diagnostics
from probnets import Gaussian
from probnets.partial_bnn import partial_mlp

NOISE = 1.0


@pytest.fixture(scope="module")
def problem():
    generator = torch.Generator().manual_seed(0)
    model = partial_mlp((2, 8, 2, 1), 2, activation="tanh", likelihood=Gaussian(noise_scale=NOISE),
                        generator=generator, dtype=torch.float64)
    x = torch.randn(200, 2, generator=generator, dtype=torch.float64)
    y = torch.sin(x[:, 0]) + NOISE * torch.randn(200, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        h = torch.cat([model.module[:-1](x), torch.ones(200, 1, dtype=x.dtype)], 1)
    precision = torch.eye(h.shape[1], dtype=x.dtype) + h.T @ h / NOISE**2
    return model, x, y, torch.linalg.solve(precision, h.T @ y / NOISE**2)


@pytest.mark.parametrize("method, options", [("sghmc", {}),
                                             ("structured-sghmc", {"num_groups": 3, "history_length": 100})])
def test_minibatch_sgmcmc_samples_phi_to_the_exact_posterior_mean_and_leaves_psi(problem, method, options):
    model, x, y, exact = problem
    psi = [p.detach().clone() for p in model.psi_parameters()]
    post = inference.sample(model, (x, y), method=method, batch_size=20, num_chains=16, num_warmup=2000,
                            num_samples=4000, thin=5, seed=0, progress=False, check_convergence=False,
                            print_summary=False, **options)
    assert post.samples.shape == (16, 800, 3) and post.num_divergences == 0
    assert all(torch.equal(before, after) for before, after in zip(psi, model.psi_parameters()))
    z = (post.samples.mean((0, 1)) - exact) / diagnostics.mcse_mean(post.samples)
    assert bool((z.abs() < 3.5).all()), z


def test_layer_groups_of_a_single_stochastic_layer_are_one_group(problem):
    """``phi`` is one layer: structured SGHMC with ``groups="layer"`` is ordinary SGHMC, bit for bit."""
    model, x, y, _ = problem
    runs = [inference.sample(model, (x, y), method=method, batch_size=20, num_chains=2, num_warmup=20,
                             num_samples=20, seed=1, progress=False, check_convergence=False, print_summary=False,
                             **options) for method, options in [("sghmc", {}), ("structured-sghmc",
                                                                                {"groups": "layer"})]]
    assert runs[1].info["num_groups"] == 1
    assert torch.equal(runs[0].samples, runs[1].samples)
