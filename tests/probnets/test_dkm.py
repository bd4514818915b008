"""Fully connected deep kernel machines: Gram-form kernels against feature-space formulas, the nu -> inf limit
(the NNGP log marginal likelihood), finite nu, sparse = full rank with inducing points at the data, the 2-D sine
toy (representation learning beats the fixed-kernel limit), shapes, dtypes and bad input."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

import inference
from probnets import Predictive
from probnets.datasets import sine_2d
from probnets.dkm import FullRankDKM, Grams, ReluKernel, SparseDKM, SquaredExponentialKernel, kl_gram
from conditioned_contract import ConditionedModelContract

EXACT_KERNELS = {  # fixed hyperparameters, no jitter: for comparisons with closed forms
    "se": partial(SquaredExponentialKernel, lengthscale=1.3, variance=0.8, learned=False, jitter=0.0,
                  dtype=torch.float64),
    "relu": partial(ReluKernel, weight_var=1.5, bias_var=0.2, learned=False, jitter=0.0, dtype=torch.float64),
}
FIXED_KERNELS = {  # fixed hyperparameters with the default jitter: for optimisation on ill-conditioned toys
    "se": partial(SquaredExponentialKernel, lengthscale=1.3, variance=0.8, learned=False, dtype=torch.float64),
    "relu": partial(ReluKernel, weight_var=1.5, bias_var=0.2, learned=False, dtype=torch.float64),
}


def _toy(num: int = 60, dim: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-2, 2, num, dtype=torch.float64).unsqueeze(-1) if dim == 1 else \
        torch.randn(num, dim, generator=g, dtype=torch.float64)
    x = torch.cat([x, torch.ones(num, 1, dtype=torch.float64)], -1)  # a constant feature: distinct directions
    y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(num, generator=g, dtype=torch.float64)
    return x, y


def _kl_terms(model: FullRankDKM) -> list[float]:
    grams = model.grams()
    return [kl_gram(grams[l], model.stack.kernels[l - 1].matrix(grams[l - 1])).item() for l in range(1, len(grams))]


@pytest.mark.parametrize("name", ["se", "relu"])
def test_gram_kernels_match_feature_space_formulas(name):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    gram = x @ x.T / 3
    kernel = EXACT_KERNELS[name]()
    if name == "se":
        expected = 0.8 * torch.exp(-torch.cdist(x, x).square() / 3 / (2 * 1.3**2))
    else:  # the arc-cosine formula of the method notes
        d = gram.diagonal()
        norm = (d.unsqueeze(-1) * d).sqrt()
        theta = torch.acos((gram / norm).clamp(-1, 1))
        expected = 1.5 / math.pi * ((norm.square() - gram.square()).clamp_min(0).sqrt() + (math.pi - theta) * gram) + 0.2
    torch.testing.assert_close(kernel.matrix(gram), expected, rtol=1e-10, atol=1e-12)
    # the triple path gives the same numbers for test points equal to the inducing points
    triple = kernel(Grams(gram, gram[:4], gram.diagonal()[:4], gram.new_zeros(())))
    torch.testing.assert_close(triple.ti, expected[:4], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(triple.t, expected.diagonal()[:4], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["se", "relu"])
def test_large_nu_gives_the_nngp_grams_and_log_marginal_likelihood(name):
    """With nu = 1e6 the optimum Grams are K(G_{l-1}) to 1e-3 and the objective is the NNGP LML up to a gap that
    vanishes like 1/nu (tenfold smaller from nu = 1e5 to 1e6; the optimum is never below the NNGP value, which
    G = K attains). The Grams start away from K (scaled by 1.5^2)."""
    x, y = _toy()
    gaps = {}
    for nu in (1e5, 1e6):
        model = FullRankDKM(x, y, kernel=FIXED_KERNELS[name], nu=nu, noise_var=0.01, learn_noise=False)
        model.objective()
        with torch.no_grad():
            for layer in model.stack.layers:
                layer.V.mul_(1.5)
        inference.fit(model, (x, y), num_steps=400)
        gaps[nu] = (model.objective().total - model.nngp_log_marginal_likelihood()).item()
    grams = model.grams()
    for l in range(1, len(grams)):
        assert (grams[l] - model.stack.kernels[l - 1].matrix(grams[l - 1])).abs().max() < 1e-3
    assert 0 <= gaps[1e6] < 0.1
    assert 5 < gaps[1e5] / gaps[1e6] < 20


def test_finite_nu_objective_exceeds_the_nngp_value_and_kl_grows_as_nu_falls():
    x, y = _toy()
    kls, objectives, nngp = [], [], None
    for nu in (100.0, 10.0, 1.0, 0.1):
        model = FullRankDKM(x, y, kernel=FIXED_KERNELS["se"], nu=nu, noise_var=0.01, learn_noise=False)
        nngp = model.nngp_log_marginal_likelihood().item()
        assert model.objective().total.item() == pytest.approx(nngp, abs=1e-9)  # G = K is where it starts
        inference.fit(model, (x, y), num_steps=300)
        objectives.append(model.objective().total.item())
        kls.append(sum(_kl_terms(model)))
    assert all(value > nngp + 1.0 for value in objectives)  # representation learning pays on this toy
    assert all(a < b for a, b in zip(objectives, objectives[1:]))  # a weaker regulariser: a higher optimum
    assert all(a < b for a, b in zip(kls, kls[1:]))  # the Grams move further from K(G_{l-1}) as nu falls


@pytest.mark.parametrize("name", ["se", "relu"])
def test_sparse_with_inducing_points_at_the_data_equals_the_full_rank_objective(name):
    x, y = _toy(num=20, dim=4, seed=3)
    full = FullRankDKM(x, y, kernel=EXACT_KERNELS[name], nu=1.0, noise_var=0.05, learn_noise=False)
    inference.fit(full, (x, y), num_steps=50)  # Grams away from K
    sparse = SparseDKM(x, 1, kernel=EXACT_KERNELS[name], nu=1.0, noise_var=0.05, learn_inducing=False,
                       whitened=True)
    sparse.stack.load_state_dict(full.stack.state_dict())
    with torch.no_grad():  # the optimal q(F) for a Gaussian likelihood: the GP posterior under K(G_L)
        kernel = sparse.stack(x[:0]).ii
        cov = kernel + 0.05 * torch.eye(20, dtype=x.dtype)
        posterior_cov = kernel - kernel @ torch.linalg.solve(cov, kernel)
        sparse.output.mu.copy_(kernel @ torch.linalg.solve(cov, y.unsqueeze(-1)))
        sparse.output.L.copy_(torch.linalg.cholesky(posterior_cov) * math.sqrt(20))
    full_value = full.objective()
    sparse_value = sparse.objective(x, y)
    assert sparse_value.total.item() == pytest.approx(full_value.total.item(), abs=1e-6)
    assert full_value.penalty.item() > 1e-3  # the Gram layers are really off K


def test_nu_inf_prediction_is_the_nngp_gp_posterior():
    """nu = inf: the conditioning through the layers must reproduce the GP predictive under the NNGP kernel of
    train and test points together."""
    x, y = _toy(num=30, dim=2, seed=4)
    x_test = _toy(num=7, dim=2, seed=5)[0]
    model = FullRankDKM(x, y, kernel=EXACT_KERNELS["relu"], nu=math.inf, noise_var=0.05, learn_noise=False)
    pred = model.predict(x_test)
    both = torch.cat([x, x_test])
    gram = both @ both.T / both.shape[1]
    for kernel in model.stack.kernels:
        gram = kernel.matrix(gram)
    k_train, k_cross = gram[:30, :30] + 0.05 * torch.eye(30, dtype=x.dtype), gram[30:, :30]
    mean = k_cross @ torch.linalg.solve(k_train, y)
    var = gram[30:, 30:].diagonal() - (k_cross * torch.linalg.solve(k_train, k_cross.T).T).sum(-1) + 0.05
    torch.testing.assert_close(pred.mean.squeeze(-1), mean, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(pred.variance.squeeze(-1), var, rtol=1e-8, atol=1e-10)


def _sine_test_log_likelihood(nu: float, *, num_train: int, num_layers: int, epochs: int, batch_size: int,
                              seed: int) -> float:
    data = sine_2d(num_train, 1000, seed=seed)
    g = torch.Generator().manual_seed(seed)
    inducing = data.x_train[torch.randperm(num_train, generator=g)[:50]]
    model = SparseDKM(inducing, 1, num_layers=num_layers, kernel="relu", nu=nu, generator=g)
    inference.fit(model, (data.x_train, data.y_train), num_epochs=epochs, batch_size=batch_size, generator=g)
    return model.predict(data.x_test).log_prob(data.y_test.unsqueeze(-1)).mean().item()


def test_sine_toy_representation_learning_beats_the_fixed_kernel_limit():
    """Fast version of the 2-D sine toy (500 points, 2 layers): nu = 1 beats nu = inf in test log-likelihood
    by far more than the Monte Carlo spread of a 1000-point test mean (about 0.03 nats)."""
    settings = dict(num_train=500, num_layers=2, epochs=100, batch_size=50, seed=0)
    learned = _sine_test_log_likelihood(1.0, **settings)
    fixed = _sine_test_log_likelihood(math.inf, **settings)
    assert learned > fixed + 0.15


def test_sine_toy_full_size():
    """The reference toy's size: 1000 points, 50 inducing points, 4 layers (one seed: the margin is ten times
    the Monte Carlo spread of the test mean)."""
    settings = dict(num_train=1000, num_layers=4, epochs=100, batch_size=100, seed=0)
    assert _sine_test_log_likelihood(1.0, **settings) > _sine_test_log_likelihood(math.inf, **settings) + 0.3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("likelihood,num_outputs", [("gaussian", 1), ("gaussian", 2), ("categorical", 3)])
def test_sparse_shapes_dtypes_and_training(dtype, likelihood, num_outputs):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g, dtype=dtype)
    if likelihood == "categorical":
        y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    else:
        y = torch.stack([x[:, 0].sin(), x[:, 1].cos()], -1)[:, :num_outputs].squeeze(-1)
    model = SparseDKM(x[:10], num_outputs, likelihood=likelihood, mc_samples=20, generator=g)
    assert all(p.dtype == dtype for p in model.parameters())
    history = inference.fit(model, (x, y), num_epochs=30, batch_size=32, lr=0.02, generator=g).fit_result.epoch_losses
    assert all(math.isfinite(h) for h in history) and history[-1] < history[0]
    pred = model.predict(x[:5], generator=g)
    assert isinstance(pred, Predictive) and pred.f.dtype == dtype
    if likelihood == "categorical":
        assert pred.probs.shape == (5, num_outputs)
        torch.testing.assert_close(pred.probs.sum(-1), torch.ones(5, dtype=dtype))
    else:
        assert pred.mean.shape == (5, num_outputs) and bool((pred.variance > 0).all())
    # gradients reach the inducing inputs and every Gram layer
    model.zero_grad()
    model.loss(x[:8], y[:8], 64, generator=g).backward()
    assert model.stack.inputs.inducing.grad is not None
    assert all(layer.V.grad is not None and bool(layer.V.grad.abs().sum() > 0) for layer in model.stack.layers)


def test_full_rank_learns_hyperparameters_and_predicts():
    x, y = _toy()
    model = FullRankDKM(x, y, kernel="se", nu=1.0, noise_var=1.0)
    start = model.objective().total.item()
    history = (-inference.fit(model, (x, y), num_steps=200).fit_result.losses).tolist()  # objective per evaluation
    assert history[-1] > start + 10
    x_test = torch.cat([torch.linspace(-1.9, 1.9, 50, dtype=torch.float64).unsqueeze(-1),
                        torch.ones(50, 1, dtype=torch.float64)], -1)
    pred = model.predict(x_test)
    assert pred.mean.shape == (50, 1)
    assert (pred.mean.squeeze(-1) - torch.sin(3 * x_test[:, 0])).square().mean().sqrt() < 0.1


def test_bad_input():
    x, y = _toy(num=10)
    with pytest.raises(ValueError, match="nu"):
        FullRankDKM(x, y, nu=0.0)
    with pytest.raises(ValueError, match="nu"):
        FullRankDKM(x, y, num_layers=2, nu=[1.0])
    with pytest.raises(ValueError, match="kernel"):
        FullRankDKM(x, y, kernel="matern")
    with pytest.raises(TypeError, match="kernel"):
        FullRankDKM(x, y, kernel=ReluKernel())
    with pytest.raises(ValueError, match="y must have shape"):
        FullRankDKM(x, y[:5])
    with pytest.raises(ValueError, match="NaN"):
        FullRankDKM(x, y.clone().fill_(math.nan))
    with pytest.raises(ValueError, match="x must have shape"):
        FullRankDKM(x[:0], y[:0])
    with pytest.raises(TypeError, match="x must be a floating-point"):
        FullRankDKM(x.long(), y)
    with pytest.raises(ValueError, match="noise_var"):
        FullRankDKM(x, y, noise_var=-1.0)
    with pytest.raises(ValueError, match="num_layers"):
        FullRankDKM(x, y, num_layers=0)
    with pytest.raises(ValueError, match="jitter"):
        SquaredExponentialKernel(jitter=-1)
    model = SparseDKM(x[:4], 1)
    with pytest.raises(ValueError, match="x must have shape B x 2"):
        model.predict(x[:, :1])
    with pytest.raises(TypeError, match="dtype"):
        model.predict(x.float())
    with pytest.raises(ValueError, match="likelihood"):
        SparseDKM(x[:4], 1, likelihood="poisson")
    with pytest.raises(ValueError, match="num_outputs"):
        SparseDKM(x[:4], 1, likelihood="categorical")
    with pytest.raises(ValueError, match="labels"):
        SparseDKM(x[:4], 3, likelihood="categorical").loss(x, torch.zeros(3, dtype=torch.long), 10)


# --------------------------------------------------------------------------------------------------
# The conditioned-model contract


class TestFullRankDKMContract(ConditionedModelContract):
    fit_options = {"num_steps": 3}
    predicts_before_fit = conditioned_at_construction = True

    def make_model(self, dtype):
        x, y = _toy(num=12)
        x, y = x.to(dtype), y.to(dtype)
        return FullRankDKM(x, y, kernel="se", nu=1.0), x, y, x[:5] + 0.1


class TestSparseDKMContract(ConditionedModelContract):
    fit_options = {"num_epochs": 2, "batch_size": 8}
    predicts_before_fit = True

    def make_model(self, dtype):
        x, y = _toy(num=20, dim=2)
        x, y = x.to(dtype), y.to(dtype)
        return SparseDKM(x[:5], 1, mc_samples=5, generator=torch.Generator().manual_seed(0)), x, y, x[:4] + 0.1
