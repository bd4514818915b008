"""Masked (node-sparse) Bayesian MLP of Kong et al. (ICML 2023): a binary mask on every hidden node.

Hidden layers are ``h_l = m_l * act(W_l h_{l-1} + b_l)`` with masks ``m_l`` in ``{0, 1}^{p_l}`` under the prior
``pi(m_l) proportional to exp(-(lambda log n)^5 s_l^2) / C(p_l, s_l)``, ``s_l = |m_l|``: every mask size ``s``
has prior mass proportional to ``exp(-(lambda log n)^5 s^2)``, spread uniformly over the ``C(p, s)`` masks of
that size. Weights and biases carry an elementwise Cauchy (or Normal) prior; for regression the noise
variance has the conjugate prior ``sigma^2 ~ InvGamma(1, b)``.

The masks are discrete. They are stored in the flat vector ``theta`` (as 0.0/1.0 after the network's
weights, before the likelihood's parameters), so that posterior draws carry them and every ``ProbModel``
method (``predict_f``, ``log_likelihood``, ``predictive``) uses the masks of each draw. The mask prior is
evaluated at the rounded masks, so it is piecewise constant in ``theta`` and the gradient of the log density
with respect to a mask entry is that of the likelihood alone (the quantity the sampler's death proposal
uses). Gradient-based samplers would move the mask entries continuously: sample this model with the
masked Gibbs sampler (``inference.sample_masked``), which updates the weights by HMC given masks and noise,
the masks by Metropolis-Hastings birth/death moves and the noise variance from its conjugate conditional.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions.transforms import PowerTransform

from probnets import priors as priors_lib
from probnets.bnn import BNN
from probnets.likelihoods import Gaussian, Likelihood
from probnets.model import Batch, LogDensity, ProbModel
from probnets.spec import ParamSpec
from probnets.validation import check_positive_float, check_positive_int, check_theta

WEIGHT_PRIORS = ("cauchy", "normal")


def mask_size_log_prior(sizes: Tensor, width: int, penalty: float) -> Tensor:
    """Normalised log prior of a mask with ``sizes`` active nodes out of ``width``.

    ``log pi(m) = -penalty * s^2 - log C(width, s) - log Z`` with ``Z = sum_{s=0}^{width} exp(-penalty * s^2)``,
    so that the induced distribution of the size ``s`` is ``exp(-penalty * s^2) / Z``.

    Args:
        sizes: Active-node counts ``(...)`` (integer-valued floats).
        width: Number of nodes ``p`` in the layer.
        penalty: ``(lambda log n)^5``.

    Returns:
        Log prior ``(...)``.
    """
    grid = torch.arange(width + 1, dtype=torch.float64)
    log_z = float(torch.logsumexp(-penalty * grid**2, 0))
    log_binomial = (math.lgamma(width + 1) - torch.lgamma(sizes + 1) - torch.lgamma(width - sizes + 1))
    return -penalty * sizes**2 - log_binomial - log_z


class MaskedBNN(ProbModel):
    """An MLP with a node mask per hidden layer (Kong et al. 2023), masks stored in ``theta``.

    Parameters are named ``layers.{l}.weight``/``layers.{l}.bias`` (as in :class:`~probnets.BNN`), then
    ``masks.{l}`` (``p_l`` entries, 0.0 or 1.0) for every hidden layer, then the likelihood's parameters.

    Args:
        in_features: Input dimension ``d``.
        widths: Allocated hidden widths ``p_l`` (at least one hidden layer).
        out_features: Number of targets (regression) or classes (classification).
        num_data: ``n`` of the mask prior (the training-set size in the paper).
        mask_lambda: ``lambda`` of the mask prior (the paper uses 0.1 for regression, 0.05 for images).
        activation: Hidden activation (ReLU in the paper), a name or a callable.
        weight_prior: ``"cauchy"`` (the paper's default), ``"normal"``, or any elementwise distribution.
        prior_scale: Scale of the Cauchy/Normal weight prior (1.0 UCI, 0.3 on the paper's toy).
        noise_rate: ``b`` of the noise-variance prior ``sigma^2 ~ InvGamma(1, b)`` (default likelihood only).
        likelihood: Default: Gaussian with the ``InvGamma(1, noise_rate)`` variance prior (sampled on
            ``log sigma``). A fixed-noise ``Gaussian``, ``Bernoulli`` or ``Categorical`` also work; a Gaussian
            whose noise scale has another prior is rejected (the sampler needs the conjugate prior).
        init_active: Fraction of each layer's nodes active at initialisation (the paper allocates 1.1 times
            the initial width, i.e. ~0.9).

    Example:
        >>> model = MaskedBNN(1, [50, 50], num_data=20, prior_scale=0.3)
        >>> theta = model.init_theta(4)
        >>> model.predict_f(theta, torch.randn(7, 1)).shape
        torch.Size([4, 7, 1])
    """

    def __init__(self, in_features: int, widths: Sequence[int] = (100,), out_features: int = 1, *, num_data: int,
                 mask_lambda: float = 0.1, activation: str | Callable[[Tensor], Tensor] = "relu",
                 weight_prior: str | torch.distributions.Distribution = "cauchy", prior_scale: float = 1.0,
                 noise_rate: float = 1.0, likelihood: Likelihood | None = None, init_active: float = 0.9):
        widths = tuple(widths)
        if not widths:
            raise ValueError("widths must name at least one hidden layer (the masks sit on hidden nodes)")
        self.num_data = check_positive_int(num_data, "num_data")
        self.mask_lambda = check_positive_float(mask_lambda, "mask_lambda")
        self.prior_scale = check_positive_float(prior_scale, "prior_scale")
        self.noise_rate = check_positive_float(noise_rate, "noise_rate")
        if not (isinstance(init_active, (int, float)) and 0.0 <= init_active <= 1.0):
            raise ValueError(f"init_active must be a fraction in [0, 1], got {init_active!r}")
        self.init_active = float(init_active)
        if isinstance(weight_prior, str):
            if weight_prior not in WEIGHT_PRIORS:
                raise ValueError(f"weight_prior must be one of {WEIGHT_PRIORS} or a distribution, got {weight_prior!r}")
            # Zero-dimensional float64 parameters: exact in float64, and they leave float32 weights float32.
            prior = (dist.Cauchy if weight_prior == "cauchy" else dist.Normal)(
                torch.tensor(0.0, dtype=torch.float64), torch.tensor(self.prior_scale, dtype=torch.float64))
        else:
            prior = weight_prior
        if likelihood is None:
            variance_prior = dist.InverseGamma(torch.tensor(1.0), torch.tensor(self.noise_rate))
            likelihood = Gaussian(noise_prior=dist.TransformedDistribution(variance_prior,
                                                                             [PowerTransform(torch.tensor(0.5))]))
            self.conjugate_noise = True
        else:
            if isinstance(likelihood, Gaussian) and likelihood.learned:
                raise ValueError("likelihood: a Gaussian with a learned noise scale must use MaskedBNN's conjugate "
                                 "prior sigma^2 ~ InvGamma(1, noise_rate); leave likelihood=None and set noise_rate")
            self.conjugate_noise = False
        self.net = BNN(in_features, widths, out_features, activation=activation, prior=prior, likelihood=likelihood)
        self.in_features, self.widths, self.out_features = self.net.in_features, widths, self.net.out_features
        self.activation, self.activation_name = self.net.activation, self.net.activation_name
        self.likelihood, self.num_latent = self.net.likelihood, self.net.num_latent
        self.net_spec = self.net.net_spec
        self.mask_spec = ParamSpec.from_shapes({f"masks.{layer}": (w,) for layer, w in enumerate(widths)})
        self.spec = self.net_spec + self.mask_spec + self.likelihood.spec
        #: ``(lambda log n)^5``, the coefficient of ``s^2`` in the log mask prior.
        self.mask_penalty = (self.mask_lambda * math.log(self.num_data)) ** 5
        self._mask_log_prior = [mask_size_log_prior(torch.arange(w + 1, dtype=torch.float64), w, self.mask_penalty)
                                for w in widths]
        shared = {id(p) for p in self.net.priors.values()}
        self._shared_prior = next(iter(self.net.priors.values())) if len(shared) == 1 else None

    def __repr__(self) -> str:
        return (f"MaskedBNN({self.in_features} -> {list(self.widths)} -> {self.num_latent}, activation="
                f"{self.activation_name!r}, D={self.spec.dim}, likelihood={type(self.likelihood).__name__}, "
                f"mask_penalty={self.mask_penalty:.3g})")

    @property
    def mask_slice(self) -> slice:
        """The entries of ``theta`` holding every hidden layer's mask, in layer order."""
        return slice(self.net_spec.dim, self.net_spec.dim + self.mask_spec.dim)

    def masks(self, theta: Tensor) -> list[Tensor]:
        """Each hidden layer's mask ``(..., p_l)`` (views of ``theta``)."""
        check_theta(theta, self.spec.dim)
        named = self.mask_spec.unflatten(theta[..., self.mask_slice])
        return [named[f"masks.{layer}"] for layer in range(len(self.widths))]

    def active_fraction(self, theta: Tensor) -> Tensor:
        """Fraction of active nodes per hidden layer, ``(..., L)``."""
        return torch.stack([m.round().mean(-1) for m in self.masks(theta)], -1)

    def log_prior(self, theta: Tensor) -> Tensor:
        check_theta(theta, self.spec.dim)
        weights = theta[..., : self.net_spec.dim]
        if self._shared_prior is not None:  # one elementwise prior: a single call over all weights
            lp = priors_lib.log_prob(self._shared_prior, weights, 1)
        else:
            params = self.net_spec.unflatten(weights)
            lp = sum(priors_lib.log_prob(self.net.priors[name], params[name], len(shape))
                     for name, shape in zip(self.net_spec.names, self.net_spec.shapes))
        for mask, table in zip(self.masks(theta), self._mask_log_prior):
            lp = lp + table.to(theta.device, theta.dtype)[
                mask.detach().round().sum(-1).nan_to_num(0.0).long().clamp(0, len(table) - 1)]
        if self.conjugate_noise:
            lp = lp + self._log_noise_prior(self.likelihood_params(theta)[Gaussian.PARAM])
        else:
            lp = lp + self.likelihood.log_prior(self.likelihood_params(theta))
        return lp

    def _log_noise_prior(self, log_scale: Tensor) -> Tensor:
        """Log density of ``u = log sigma`` when ``sigma^2 ~ InvGamma(1, b)`` (Jacobian included):
        ``log b + log 2 - 2u - b exp(-2u)``; the likelihood's ``noise_prior`` in closed form."""
        return math.log(2.0 * self.noise_rate) - 2.0 * log_scale - self.noise_rate * torch.exp(-2.0 * log_scale)

    def predict_f(self, theta: Tensor, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Latent outputs ``(..., n, m)`` for ``theta`` ``(..., D)`` and ``x`` ``(n, d)``, each draw with its own
        masks (``BNN.predict_f``'s checks and chunking over this model's masked ``_forward``)."""
        return BNN.predict_f(self, theta, x, chunk_size=chunk_size)

    def _forward(self, theta: Tensor, x: Tensor) -> Tensor:
        """``theta`` ``(S, D)``, ``x`` ``(n, d)`` -> ``(S, n, m)``."""
        params = self.net_spec.unflatten(theta[:, : self.net_spec.dim])
        masks = self.masks(theta)
        h = x
        for layer in range(len(self.widths) + 1):
            h = torch.matmul(h, params[f"layers.{layer}.weight"].transpose(-1, -2))
            h = h + params[f"layers.{layer}.bias"].unsqueeze(-2)
            if layer < len(self.widths):
                h = masks[layer].unsqueeze(-2) * self.activation(h)
        return h

    def init_theta(self, num: int, *, generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
        """Starting points ``(num, D)``: the network as :meth:`BNN.init_theta`, the first
        ``round(init_active * p_l)`` nodes of every layer active."""
        theta = self.net.init_theta(num, generator=generator, dtype=dtype)
        masks = [(torch.arange(w) < round(self.init_active * w)).to(theta.dtype).expand(num, w) for w in self.widths]
        return torch.cat([theta[:, : self.net_spec.dim], *masks, theta[:, self.net_spec.dim:]], -1)

    def prepare_batch(self, batch: Batch) -> Batch:
        return self.net.prepare_batch(batch)

    def logdensity(self, batch: Batch, *, temperature: float = 1.0, compile: bool = False) -> LogDensity:
        """Log posterior; for the paper's setting (ReLU, a zero-centred Cauchy/Normal weight prior, Gaussian
        likelihood) its gradient is written out (``probnets.masked_density``) instead of taken by autograd;
        else ``compile`` as in ``ProbModel.logdensity``."""
        generic = super().logdensity(batch, temperature=temperature)
        from probnets.masked_density import MaskedMLPLogDensity, supports

        if supports(self):
            self._compiled_if(generic, compile)  # validates compile
            return MaskedMLPLogDensity(self, self.prepare_batch(batch), temperature, generic.fn)
        return self._compiled_if(generic, compile)

    def noise_variance_conditional(self, theta: Tensor, batch: Batch) -> torch.distributions.Distribution | None:
        """The full conditional of the noise variance given weights, masks and data (``None`` when the model
        has no conjugate noise): ``sigma^2 | rest ~ InvGamma(1 + N/2, b + SSE/2)`` with ``N`` residuals.

        Args:
            theta: Current states ``(..., D)``.
            batch: Prepared ``(x, y)`` (:meth:`prepare_batch`).

        Returns:
            An ``InverseGamma`` with batch shape ``(...)``.
        """
        if not self.conjugate_noise:
            return None
        x, y = batch
        sse = (y - self.predict_f(theta, x)).square().sum((-2, -1))
        return dist.InverseGamma(torch.full_like(sse, 1.0 + y.numel() / 2), self.noise_rate + sse / 2)

    def with_noise_variance(self, theta: Tensor, variance: Tensor) -> Tensor:
        """``theta`` with its noise scale set to ``sqrt(variance)`` (``variance`` ``(...)``); a new tensor."""
        out = theta.clone()
        out[..., self.spec.slice(Gaussian.PARAM)] = 0.5 * variance.log().unsqueeze(-1).to(theta.dtype)
        return out


__all__ = ["WEIGHT_PRIORS", "MaskedBNN", "mask_size_log_prior"]
