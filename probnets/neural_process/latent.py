"""Latent-variable neural processes: a global latent ``z`` carries the functional uncertainty.

* :class:`NP` (Garnelo et al., 2018b, with the deterministic path of the NPF benchmark): decoder input
  ``(x, r_C, z)`` with a mean-pooled ``r_C``.
* :class:`ANP` (Kim et al., 2019): the same with the attentive deterministic path.

Trained with the evidence lower bound per task, ``E_{q(z | C u T)} sum_j log p(y_j | x_j, r_C, z) -
KL(q(z | C u T) || q(z | C))``, divided by the number of points (one reparameterised sample per task and step).
The predictive mixes ``S`` decoders over ``z ~ q(z | C)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probnets.neural_process.base import NeuralProcess
from probnets.neural_process.parts import LatentPath, normal_noise
from probnets.validation import check_positive_int


class LatentNP(NeuralProcess):
    """A latent-variable NP over either path.

    Args:
        dim: Input dimension ``d``.
        latent_width: Dimension of ``z``.
        num_predictive_samples: Default ``S`` of :meth:`predict` and :meth:`log_likelihood`.
        **kwargs: As :class:`~probnets.neural_process.NeuralProcess` (``path``, ``width``, ...).
    """

    def __init__(self, dim: int = 1, *, latent_width: int = 128, num_predictive_samples: int = 50, **kwargs):
        latent_width = check_positive_int(latent_width, "latent_width")
        super().__init__(dim, feature_width=latent_width, **kwargs)
        self.num_predictive_samples = check_positive_int(num_predictive_samples, "num_predictive_samples")
        self.latent = LatentPath(dim, self.width, self.encoder_layers, latent_width)

    def _decode_with(self, z: Tensor, context_x: Tensor, context_y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        keys, values = self.path.encode(context_x, context_y)
        deterministic = self.path.aggregate(keys, values, x)  # B x m x width
        samples = z.shape[0]
        features = torch.cat([deterministic.expand((samples,) + deterministic.shape),
                              z[:, :, None, :].expand(-1, -1, x.shape[1], -1)], -1)
        return self.decode(x, features)

    def forward(self, context_x: Tensor, context_y: Tensor, x: Tensor, *, num_samples: int | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Means and standard deviations ``S x B x m x 1`` for ``S`` draws of ``z ~ q(z | context)``."""
        q = self.latent(context_x, context_y)
        z = q.loc + q.scale * normal_noise((num_samples or self.num_predictive_samples,) + q.loc.shape, q.loc,
                                           generator)
        return self._decode_with(z, context_x, context_y, x)

    def loss(self, batch, generator: torch.Generator | None = None) -> Tensor:
        """Negative ELBO per point, averaged over the batch."""
        q_all = self.latent(batch.x, batch.y)
        q_context = self.latent(batch.context_x, batch.context_y)
        z = q_all.loc + q_all.scale * normal_noise(q_all.loc.shape, q_all.loc, generator)
        mean, scale = self._decode_with(z[None], batch.context_x, batch.context_y, batch.x)
        log_lik = torch.distributions.Normal(mean[0], scale[0]).log_prob(batch.y).sum((1, 2))
        kl = torch.distributions.kl_divergence(q_all, q_context).sum(-1)
        return -((log_lik - kl) / batch.x.shape[1]).mean()


class NP(LatentNP):
    """Latent NP with a mean-pooled deterministic path. Keyword arguments as :class:`LatentNP`."""

    def __init__(self, dim: int = 1, **kwargs):
        super().__init__(dim, path="mean", **kwargs)


class ANP(LatentNP):
    """Attentive NP (latent path plus attentive deterministic path). Keyword arguments as :class:`LatentNP`."""

    def __init__(self, dim: int = 1, **kwargs):
        super().__init__(dim, path="attention", **kwargs)
