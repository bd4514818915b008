"""NNGP kernels: the contract suite per kernel class, closed forms, and agreement with wide random networks.

Monte Carlo checks. The kernel is the covariance of the network output over random weights. Per random network
we average the readout layer out exactly (given the last hidden layer, the output covariance is
``sigma_b^2 + sigma_w^2 phi(h) . phi(h') / width``), which leaves O(1/width) fluctuations per draw. Over ``S``
independent draws the estimate's standard error is the draws' standard deviation / sqrt(S); every check asserts
that this relative standard error is below 0.5% (so the 2% tolerance is > 4 standard errors) before comparing.

Sampling the hidden layers. The default tests draw each hidden layer from its exact conditional law given the
previous one: for ``n`` inputs, the ``width`` units of ``h = W phi / sqrt(fan_in) + b`` are i.i.d.
``N(0, sigma_b^2 + sigma_w^2 phi phi^T / fan_in)`` over the inputs, so ``h = chol(.) z`` has the same
distribution as multiplying by an explicit Gaussian weight matrix, at ``O(n^2 width)`` instead of
``O(width^2)`` per layer (for convolutions ``phi`` holds the 3x3 zero-padded patches from ``F.unfold``, so the
kernel's own shift-sum is not reused). Two tests use explicit weight matrices and convolutions instead, for
ReLU only: they check that sampling step, which does not depend on the activation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kernel_contract import KernelContract

from probnets.kernels import ConvNNGPKernel, NNGPKernel, conv_nngp_covariance, dual_activations, nngp_covariance

NETWORK_ACTIVATIONS = {"relu": torch.relu, "erf": torch.erf, "gelu": F.gelu}
# (weight_var, bias_var) per activation, in the range where the layer maps are neither trivial nor degenerate.
VARIANCES = {"relu": (2.0, 0.2), "erf": (1.5, 0.2), "gelu": (1.7, 0.2)}
WIDTH = 4096
MAX_REL_SE = 0.005
REL_TOL = 0.02


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are small: extra threads only contend with other work on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(n, d, seed, dtype=torch.float64):
    """Correlated inputs of different norms, so every kernel entry is well away from zero."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(d, generator=g, dtype=dtype) + 0.8 * torch.randn(n, d, generator=g, dtype=dtype)
    x[1] *= 2.0
    return x


def assert_matches_monte_carlo(draws: torch.Tensor, kernel: torch.Tensor) -> None:
    """``draws``: ``S x n x n`` per-network covariances; ``kernel``: ``n x n``."""
    num = draws.shape[0]
    rel_se = (draws.std(0) / math.sqrt(num) / kernel.abs()).max()
    assert rel_se < MAX_REL_SE, f"Monte Carlo resolution too coarse: relative SE {rel_se:.4f}"
    rel_err = ((draws.mean(0) - kernel).abs() / kernel.abs()).max()
    assert rel_err < REL_TOL, f"relative error {rel_err:.4f} (relative SE {rel_se:.4f})"


def _readout(phi: torch.Tensor, weight_var, bias_var) -> torch.Tensor:
    """Output covariance given the last hidden layer ``... x n x width``: ``... x n x n``."""
    return bias_var + weight_var * phi @ phi.mT / phi.shape[-1]


def dense_network_covariances(x, depth, weight_var, bias_var, activation, num_draws, generator, *,
                              input_weight_var=None, explicit=False, chunk=8):
    """Per-draw output covariances of random fully connected networks of widths ``WIDTH``, after 1..depth
    hidden layers (each prefix is a shallower network): a list of ``S x n x n``."""
    phi_fn = NETWORK_ACTIVATIONS[activation]
    n, d = x.shape
    in_var = torch.full((d,), weight_var, dtype=x.dtype) if input_weight_var is None else input_weight_var
    out = [[] for _ in range(depth)]
    for start in range(0, num_draws, chunk):
        s = min(chunk, num_draws - start)
        w0 = torch.randn(s, d, WIDTH, generator=generator, dtype=x.dtype) * (in_var / d).sqrt()[:, None]
        h = x @ w0 + math.sqrt(bias_var) * torch.randn(s, 1, WIDTH, generator=generator, dtype=x.dtype)
        for layer in range(depth):
            phi = phi_fn(h)
            cov = _readout(phi, weight_var, bias_var)
            out[layer].append(cov)
            if layer == depth - 1:
                break
            if explicit:
                w = torch.randn(s, WIDTH, WIDTH, generator=generator, dtype=x.dtype)
                b = torch.randn(s, 1, WIDTH, generator=generator, dtype=x.dtype)
                h = phi @ w * math.sqrt(weight_var / WIDTH) + math.sqrt(bias_var) * b
            else:
                z = torch.randn(s, n, WIDTH, generator=generator, dtype=x.dtype)
                h = torch.linalg.cholesky(cov) @ z
    return [torch.cat(c) for c in out]


