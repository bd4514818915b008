"""Convolutional deep kernel machine: layer formulas against explicit feature maps and the conv NNGP, the
nu = inf limit, shapes and dtypes, input checks and a short training run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import inference
from probnets.conv_dkm import ConvDKM, ConvF2G, ConvMixup, GramBatchNorm, Input, NystromGAP, ResidualBlock, sample_patches
from probnets.dkm import GramLayer, Grams, Output, ReluKernel
from probnets.kernels import conv_nngp_covariance, dual_activations
from conditioned_contract import ConditionedModelContract

TINY = 1e-30  # a bias variance that vanishes in float64 but keeps conv_nngp_covariance's positivity check happy


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors are small: extra threads only contend with other work on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(n, channels=1, size=4, seed=0, dtype=torch.float64):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _all_patches(images):
    """Every zero-padded 3x3 patch of every image, ``(N H W) x C x 3 x 3``, image-major then row-major."""
    n, channels, height, width = images.shape
    cols = F.unfold(images, 3, padding=1)  # N x (C 9) x (H W)
    return cols.transpose(1, 2).reshape(n * height * width, channels, 3, 3)


def _explicit_grams(features_i, features_t):
    """Gram triple of explicit features: inducing ``P x N``, test ``B x N x H x W`` (inner products / N)."""
    width = features_i.shape[1]
    return Grams(features_i @ features_i.T / width, torch.einsum("bnhw,pn->bphw", features_t, features_i) / width,
                 features_t.square().sum(1) / width, features_i.new_zeros(()))


def _assert_grams_close(actual, expected, **kwargs):
    for name in ("ii", "ti", "t"):
        torch.testing.assert_close(getattr(actual, name), getattr(expected, name), **kwargs, msg=name)


# ----------------------------------------------------------------------------------------------------------------
# Layer formulas


def test_conv_f2g_is_the_gram_of_zero_padded_patches():
    x = _images(3, channels=2, size=5)
    patches = sample_patches(x, 6, generator=torch.Generator().manual_seed(1))
    grams = ConvF2G()(Input(patches)(x))
    test_patches = _all_patches(x).reshape(3, 5, 5, -1).permute(0, 3, 1, 2)  # B x (C 9) x H x W
    expected = _explicit_grams(patches.flatten(1), test_patches)
    _assert_grams_close(grams, expected)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_mixup_is_the_gram_of_explicitly_convolved_features(stride):
    """Features phi (N channels) behind K; the mixed-up triple is the Gram (inner products / 9N) of the features
    h(p) = concat over offsets of phi(p + o) (zero off the image) and, at inducing point j, concat over o of
    sum_i C_jio phi_i."""
    g = torch.Generator().manual_seed(2)
    width, p_in, p_out = 7, 5, 4
    phi_i = torch.randn(p_in, width, generator=g, dtype=torch.float64)
    phi_t = torch.randn(2, width, 5, 5, generator=g, dtype=torch.float64)
    layer = ConvMixup(p_in, p_out, stride=stride, generator=g).double()
    mixed = layer(_explicit_grams(phi_i, phi_t))

    filters = layer.latent.detach() / math.sqrt(p_in)  # P_out x P_in x 3 x 3
    h_t = F.unfold(phi_t, 3, padding=1, stride=stride)  # B x (N 9) x L
    side = (5 - 1) // stride + 1
    h_t = h_t.reshape(2, width * 9, side, side)
    z = torch.einsum("jiab,in->jnab", filters, phi_i).reshape(p_out, width * 9)
    _assert_grams_close(mixed, _explicit_grams(z, h_t), atol=1e-12, rtol=1e-10)


def test_conv_mixup_keeps_the_inducing_gram_psd():
    g = torch.Generator().manual_seed(3)
    for p_in, p_out in [(4, 6), (3, 40), (8, 8)]:  # 40 > 9 * 3: rank deficient
        root = torch.randn(p_in, p_in, generator=g, dtype=torch.float64)
        kernel = Grams(root @ root.T, torch.zeros(1, p_in, 3, 3, dtype=torch.float64),
                       torch.ones(1, 3, 3, dtype=torch.float64), torch.zeros((), dtype=torch.float64))
        layer = ConvMixup(p_in, p_out, generator=g).double()
        with torch.no_grad():
            layer.latent.mul_(5.0)
            mixed = layer(kernel)
        eigenvalues = torch.linalg.eigvalsh(mixed.ii)
        torch.testing.assert_close(mixed.ii, mixed.ii.T)
        assert eigenvalues.min() >= -1e-12 * eigenvalues.max()


def test_relu_kernel_matches_the_dual_activation():
    g = torch.Generator().manual_seed(4)
    phi_i = torch.randn(5, 6, generator=g, dtype=torch.float64)
    phi_t = torch.randn(2, 6, 3, 3, generator=g, dtype=torch.float64)
    grams = _explicit_grams(phi_i, phi_t)
    kernel = ReluKernel(weight_var=1.5, bias_var=0.2, jitter=0.0).double()(grams)
    d_i = grams.ii.diagonal()
    expected_ii = 3.0 * dual_activations.relu(grams.ii, d_i, d_i) + 0.2
    torch.testing.assert_close(kernel.ii, expected_ii)
    torch.testing.assert_close(kernel.ii.diagonal(), 1.5 * d_i + 0.2)
    expected_ti = 3.0 * dual_activations.relu(grams.ti.movedim(1, -1), grams.t, d_i).movedim(-1, 1) + 0.2
    torch.testing.assert_close(kernel.ti, expected_ti)
    torch.testing.assert_close(kernel.t, 1.5 * grams.t + 0.2)


def test_relu_kernel_jitter_enters_and_leaves_the_diagonals():
    grams = _explicit_grams(torch.eye(3, dtype=torch.float64), torch.ones(1, 3, 2, 2, dtype=torch.float64))
    eps = 1e-3
    kernel = ReluKernel(weight_var=1.0, bias_var=0.5, jitter=eps).double()(grams)
    noisy = (1 / 3) * (1 + eps) + eps
    expected_diag = torch.full((3,), (noisy + 0.5) * (1 + eps) + eps, dtype=torch.float64)
    torch.testing.assert_close(kernel.ii.diagonal(), expected_diag)
    torch.testing.assert_close(kernel.t, ((grams.t * (1 + eps) + eps + 0.5) * (1 + eps) + eps))


@pytest.mark.parametrize("inducing_norm", ["local", "global", "none"])
@pytest.mark.parametrize("test_norm", ["local", "image", "global", "location", "none"])
def test_batchnorm_is_the_gram_of_rescaled_features(inducing_norm, test_norm):
    g = torch.Generator().manual_seed(5)
    phi_i = torch.randn(4, 6, generator=g, dtype=torch.float64)
    phi_t = torch.randn(3, 6, 2, 2, generator=g, dtype=torch.float64)
    layer = GramBatchNorm(inducing_norm, test_norm).double()
    with torch.no_grad():
        layer.log_scales.copy_(torch.tensor([0.3, -0.2]))
    out = layer(_explicit_grams(phi_i, phi_t))
    sq_i = phi_i.square().sum(1, keepdim=True) / 6
    norm_i = {"local": sq_i, "global": sq_i.mean().expand_as(sq_i), "none": torch.ones_like(sq_i)}[inducing_norm]
    sq_t = phi_t.square().sum(1) / 6
    norm_t = {"local": sq_t, "image": sq_t.mean((1, 2), keepdim=True), "global": sq_t.mean().expand_as(sq_t),
              "location": sq_t.mean(0, keepdim=True), "none": torch.ones_like(sq_t)}[test_norm]
    scaled_i = phi_i / norm_i.sqrt() * math.exp(0.3)
    scaled_t = phi_t / norm_t.sqrt().unsqueeze(1) * math.exp(-0.2)
    _assert_grams_close(out, _explicit_grams(scaled_i, scaled_t))


def test_batchnorm_after_pooling():
    pooled = NystromGAP()(_kernel_triple(num_points=4))
    out = GramBatchNorm("local", "image").double()(pooled)
    torch.testing.assert_close(out.t, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(out.ii.diagonal(), torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="test_norm"):
        GramBatchNorm("local", "location")(pooled)


def test_nystrom_gap_is_exact_gap_when_the_inducing_points_are_all_patches():
    """Input -> F2G -> ReLU kernel -> GAP with every patch of the images as inducing point reproduces the
    one-layer conv NNGP with a GAP readout (weight variances: conv 1, readout 1, no biases)."""
    x = _images(2, channels=2, size=4, seed=6)
    stack = torch.nn.Sequential(Input(_all_patches(x)), ConvF2G(),
                                ReluKernel(weight_var=0.5, bias_var=TINY, jitter=0.0), NystromGAP()).double()
    pooled = stack(x)
    chol = torch.linalg.cholesky(pooled.ii)
    nystrom = torch.cholesky_solve(pooled.ti.T, chol)
    exact = conv_nngp_covariance(x.flatten(1), None, (2, 4, 4), 1, 1.0, TINY)
    torch.testing.assert_close(pooled.ti @ nystrom, exact, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(pooled.t, exact.diagonal(), atol=1e-9, rtol=1e-7)


def test_nystrom_gap_adds_the_residual_pixel_variances():
    g = torch.Generator().manual_seed(7)
    phi_i = torch.randn(3, 10, generator=g, dtype=torch.float64)
    phi_t = torch.randn(2, 10, 3, 3, generator=g, dtype=torch.float64)
    grams = _explicit_grams(phi_i, phi_t)
    pooled = NystromGAP()(grams)
    k_inv = torch.linalg.inv(grams.ii)
    mean_ti = grams.ti.mean((2, 3))
    residual = grams.t - torch.einsum("bphw,pq,bqhw->bhw", grams.ti, k_inv, grams.ti)
    expected = torch.einsum("bp,pq,bq->b", mean_ti, k_inv, mean_ti) + residual.sum((1, 2)) / 81
    torch.testing.assert_close(pooled.t, expected)
    torch.testing.assert_close(pooled.ti, mean_ti)
    assert (residual > 0).all()


# ----------------------------------------------------------------------------------------------------------------
# Gram layers and the nu = inf limit


def _kernel_triple(num_points=5, seed=8, dtype=torch.float64):
    """A valid spatial kernel triple (Gram of explicit features with a positive diagonal offset)."""
    g = torch.Generator().manual_seed(seed)
    phi_i = torch.randn(num_points, 12, generator=g, dtype=dtype)
    phi_t = torch.randn(2, 12, 3, 3, generator=g, dtype=dtype)
    grams = _explicit_grams(phi_i, phi_t)
    eye = torch.eye(num_points, dtype=dtype)
    return grams._replace(ii=grams.ii + 0.1 * eye, t=grams.t + 0.1)


def test_gram_layer_starts_at_the_kernel():
    kernels = _kernel_triple()
    out = GramLayer(5, nu=2.0).double()(kernels)
    _assert_grams_close(out, kernels, atol=1e-10, rtol=1e-9)
    assert abs(out.penalty.item()) < 1e-9


@pytest.mark.parametrize("whitened", [False, True])
def test_gram_layer_conditions_on_the_learned_gram_and_adds_nu_kl(whitened):
    kernels = _kernel_triple()._replace(penalty=torch.tensor(1.5, dtype=torch.float64))
    nu = 0.3
    layer = GramLayer(5, nu=nu, whitened=whitened).double()
    torch.testing.assert_close(layer(kernels).ii, kernels.ii)  # starts at G = K
    with torch.no_grad():
        layer.V.add_(0.3 * torch.randn(5, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
        layer.log_scale.fill_(0.4)
    out = layer(kernels)
    gram, k = out.ii, kernels.ii
    root = torch.linalg.cholesky(k) @ layer.V if whitened else layer.V
    torch.testing.assert_close(gram, root @ root.T / 5 * math.exp(0.4))
    torch.testing.assert_close(layer.gram(k), gram)
    kl = 0.5 * (torch.trace(torch.linalg.solve(k, gram)) - 5 + torch.logdet(k) - torch.logdet(gram))
    torch.testing.assert_close(out.penalty - kernels.penalty, nu * kl)
    proj = torch.einsum("bphw,pq->bqhw", kernels.ti, torch.linalg.inv(k))
    torch.testing.assert_close(out.ti, torch.einsum("bphw,pq->bqhw", proj, gram))
    expected_t = (kernels.t - torch.einsum("bphw,bphw->bhw", proj, kernels.ti)
                  + torch.einsum("bphw,pq,bqhw->bhw", proj, gram, proj))
    torch.testing.assert_close(out.t, expected_t)


def test_gram_layer_at_nu_inf_returns_the_kernel():
    kernels = _kernel_triple()
    layer = GramLayer(5, nu=math.inf)
    assert layer(kernels) is kernels
    assert list(layer.parameters()) == []


def test_nu_inf_stack_reproduces_the_two_layer_conv_nngp():
    """Input patches = every patch, second-layer inducing points = every pixel (mixup filters that extract the
    3x3 neighbourhood of one pixel): with Gram layers at nu = inf the pooled output is the depth-2 conv NNGP
    with a GAP readout, exactly (no inducing-point approximation left)."""
    x = _images(2, channels=1, size=3, seed=10)
    num_pixels = 2 * 3 * 3
    mixup = ConvMixup(num_pixels, num_pixels)
    filters = torch.zeros(num_pixels, num_pixels, 3, 3)
    for n in range(2):
        for r in range(3):
            for c in range(3):
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        if 0 <= r + dr < 3 and 0 <= c + dc < 3:
                            filters[(n * 3 + r) * 3 + c, (n * 3 + r + dr) * 3 + c + dc, dr + 1, dc + 1] = 1.0
    with torch.no_grad():
        mixup.latent.copy_(filters * math.sqrt(num_pixels))
    stack = torch.nn.Sequential(
        Input(_all_patches(x)), ConvF2G(), ReluKernel(weight_var=0.5, bias_var=TINY, jitter=0.0), mixup,
        GramLayer(num_pixels, math.inf), ReluKernel(weight_var=0.5, bias_var=TINY, jitter=0.0), NystromGAP(),
    ).double()
    pooled = stack(x)
    exact = conv_nngp_covariance(x.flatten(1), None, (1, 3, 3), 2, 1.0, TINY)
    nystrom = pooled.ti @ torch.linalg.solve(pooled.ii, pooled.ti.T)
    torch.testing.assert_close(nystrom, exact, atol=1e-9, rtol=1e-6)
    torch.testing.assert_close(pooled.t, exact.diagonal(), atol=1e-9, rtol=1e-6)


def _model(nu=0.01, dtype=torch.float64, seed=11, likelihood="categorical", num_outputs=3, **kwargs):
    g = torch.Generator().manual_seed(seed)
    images = _images(6, channels=1, size=6, seed=seed, dtype=dtype)
    kwargs = {"widths": (4, 6), "strides": (1, 2), "mc_samples": 50, **kwargs}
    return ConvDKM(sample_patches(images, 4, generator=g), num_outputs, nu=nu, likelihood=likelihood,
                   generator=g, **kwargs).to(dtype)


def test_finite_nu_model_starts_at_the_nu_inf_model():
    """Gram layers start at G = K, so before training a finite-nu model computes what its nu = inf twin does
    (with no KL), and the nu = inf model never accumulates a penalty."""
    x = _images(3, size=6, seed=12)
    finite, infinite = _model(nu=0.5), _model(nu=math.inf)
    infinite.load_state_dict(finite.state_dict(), strict=False)
    out_finite, out_infinite = finite(x), infinite(x)
    _assert_grams_close(out_finite, out_infinite, atol=1e-8, rtol=1e-6)
    assert abs(out_finite.penalty.item()) < 1e-8
    assert out_infinite.penalty.item() == 0.0
    assert not any(isinstance(m, GramLayer) and list(m.parameters()) for m in infinite.modules())


# ----------------------------------------------------------------------------------------------------------------
# The model: output layer, likelihoods, shapes, dtypes, input checks, training


def test_output_layer_kl_and_marginals():
    g = torch.Generator().manual_seed(13)
    kernels = _kernel_triple(num_points=4)
    pooled = NystromGAP()(kernels)
    layer = Output(4, 3, generator=g).double()
    cov, k = layer.covariance(), pooled.ii
    prior = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64), k)
    kls = [torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(layer.mu[:, c], cov), prior)
           for c in range(3)]
    torch.testing.assert_close(layer.kl(k), torch.stack(kls).mean())
    mean, var = layer(pooled)
    proj = pooled.ti @ torch.linalg.inv(k)
    torch.testing.assert_close(mean, proj @ layer.mu)
    expected_var = pooled.t - (proj * pooled.ti).sum(-1) + ((proj @ cov) * proj).sum(-1)
    torch.testing.assert_close(var.squeeze(-1), expected_var)


def test_gaussian_loss_is_the_closed_form_expected_log_likelihood():
    model = _model(likelihood="gaussian", num_outputs=2)
    x = _images(4, size=6, seed=14)
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    with torch.no_grad():
        mean, var, penalty = model.latent(x)
        f = mean + var.sqrt() * torch.randn(200000, *mean.shape, generator=torch.Generator().manual_seed(16),
                                             dtype=torch.float64)
        mc = torch.distributions.Normal(f, 1.0).log_prob(y).sum(-1)
        loss = model.loss(x, y, num_data=100)
    expected = -mc.mean() + penalty / 100
    standard_error = mc.mean(1).std() / math.sqrt(mc.shape[0]) / math.sqrt(4)
    assert abs(loss - expected) < 5 * standard_error + 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_shapes_and_dtypes(dtype, likelihood):
    model = _model(dtype=dtype, likelihood=likelihood)
    x = _images(5, size=6, seed=17, dtype=dtype)
    top = model(x)
    assert top.ii.shape == (6, 6) and top.ti.shape == (5, 6) and top.t.shape == (5,)
    assert all(t.dtype == dtype for t in top)
    mean, var, penalty = model.latent(x)
    assert mean.shape == (5, 3) and var.shape == (5, 1) and penalty.shape == () and (var > 0).all()
    loss = model.loss(x, torch.tensor([0, 1, 2, 0, 1]), num_data=50, generator=torch.Generator().manual_seed(0))
    assert loss.dtype == dtype and torch.isfinite(loss)
    predictive = model.predict(x, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert predictive.f.shape == (50, 5, 3) and predictive.f.dtype == dtype
    if likelihood == "categorical":
        torch.testing.assert_close(predictive.probs.sum(-1), torch.ones(5, dtype=dtype))


def test_spatial_grams_through_a_residual_block():
    kernels = _kernel_triple(num_points=4)
    for stride, out_points, side in [(1, 4, 3), (2, 6, 2)]:
        block = ResidualBlock(4, out_points, nu=0.1, stride=stride).double()
        out = block(kernels)
        assert out.ii.shape == (out_points, out_points) and out.ti.shape == (2, out_points, side, side)
        assert out.t.shape == (2, side, side)


@pytest.mark.parametrize(("call", "name"), [
    (lambda: _model(nu=0.0), "nu"),
    (lambda: _model(nu=-1.0), "nu"),
    (lambda: _model(nu=float("nan")), "nu"),
    (lambda: _model(nu="big"), "nu"),
    (lambda: _model(widths=(4, 6), strides=(1,)), "strides"),
    (lambda: _model(widths=()), "widths"),
    (lambda: _model(likelihood="poisson"), "likelihood"),
    (lambda: _model(mc_samples=0), "mc_samples"),
    (lambda: _model(jitter=-1.0), "jitter"),
    (lambda: _model(test_norm="batch"), "test_norm"),
    (lambda: _model()(torch.zeros(2, 6, 6, dtype=torch.float64)), "x"),
    (lambda: _model()(torch.zeros(2, 3, 6, 6, dtype=torch.float64)), "x"),
    (lambda: _model()(torch.full((2, 1, 6, 6), float("nan"), dtype=torch.float64)), "x"),
    (lambda: _model().loss(_images(2, size=6), torch.tensor([0, 3]), 10), "y"),
    (lambda: _model().loss(_images(2, size=6), torch.tensor([0, 1, 1]), 10), "y"),
    (lambda: _model().loss(_images(2, size=6), torch.tensor([0, 1]), 0), "num_data"),
    (lambda: sample_patches(_images(1, size=3), 2), "num_patches"),
    (lambda: ConvMixup(3, 3, filter_size=2), "filter_size"),
    (lambda: Input(torch.zeros(2, 1, 3, 2)), "patches"),
    (lambda: GramLayer(3, 1.0)(_kernel_triple(num_points=4)), "kernels"),
    (lambda: NystromGAP()(NystromGAP()(_kernel_triple())), "kernels"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_type_errors_name_the_argument():
    with pytest.raises(TypeError, match="x"):
        _model()(_images(2, size=6, dtype=torch.float32))
    with pytest.raises(TypeError, match="patches"):
        Input(torch.zeros(2, 1, 3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="kernels"):
        NystromGAP()((1, 2, 3))


def _stripes(n, seed):
    """Two classes of 6x6 images: horizontal or vertical stripes plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    wave = torch.cos(torch.arange(6, dtype=torch.float64) * math.pi / 2)
    base = torch.stack([wave[:, None].expand(6, 6), wave[None, :].expand(6, 6)])
    images = base[labels].unsqueeze(1) + 0.5 * torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64)
    return images, labels


@pytest.mark.parametrize("nu", [0.01, math.inf])
def test_a_short_training_run_decreases_the_loss(nu):
    images, labels = _stripes(32, seed=18)
    model = _model(nu=nu, num_outputs=2)
    history = inference.fit(model, (images, labels), num_epochs=6, batch_size=16,
                            generator=torch.Generator().manual_seed(19)).fit_result.epoch_losses
    assert len(history) == 6 and all(math.isfinite(h) for h in history)
    assert history[-1] < history[0] - 0.1


class TestConvDKMContract(ConditionedModelContract):
    fit_options = {"num_epochs": 1, "batch_size": 4}
    predicts_before_fit = True

    def make_model(self, dtype):
        images, labels = _stripes(8, seed=3)
        return _model(dtype=dtype, num_outputs=2, mc_samples=5), images.to(dtype), labels, images[:3].to(dtype)
