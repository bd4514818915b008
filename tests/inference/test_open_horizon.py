"""Open-horizon SMC for partial BNNs against the closed forms of the linear-Gaussian partial BNN
(``tests/pbnn_support.py``): evidence, Fisher-identity gradient, Kalman filter of the jittered model, GLS psi."""

from __future__ import annotations

import math

import torch

from inference.smc import open_horizon
from inference.smc.fisher_training import resolve_move
from pbnn_support import batch_rows, exact, kalman, linear_data, linear_model


def test_evidence_is_unbiased_without_moves():
    # 400 independent filters of 64 particles at once, one datum per step: E[Z_hat] = p(y; psi) exactly.
    inputs, y = linear_data(12, seed=1)
    model = linear_model(psi=1.0)
    runs, particles = 400, 64
    g = torch.Generator().manual_seed(0)
    step = open_horizon.build_kernel(model, None)
    state = open_horizon.init(model.init_theta(runs * particles, generator=g, dtype=torch.float64)
                              .reshape(runs, particles, 1))
    with torch.no_grad():
        for k in range(len(y)):
            state, info = step(state, (inputs[k:k + 1], y[k:k + 1]), g)
    ratio = (state.log_evidence - exact(inputs, y, 1.0)["log_p"]).exp()
    mcse = float(ratio.std()) / math.sqrt(runs)
    assert abs(float(ratio.mean()) - 1.0) / mcse < 3.5
    assert bool(info.resampled.all()) and int(info.num_nonfinite.sum()) == 0


def test_fisher_identity_gradient_within_five_percent():
    inputs, y = linear_data(20, seed=2)
    truth = exact(inputs, y, 0.0)
    psi = truth["psi_mle"] + 0.5
    model = linear_model(psi)
    truth = exact(inputs, y, psi)
    g = torch.Generator().manual_seed(0)
    state = open_horizon.init(model.init_theta(1000, generator=g, dtype=torch.float64))
    _, info = open_horizon.build_kernel(model, None)(state, (inputs, y), g)
    info.surrogate.backward()
    estimate = -len(y) * float(model.module.psi.grad)  # surrogate = -(1/|B|) sum_i W^i log p(y_B | phi^i; psi)
    assert abs(estimate - truth["grad"]) <= 0.05 * abs(truth["grad"])


def test_jittered_filter_matches_kalman_filter():
    # Random-walk jitter q before every minibatch: 100 filters of 500 particles at once against the Kalman filter
    # of the same state-space model (evidence unbiased in Z; final filtering mean and variance).
    inputs, y = linear_data(60, seed=3)
    model = linear_model(psi=1.4)
    runs, particles, q = 100, 500, 1e-3
    batches = batch_rows(60, 10, 12)
    log_z, mean, var = kalman(inputs, y, batches, [1.4] * len(batches), q)
    g = torch.Generator().manual_seed(0)
    step = open_horizon.build_kernel(model, resolve_move(model, "rw", q))
    state = open_horizon.init(model.init_theta(runs * particles, generator=g, dtype=torch.float64)
                              .reshape(runs, particles, 1))
    with torch.no_grad():
        for rows in batches:
            state, _ = step(state, (inputs[rows], y[rows]), g)
    ratio = (state.log_evidence - log_z).exp()
    phi, w = state.particles[..., 0], state.log_weights.exp()
    m = (w * phi).sum(-1)
    v = (w * (phi - m[:, None]) ** 2).sum(-1)
    for estimate, truth in ((ratio, 1.0), (m, mean), (v, var)):
        assert abs(float(estimate.mean()) - truth) / (float(estimate.std()) / math.sqrt(runs)) < 3.5


def test_training_reaches_gls_psi_and_the_posterior():
    inputs, y = linear_data(200, seed=4)
    model = linear_model(psi=0.0)
    path = []
    post = open_horizon.fit_open_horizon(model, (inputs, y), num_particles=1000, num_epochs=40, batch_size=20,
                                         lr=1e-2, move="rw", move_scale=1e-4, seed=0, progress=False,
                                         callback=lambda i, loss: path.append(float(model.module.psi.detach())))
    truth = exact(inputs, y, exact(inputs, y, 0.0)["psi_mle"])
    psi_bar = sum(path[-100:]) / 100
    assert abs(psi_bar - truth["psi_mle"]) < truth["psi_se"]
    phi, w = post.samples[0, :, 0], post.log_weights[0].exp()
    m = float((w * phi).sum())
    v = float((w * (phi - m) ** 2).sum())
    assert abs(m - truth["post_mean"]) < truth["post_var"] ** 0.5
    assert 0.5 < v / truth["post_var"] < 2.0
    assert post.info["skipped_steps"] == 0 and post.info["num_steps"] == 400