def conv_network_covariances(images, depth, weight_var, bias_var, activation, channels, num_draws, generator, *,
                             explicit=False, chunk=8):
    """Per-draw output covariances of random CNNs (3x3 convolutions, zero "same" padding, ``channels`` channels)
    after 1..depth layers, for the GAP and the flatten readouts: a list of ``(S x n x n, S x n x n)``.
    ``images``: ``n x C x H x W`` (float32 networks, float64 covariances)."""
    phi_fn = NETWORK_ACTIVATIONS[activation]
    n, c_in, height, width = images.shape
    pixels = height * width
    images = images.float()
    out = [([], []) for _ in range(depth)]
    for start in range(0, num_draws, chunk):
        s = min(chunk, num_draws - start)
        w = torch.randn(s * channels, c_in, 3, 3, generator=generator) * math.sqrt(weight_var / (9 * c_in))
        b = torch.randn(s * channels, generator=generator) * math.sqrt(bias_var)
        h = F.conv2d(images, w, b, padding=1).reshape(n, s, channels, height, width).transpose(0, 1)
        for layer in range(depth):
            phi = phi_fn(h)  # s x n x channels x H x W
            pixel_features = phi.double().flatten(-2)
            gap, flat = out[layer]
            gap.append(_readout(pixel_features.mean(-1), weight_var, bias_var))
            flat.append(_readout(pixel_features.flatten(-2), weight_var, bias_var))
            if layer == depth - 1:
                break
            if explicit:
                w = torch.randn(s * channels, channels, 3, 3, generator=generator)
                w = w * math.sqrt(weight_var / (9 * channels))
                b = torch.randn(s * channels, generator=generator) * math.sqrt(bias_var)
                h = F.conv2d(phi.transpose(0, 1).reshape(n, s * channels, height, width), w, b, padding=1, groups=s)
                h = h.reshape(n, s, channels, height, width).transpose(0, 1)
            else:
                patches = F.unfold(phi.reshape(s * n, channels, height, width), 3, padding=1)  # s n x 9C x P
                patches = patches.reshape(s, n, 9 * channels, pixels).transpose(-1, -2).reshape(s, n * pixels, -1)
                cov = bias_var + weight_var * (patches @ patches.mT).double() / (9 * channels)
                z = torch.randn(s, n * pixels, channels, generator=generator, dtype=torch.float64)
                h = (torch.linalg.cholesky(cov) @ z).float()  # rows: (image, pixel)
                h = h.reshape(s, n, height, width, channels).permute(0, 1, 4, 2, 3)
    return [(torch.cat(g), torch.cat(f)) for g, f in out]


# --- contract suites -------------------------------------------------------------------------------------


class _NNGPContract(KernelContract):
    depth = 3
    activation = "relu"
    ard = False
    dim = 3

    def make_kernel(self, **overrides):
        kwargs = dict(depth=self.depth, activation=self.activation, weight_var=1.5, bias_var=0.2,
                      ard_num_dims=self.dim if self.ard else None)
        kwargs.update(overrides)
        return NNGPKernel(**kwargs)

    def make_inputs(self, n, batch_shape=(), dtype=torch.float64, seed=0):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(*batch_shape, n, self.dim, generator=g, dtype=torch.float64).to(dtype)


class TestNNGPKernelReLU(_NNGPContract):
    pass


class TestNNGPKernelErf(_NNGPContract):
    activation = "erf"
    depth = 2


class TestNNGPKernelGELU(_NNGPContract):
    activation = "gelu"
    depth = 2


class TestNNGPKernelARD(_NNGPContract):
    ard = True
    depth = 1
    bad_arguments = (*_NNGPContract.bad_arguments, {"ard_num_dims": 0})


class _ConvContract(KernelContract):
    image_shape = (2, 4, 4)
    readout = "gap"
    activation = "relu"

    def make_kernel(self, **overrides):
        kwargs = dict(image_shape=self.image_shape, depth=2, activation=self.activation, readout=self.readout,
                      weight_var=1.5, bias_var=0.2, max_chunk_elements=20_000)
        kwargs.update(overrides)
        return ConvNNGPKernel(**kwargs)

    def make_inputs(self, n, batch_shape=(), dtype=torch.float64, seed=0):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(*batch_shape, n, math.prod(self.image_shape), generator=g, dtype=torch.float64).to(dtype)


