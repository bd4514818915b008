"""The posterior of deterministic variational inference: a trained moment-propagation network.

Its predictive is one deterministic forward pass (mean and variance of ``y`` per point and output) instead of a
mixture over draws; the variational distribution ``q(W)`` (mean-field Gaussian) can still be sampled and
exported to ArviZ through its :class:`~inference.gaussian_posterior.GaussianPosterior`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from inference.gaussian_posterior import GaussianPosterior
from probnets.likelihoods import NormalMarginal
from probnets.model import Batch
from probnets.moment import MomentNetwork, draw_log_likelihood, gaussian_predictive, predictive_moments
from probnets.predictive import Predictive
from probnets.spec import ParamSpec
from probnets.validation import check_positive_int

_FORMAT = 1


class MomentPosterior:
    """A trained :class:`~probnets.moment.MomentNetwork` and its training record.

    Args:
        network: The network; its parameters are the variational means and log variances.
        info: Plain run metadata (method, settings, losses, skipped steps, wall time, ...).
    """

    def __init__(self, network: MomentNetwork, info: dict[str, Any] | None = None):
        if not isinstance(network, MomentNetwork):
            raise TypeError(f"network must be a probnets.moment.MomentNetwork, got {type(network).__name__}")
        self.network = network.eval()
        self.info = dict(info or {})

    def __repr__(self) -> str:
        return f"MomentPosterior(method={self.network.method!r}, dim={self.spec.dim})"

    @property
    def spec(self) -> ParamSpec:
        return self.network.spec

    @torch.no_grad()
    def moments(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Predictive mean, latent variance and noise variance of ``y`` at ``x`` (``n x d``), each ``n x m``."""
        return predictive_moments(self.network(x))

    def predictive(self, x: Tensor, *, num_samples: int | None = None,
                   generator: torch.Generator | None = None) -> Predictive:
        """The predictive at ``x`` (``n x d``) as a one-component ``Predictive`` ``N(mean, variance)`` (from one
        forward pass); with ``num_samples``, the Monte Carlo predictive of the same ``q`` instead (see
        :meth:`mc_predictive`)."""
        if num_samples is not None:
            return self.mc_predictive(x, num_samples, generator=generator)
        mean, latent, noise = self.moments(x)
        return gaussian_predictive(mean, latent + noise)

    @torch.no_grad()
    def mc_predictive(self, x: Tensor, num_samples: int, *, generator: torch.Generator | None = None) -> Predictive:
        """Mixture predictive over ``num_samples`` networks drawn from ``q`` (MP-GELU gates included): draw ``s``
        has latent mean ``l_s`` (``f``) and noise scale ``exp(s_s / 2)`` per point."""
        out = self.network.sample_forward(x, check_positive_int(num_samples, "num_samples"), generator=generator)
        m = self.network.out_features
        return Predictive(out[..., :m], NormalMarginal(), {"scale": (0.5 * out[..., m:]).exp()})

    @torch.no_grad()
    def to_gaussian_posterior(self) -> GaussianPosterior:
        """``q(W)`` as a one-component mean-field :class:`~inference.gaussian_posterior.GaussianPosterior`
        (mean and scale ``1 x D`` in :attr:`spec` order); the MP-GELU gates are not part of it."""
        mean, variance = self.network.variational_parameters()
        return GaussianPosterior(mean.unsqueeze(0), variance.sqrt().unsqueeze(0), spec=self.spec,
                                 info={"method": self.network.method, **self.info})

    def sample(self, sample_shape: Sequence[int] = (), *, generator: torch.Generator | None = None) -> Tensor:
        """Weights drawn from ``q``, ``*sample_shape x D`` (in :attr:`spec` order)."""
        return self.to_gaussian_posterior().sample(sample_shape, generator=generator)

    @torch.no_grad()
    def to_arviz(self, data: Batch | None = None, *, num_draws: int = 200, generator: torch.Generator | None = None,
                 chunk_size: int = 256):
        """ArviZ ``InferenceData`` of ``num_draws`` weight draws from ``q`` (one chain, named by :attr:`spec`).

        Given ``data`` ``(x, y)``, also the ``log_likelihood`` group: ``log N(y_i | l_i, exp(s_i))`` of every
        draw's network at every point (summed over outputs; MP-GELU draws one set of gates per draw and point,
        so its entries are those of the weights and gates together), and ``observed_data`` (``y`` as ``n x m``).
        """
        draws = self.to_gaussian_posterior().to_sample_posterior(num_draws, generator=generator)
        if data is None:
            return draws.inference_data()
        x, y = self.network.check_data(data)
        ll = torch.cat([draw_log_likelihood(self.network.forward_draws(theta, x, generator=generator), y)
                        for theta in draws.flat_samples().split(check_positive_int(chunk_size, "chunk_size"))])
        return draws.inference_data(ll.reshape(1, num_draws, -1), y)

    def save(self, path: str | os.PathLike) -> None:
        """Write the network's configuration, parameters and ``info`` (plain values) to ``path``."""
        info = {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool, type(None), Tensor))}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": _FORMAT, "config": self.network.config(), "dtype": str(self.network.dtype),
                    "state_dict": self.network.state_dict(), "info": info}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MomentPosterior:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("format") != _FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a MomentPosterior file of format {_FORMAT}")
        dtype = getattr(torch, saved["dtype"].removeprefix("torch."))
        network = MomentNetwork(**saved["config"], dtype=dtype)
        network.load_state_dict(saved["state_dict"])
        return cls(network, saved["info"])
