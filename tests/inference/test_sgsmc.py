"""SGSMC (a fresh sampler per minibatch with random-walk MH moves) and its HMC phase, on the linear-Gaussian
partial BNN of ``tests/pbnn_support.py`` (closed forms there)."""

from __future__ import annotations

import math

import torch

from inference.smc import open_horizon, sgsmc
from pbnn_support import exact, linear_data, linear_model


def test_minibatch_evidence_is_unbiased():
    # The MH moves leave every intermediate posterior invariant, so exp(log_evidence) estimates p(y_B; psi)
    # without bias: 200 samplers of 64 particles at once.
    inputs, y = linear_data(6, seed=5)
    model = linear_model(psi=1.2)
    runs, particles = 200, 64
    g = torch.Generator().manual_seed(0)
    state = open_horizon.init(torch.zeros(runs, particles, 1, dtype=torch.float64))
    with torch.no_grad():
        state, info = sgsmc.build_kernel(model, num_mh_steps=3)(state, (inputs, y), g)
    ratio = (info.log_increment - exact(inputs, y, 1.2)["log_p"]).exp()
    assert abs(float(ratio.mean()) - 1.0) / (float(ratio.std()) / math.sqrt(runs)) < 3.5
    # ... and the particles target p(phi | y_B; psi)
    truth = exact(inputs, y, 1.2)
    m = state.particles[..., 0].mean(-1)
    assert abs(float(m.mean()) - truth["post_mean"]) / (float(m.std()) / math.sqrt(runs)) < 3.5


def test_fisher_gradient_within_five_percent():
    inputs, y = linear_data(10, seed=6)
    psi = exact(inputs, y, 0.0)["psi_mle"] + 0.5
    model = linear_model(psi)
    g = torch.Generator().manual_seed(0)
    state = open_horizon.init(torch.zeros(1000, 1, dtype=torch.float64))
    _, info = sgsmc.build_kernel(model, num_mh_steps=3)(state, (inputs, y), g)
    info.surrogate.backward()
    truth = exact(inputs, y, psi)["grad"]
    assert abs(-len(y) * float(model.module.psi.grad) - truth) <= 0.05 * abs(truth)


def test_hmc_phase_samples_the_exact_posterior_at_the_trained_psi():
    inputs, y = linear_data(40, seed=7)
    model = linear_model(psi=0.0)
    post = sgsmc.fit_sgsmc(model, (inputs, y), num_particles=100, num_epochs=1, batch_size=10, lr=5e-2,
                           num_mh_steps=2, hmc_chains=4, hmc_warmup=100, hmc_samples=250, hmc_num_steps=5,
                           hmc_step_size=0.1,
                           seed=0, progress=False)
    psi = float(model.module.psi.detach())
    assert post.psi["psi"].item() == psi and post.info["hmc"] and post.samples.shape == (4, 250, 1)
    assert abs(psi) > 0.05  # psi was trained
    truth = exact(inputs, y, psi)
    row = post.summary().rows[0]
    assert abs(row["mean"] - truth["post_mean"]) / row["mcse_mean"] < 3.5
    assert abs(row["sd"] - truth["post_var"] ** 0.5) / row["mcse_sd"] < 3.5