class TestConvNNGPKernelGAP(_ConvContract):
    bad_arguments = (*_ConvContract.bad_arguments, {"readout": "max"}, {"image_shape": (2, 0, 4)},
                     {"max_chunk_elements": 0})


class TestConvNNGPKernelFlatten(_ConvContract):
    image_shape = (1, 5, 5)
    readout = "flatten"
    activation = "gelu"


# --- dual activations -------------------------------------------------------------------------------------


def _gauss_hermite(fn, k_xx, k_xy, k_yy, nodes=80):
    """E[fn(u) fn(v)] by tensor-product Gauss-Hermite quadrature (numpy, independent of the closed forms)."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    chol = np.linalg.cholesky(np.array([[k_xx, k_xy], [k_xy, k_yy]]))
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    u, v = chol[0, 0] * z1, chol[1, 0] * z1 + chol[1, 1] * z2
    return float((np.outer(w, w) * fn(u) * fn(v)).sum())


@pytest.mark.parametrize("name", ["erf", "gelu"])
def test_smooth_duals_match_gauss_hermite_quadrature(name):
    from scipy.special import erf, ndtr

    fn = {"erf": erf, "gelu": lambda u: u * ndtr(u)}[name]
    dual = getattr(dual_activations, name)
    for k_xx, k_xy, k_yy in [(1.0, 0.5, 2.0), (0.3, -0.9 * math.sqrt(1.2), 4.0), (1.0, 0.999, 1.0), (2.5, 0.0, 0.7)]:
        value = dual(torch.tensor([[k_xy]], dtype=torch.float64), torch.tensor([k_xx], dtype=torch.float64),
                     torch.tensor([k_yy], dtype=torch.float64))
        assert value.item() == pytest.approx(_gauss_hermite(fn, k_xx, k_xy, k_yy), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", ["relu", "erf", "gelu"])
def test_dual_gradient_is_finite_and_exact_at_unit_correlation(name):
    """On the diagonal of a Gram matrix (cos = +-1) the derivative exists; it must not come out NaN."""
    dual = getattr(dual_activations, name)
    for sign in (1.0, -1.0):
        k = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
        value = dual((sign * k).reshape(1, 1), k.reshape(1), k.reshape(1))
        (grad,) = torch.autograd.grad(value.sum(), k)
        h = 1e-6
        with torch.no_grad():
            fd = (dual((sign * (k + h)).reshape(1, 1), (k + h).reshape(1), (k + h).reshape(1))
                  - dual((sign * (k - h)).reshape(1, 1), (k - h).reshape(1), (k - h).reshape(1))).sum() / (2 * h)
        assert torch.isfinite(grad) and grad.item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-7)
    # ReLU's value at cos = 1 is k / 2 (E[relu(u)^2]).
    k = torch.tensor([2.0], dtype=torch.float64)
    assert dual_activations.relu(k.reshape(1, 1), k, k).item() == pytest.approx(1.0, rel=1e-12)


# --- NNGP function -------------------------------------------------------------------------------------------


def test_nngp_covariance_returns_consistent_diagonals():
    x1, x2 = _inputs(5, 3, seed=0), _inputs(4, 3, seed=1)
    cov = nngp_covariance(x1, x2, 2, 1.5, 0.2, "gelu")
    assert cov.cross.shape == (5, 4) and cov.var1.shape == (5,) and cov.var2.shape == (4,)
    torch.testing.assert_close(cov.var1, nngp_covariance(x1, None, 2, 1.5, 0.2, "gelu").cross.diagonal())
    torch.testing.assert_close(cov.var2, nngp_covariance(x2, x2, 2, 1.5, 0.2, "gelu").cross.diagonal())
    diag = nngp_covariance(x1[:4], x2, 2, 1.5, 0.2, "gelu", diag=True)
    torch.testing.assert_close(diag.cross, cov.cross[:4].diagonal())


def test_nngp_depth_zero_is_the_linear_kernel_and_ard_generalises_it():
    x = _inputs(5, 3, seed=2)
    torch.testing.assert_close(nngp_covariance(x, None, 0, 1.5, 0.2).cross, 0.2 + 1.5 * x @ x.T / 3)
    ard = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(nngp_covariance(x, None, 0, 1.5, 0.2, input_weight_var=ard).cross,
                               0.2 + (x * ard) @ x.T / 3)
    torch.testing.assert_close(
        nngp_covariance(x, None, 3, 1.5, 0.2, input_weight_var=torch.full((3,), 1.5, dtype=torch.float64)).cross,
        nngp_covariance(x, None, 3, 1.5, 0.2).cross)


def test_nngp_covariance_bad_arguments():
    x = _inputs(4, 3, seed=3)
    bad = x.clone()
    bad[0, 0] = float("nan")
    cases = [
        ("x1", dict(x1=bad)), ("x2", dict(x2=bad)), ("x2", dict(x2=x[:, :2])), ("depth", dict(depth=-1)),
        ("depth", dict(depth=1.5)), ("weight_var", dict(weight_var=0.0)), ("bias_var", dict(bias_var=-0.1)),
        ("weight_var", dict(weight_var=torch.tensor([1.0, -1.0]))), ("activation", dict(activation="tanh")),
        ("input_weight_var", dict(input_weight_var=torch.ones(2, dtype=torch.float64))),
        ("input_weight_var", dict(input_weight_var=-torch.ones(3, dtype=torch.float64))),
        ("diag", dict(x2=x[:3], diag=True)),
    ]
    for name, overrides in cases:
        kwargs = dict(x1=x, x2=x, depth=2, weight_var=1.0, bias_var=0.1, activation="relu") | overrides
        with pytest.raises(ValueError, match=name):
            nngp_covariance(**kwargs)
    with pytest.raises(TypeError, match="x1"):
        nngp_covariance(x.long(), None, 1, 1.0, 0.1)
    with pytest.raises(TypeError, match="activation"):
        nngp_covariance(x, None, 1, 1.0, 0.1, torch.relu)


@pytest.mark.parametrize("activation", ["relu", "erf", "gelu"])
def test_nngp_matches_wide_random_networks(activation):
    weight_var, bias_var = VARIANCES[activation]
    x = _inputs(4, 4, seed=4)
    draws = dense_network_covariances(x, 3, weight_var, bias_var, activation, 400, torch.Generator().manual_seed(5))
    for depth, per_draw in enumerate(draws, start=1):
        assert_matches_monte_carlo(per_draw, nngp_covariance(x, None, depth, weight_var, bias_var, activation).cross)


def test_nngp_ard_matches_wide_random_networks():
    x = _inputs(4, 4, seed=6)
    ard = torch.tensor([0.3, 1.0, 2.0, 4.0], dtype=torch.float64)
    draws = dense_network_covariances(x, 2, 2.0, 0.2, "relu", 400, torch.Generator().manual_seed(7),
                                      input_weight_var=ard)
    for depth, per_draw in enumerate(draws, start=1):
        assert_matches_monte_carlo(per_draw, nngp_covariance(x, None, depth, 2.0, 0.2, input_weight_var=ard).cross)


def test_nngp_matches_wide_random_networks_with_explicit_weights():
    activation = "relu"
    weight_var, bias_var = VARIANCES[activation]
    x = _inputs(4, 4, seed=4).float()
    draws = dense_network_covariances(x, 3, weight_var, bias_var, activation, 256, torch.Generator().manual_seed(8),
                                      explicit=True, chunk=2)
    for depth, per_draw in enumerate(draws, start=1):
        kernel = nngp_covariance(x.double(), None, depth, weight_var, bias_var, activation).cross
        assert_matches_monte_carlo(per_draw.double(), kernel)


# --- convolutional NNGP -------------------------------------------------------------------------------------


def test_conv_nngp_on_one_pixel_images_is_a_dense_nngp():
    """A 1x1 image only meets the centre tap of each 3x3 filter: a dense network with variance sigma_w^2 / 9."""
    x = _inputs(5, 3, seed=9)
    for readout in ("gap", "flatten"):
        conv = conv_nngp_covariance(x, None, (3, 1, 1), 2, 1.8, 0.2, "erf", readout)
        dense = nngp_covariance(x, None, 2, 0.2, 0.2, "erf",
                                input_weight_var=torch.full((3,), 0.2, dtype=torch.float64)).cross
        expected = 0.2 + 1.8 / 0.2 * (dense - 0.2)  # the readout layer keeps sigma_w^2 (all of its inputs count)
        torch.testing.assert_close(conv, expected)


def test_conv_nngp_depth_zero_readouts_are_linear():
    c, h, w = 2, 3, 4
    x = _inputs(5, c * h * w, seed=10)
    images = x.reshape(5, c, h, w)
    flat = conv_nngp_covariance(x, None, (c, h, w), 0, 1.5, 0.2, readout="flatten")
    torch.testing.assert_close(flat, 0.2 + 1.5 * x @ x.T / (c * h * w))
    pooled = images.mean((-2, -1))
    gap = conv_nngp_covariance(x, None, (c, h, w), 0, 1.5, 0.2, readout="gap")
    torch.testing.assert_close(gap, 0.2 + 1.5 * pooled @ pooled.T / c)


@pytest.mark.parametrize("readout", ["gap", "flatten"])
def test_conv_nngp_chunking_and_checkpointing_do_not_change_values_or_gradients(readout):
    x1, x2 = _inputs(5, 2 * 4 * 4, seed=11), _inputs(3, 2 * 4 * 4, seed=12)
    results = []
    for chunk in (10**9, 300):
        w = torch.tensor(1.4, dtype=torch.float64, requires_grad=True)
        value = conv_nngp_covariance(x1, x2, (2, 4, 4), 2, w, 0.2, "relu", readout, max_chunk_elements=chunk)
        (grad,) = torch.autograd.grad(value.square().sum(), w)
        results.append((value.detach(), grad))
    torch.testing.assert_close(results[0], results[1])
    diag = conv_nngp_covariance(x1[:3], x2, (2, 4, 4), 2, 1.4, 0.2, "relu", readout, diag=True,
                                max_chunk_elements=300)
    torch.testing.assert_close(diag, results[0][0][:3].diagonal())


def test_conv_nngp_bad_arguments():
    x = _inputs(3, 2 * 3 * 3, seed=13)
    cases = [("features", dict(image_shape=(2, 3, 4))), ("image_shape", dict(image_shape=(2, 3))),
             ("readout", dict(readout="max")), ("depth", dict(depth=-1)), ("bias_var", dict(bias_var=0.0)),
             ("max_chunk_elements", dict(max_chunk_elements=0)), ("x2", dict(x2=x[:, :-1]))]
    for name, overrides in cases:
        kwargs = dict(x1=x, x2=None, image_shape=(2, 3, 3), depth=1, weight_var=1.0, bias_var=0.1) | overrides
        with pytest.raises(ValueError, match=name):
            conv_nngp_covariance(**kwargs)


def _conv_images(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64) + 0.8 * torch.randn(
        3, 2, 4, 4, generator=g, dtype=torch.float64)


def _check_conv_draws(images, draws, weight_var, bias_var, activation):
    x = images.flatten(1)
    for depth, per_readout in enumerate(draws, start=1):
        for readout, per_draw in zip(("gap", "flatten"), per_readout):
            kernel = conv_nngp_covariance(x, None, images.shape[1:], depth, weight_var, bias_var, activation, readout)
            assert_matches_monte_carlo(per_draw, kernel)


@pytest.mark.parametrize("activation", ["relu", "erf", "gelu"])
def test_conv_nngp_matches_wide_random_cnns(activation):
    weight_var, bias_var = VARIANCES[activation]
    images = _conv_images(seed=14)
    draws = conv_network_covariances(images, 2, weight_var, bias_var, activation, WIDTH, 64,
                                     torch.Generator().manual_seed(15), chunk=8)
    _check_conv_draws(images, draws, weight_var, bias_var, activation)


def test_conv_nngp_matches_random_cnns_with_explicit_weights():
    activation = "relu"
    weight_var, bias_var = VARIANCES[activation]
    images = _conv_images(seed=14)
    draws = conv_network_covariances(images, 2, weight_var, bias_var, activation, 512, 600,
                                     torch.Generator().manual_seed(16), explicit=True, chunk=50)
    _check_conv_draws(images, draws, weight_var, bias_var, activation)


def test_variances_stay_positive_when_an_optimiser_drives_them_down():
    # softplus(-1000) is exactly 0 in float64; the default constraint keeps a floor, so a fit that pushes a
    # variance down (seen with L-BFGS in a BO loop) never hands the recursion a zero variance
    kernel = NNGPKernel(depth=2).double()
    with torch.no_grad():
        kernel.raw_weight_var.fill_(-1000.0)
        kernel.raw_bias_var.fill_(-1000.0)
    assert float(kernel.weight_var) > 0 and float(kernel.bias_var) > 0
    assert bool(torch.isfinite(kernel(torch.randn(4, 3, dtype=torch.float64)).to_dense()).all())
