"""The convolutional deep kernel machine: Gram layers on spatial triples, residual blocks, the model and its
training loop.

Architecture (``edwardmilsom/convdkmpaper``, ``18layer.py``, with ``blocks_per_stage`` residual blocks per stage)::

    Input -> ConvF2G -> ReluKernel -> ConvMixup -> GramLayer(nu) -> GramBatchNorm        (stem, widths[0] points)
    -> per stage s: ResidualBlock(widths[s], strides[s]) x blocks_per_stage
    -> NystromGAP -> GramBatchNorm -> Output

A residual block is ``0.5 shortcut(G) + 0.5 [ReluKernel -> ConvMixup -> GramLayer -> GramBatchNorm] x 2 (G)``,
the shortcut being the identity or, when the block changes the stride or the number of inducing points, a 1x1
``ConvMixup -> GramBatchNorm``. The objective per training point is

    E_q[log p(y | f)] - (sum over Gram layers of nu KL(N(0, G_ii) || N(0, K_ii)) + KL_out) / N

with ``N`` the training-set size. With ``nu = inf`` every Gram layer returns its input kernel (no
representation learning, no KL): the model is a deep GP with the conv NNGP's layer maps, sparse through the
inducing points, whose kernel hyperparameters, inducing patches, mixup filters and output are still learned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from probnets.conv_dkm.layers import ConvF2G, ConvMixup, GramBatchNorm, Input, NystromGAP
from probnets.dkm import GramLayer, Grams, Output, ReluKernel, check_nu, sum_grams
from probnets.dkm.model import MinibatchDKM, expected_log_likelihood, sample_outputs
from probnets.likelihoods import Categorical, Gaussian
from probnets.predictive import Predictive
from probnets.validation import as_tensor, check_positive_int

LIKELIHOODS = ("categorical", "gaussian")


class ResidualBlock(nn.Module):
    """``0.5 shortcut(G) + 0.5 branch(G)`` with ``branch`` two [kernel -> mixup -> Gram layer -> batchnorm]
    units (the first strided) and ``shortcut`` the identity or a strided 1x1 mixup with batchnorm.

    Args:
        in_points, out_points: Inducing points before and after.
        nu: Gram-layer regularisation in ``(0, inf]``.
        stride: Stride of the first convolution (and of the shortcut).
        jitter: Diagonal jitter of the kernels.
        inducing_norm, test_norm: Normalisations of the batchnorm layers (see :class:`GramBatchNorm`).
        generator: Source of the initial mixup filters.
    """

    def __init__(self, in_points: int, out_points: int, nu: float, stride: int = 1, *, jitter: float = 1e-4,
                 inducing_norm: str = "local", test_norm: str = "local", generator: torch.Generator | None = None):
        super().__init__()

        def unit(p_in, p_out, unit_stride):
            return [ReluKernel(jitter=jitter), ConvMixup(p_in, p_out, stride=unit_stride, generator=generator),
                    GramLayer(p_out, nu), GramBatchNorm(inducing_norm, test_norm)]

        self.branch = nn.Sequential(*unit(in_points, out_points, stride), *unit(out_points, out_points, 1))
        if stride == 1 and in_points == out_points:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(ConvMixup(in_points, out_points, filter_size=1, stride=stride,
                                                    generator=generator), GramBatchNorm(inducing_norm, test_norm))

    def forward(self, grams: Grams) -> Grams:
        """Spatial Gram triple -> spatial Gram triple (the penalties of both paths add up)."""
        fresh = grams._replace(penalty=torch.zeros_like(grams.penalty))
        shortcut, branch = self.shortcut(fresh), self.branch(fresh)
        return sum_grams([(0.5, shortcut), (0.5, branch)], grams.penalty + shortcut.penalty + branch.penalty)


class ConvDKM(nn.Module, MinibatchDKM):
    """Convolutional deep kernel machine for images (see the module docstring for the architecture).

    Args:
        inducing_patches: Initial inducing patches of the input layer, ``P_0 x C x 3 x 3`` (e.g. from
            :func:`~probnets.conv_dkm.sample_patches`).
        num_outputs: Number of classes (or regression outputs for ``likelihood="gaussian"``).
        nu: Gram-layer regularisation in ``(0, inf]``; ``math.inf`` is the fixed-kernel (deep GP) limit.
        widths: Inducing points per stage; the stem uses ``widths[0]``.
        strides: Stride of the first block of each stage (same length as ``widths``).
        blocks_per_stage: Residual blocks per stage.
        likelihood: ``"categorical"`` (softmax of Monte Carlo samples of the logits) or ``"gaussian"`` (unit noise
            variance; integer labels are one-hot encoded; expected log-likelihood in closed form).
        mc_samples: Monte Carlo samples of the outputs per point (categorical training, and predictions).
        jitter: Diagonal jitter of every kernel.
        inducing_norm, test_norm: Normalisations of every batchnorm layer (see :class:`GramBatchNorm`); after
            pooling, ``"location"`` and ``"image"`` become ``"global"`` and ``"local"``.
        generator: Source of the initial mixup filters and output parameters.

    The parameters take the default dtype; ``.to(torch.float64)`` converts them (and inputs must match).
    ``inference.fit(model, (images, labels), num_epochs=..., generator=g)`` trains it on minibatches
    (:class:`~probnets.dkm.MinibatchDKM`).
    """

    def __init__(self, inducing_patches: Tensor, num_outputs: int, *, nu: float = 0.01,
                 widths: Sequence[int] = (16, 32, 64), strides: Sequence[int] = (1, 2, 2), blocks_per_stage: int = 1,
                 likelihood: str = "categorical", mc_samples: int = 1000, jitter: float = 1e-4,
                 inducing_norm: str = "local", test_norm: str = "local", generator: torch.Generator | None = None):
        super().__init__()
        self.nu = check_nu(nu)
        self.num_outputs = check_positive_int(num_outputs, "num_outputs")
        widths = _int_tuple(widths, "widths")
        strides = _int_tuple(strides, "strides")
        if len(strides) != len(widths):
            raise ValueError(f"strides must have one entry per stage ({len(widths)}), got {len(strides)}")
        blocks_per_stage = check_positive_int(blocks_per_stage, "blocks_per_stage")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if likelihood == "categorical" and self.num_outputs < 2:
            raise ValueError(f"num_outputs must be >= 2 for a categorical likelihood, got {num_outputs}")
        self.likelihood = likelihood
        self.mc_samples = check_positive_int(mc_samples, "mc_samples")
        norms = {"inducing_norm": inducing_norm, "test_norm": test_norm}

        layers = [Input(inducing_patches), ConvF2G(), ReluKernel(jitter=jitter),
                  ConvMixup(inducing_patches.shape[0], widths[0], generator=generator),
                  GramLayer(widths[0], nu), GramBatchNorm(**norms)]
        points = widths[0]
        for width, stride in zip(widths, strides):
            for block in range(blocks_per_stage):
                layers.append(ResidualBlock(points, width, nu, stride if block == 0 else 1, jitter=jitter,
                                            generator=generator, **norms))
                points = width
        pooled_test_norm = {"location": "global", "image": "local"}.get(test_norm, test_norm)
        layers += [NystromGAP(), GramBatchNorm(inducing_norm, pooled_test_norm)]
        self.body = nn.Sequential(*layers)
        self.output = Output(points, self.num_outputs, generator=generator)

    def forward(self, x: Tensor) -> Grams:
        """Images ``B x C x H x W`` -> pooled top-layer Gram triple (``ti``: ``B x P``, ``t``: ``B``) whose
        ``penalty`` is the sum of ``nu KL`` over the Gram layers."""
        return self.body(x)

    def latent(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Gaussian marginals of the outputs and the total KL regulariser.

        Returns:
            ``(mean B x m, variance B x 1, penalty)``, the variance shared by all outputs and ``penalty`` the sum
            of ``nu KL`` over the Gram layers plus the output layer's KL.
        """
        grams = self(x)
        mean, var = self.output(grams)
        return mean, var, grams.penalty + self.output.kl(grams.ii)

    def _targets(self, y) -> Tensor:
        """Integer labels ``B`` (categorical; one-hot encoded for Gaussian) or float targets ``B x m`` (Gaussian)."""
        y = as_tensor(y, "y")
        if self.likelihood == "categorical":
            return Categorical(self.num_outputs).prepare_targets(y)
        if y.dim() == 1 and not torch.is_floating_point(y):
            return nn.functional.one_hot(Categorical(self.num_outputs).prepare_targets(y), self.num_outputs)
        if y.dim() != 2 or y.shape[1] != self.num_outputs:
            raise ValueError(f"y must be integer labels (B,) or float targets (B, {self.num_outputs}), "
                             f"got {tuple(y.shape)}")
        return y

    def loss(self, x: Tensor, y, num_data: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Negative objective per training point on a minibatch (scalar).

        Args:
            x: Images ``B x C x H x W``.
            y: Labels ``B`` (or Gaussian targets ``B x m``).
            num_data: Size ``N`` of the training set the minibatch is drawn from.
            generator: Source of the Monte Carlo samples (categorical).
        """
        num_data = check_positive_int(num_data, "num_data")
        target = self._targets(y)
        mean, var, penalty = self.latent(x)
        if target.shape[0] != mean.shape[0]:
            raise ValueError(f"x and y must have the same number of rows, got {mean.shape[0]} and {target.shape[0]}")
        if self.likelihood == "gaussian":
            target = target.to(mean.dtype)
        expected = expected_log_likelihood(mean, var, target, self.likelihood, mc_samples=self.mc_samples,
                                           generator=generator)
        return -expected.mean() + penalty / num_data

    @torch.no_grad()
    def predict(self, x: Tensor, *, batch_size: int = 256, generator: torch.Generator | None = None) -> Predictive:
        """Predictive at images ``x`` (``n x C x H x W``) from ``mc_samples`` draws of the outputs.

        Categorical: the probabilities averaged over the draws; Gaussian: unit-variance noise around each draw.
        Evaluated in chunks of ``batch_size`` images.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        draws = []
        for start in range(0, x.shape[0], batch_size):
            mean, var, _ = self.latent(x[start:start + batch_size])
            draws.append(sample_outputs(mean, var, self.mc_samples, generator))
        f = torch.cat(draws, 1)
        if self.likelihood == "categorical":
            return Predictive(f, Categorical(self.num_outputs))
        return Predictive(f, Gaussian(noise_scale=1.0))


def _int_tuple(values, name: str) -> tuple[int, ...]:
    if not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, got {values!r}")
    return tuple(check_positive_int(v, name) for v in values)
