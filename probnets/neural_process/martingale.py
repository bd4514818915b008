"""Martingale posterior neural processes (Lee, Yun, Nam, Fong, Lee; ICLR 2023).

The functional uncertainty comes from pseudo future data instead of a latent variable: a generator turns noise
into ``M`` pseudo-context representations ``R'^k`` conditioned on the real context's ``R``, and each of ``K``
draws gives the predictive ``p_k(y | x) = dec(x, agg(R u R'^k))``. The predictive is the mixture over the draws.

* :class:`MPNP`: on the CNP (mean pooling over ``R u R'^k``).
* :class:`MPANP`: on the CANP; the generator emits a key and a value per pseudo item, joined to the real
  context's keys and values before the cross-attention.

Objective, per task with ``N`` points (context and targets), minimised as its negative divided by ``N``::

    L_marg   = log (1/K) sum_k exp sum_j log p(y_j | x_j, agg(R u R'^k))
    L_amort  = sum_j log p(y_j | x_j, agg(R))
    L_pseudo = log (1/K) sum_k exp sum_j log p(y_j | x_j, agg(R'^k))

``L_marg`` fits the martingale-posterior predictive, ``L_amort`` keeps the encoder/decoder a good amortised
predictor from real data alone, and ``L_pseudo`` makes the pseudo contexts carry information about the task on
their own. This is the structure of the paper's Section 3 as reconstructed in the method notes (the paper's exact
equation text could not be consulted offline); with ``K = 1`` and no pseudo items, ``L_marg = L_amort`` is the
CNP's (CANP's) log-likelihood.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probnets.neural_process.base import NeuralProcess
from probnets.neural_process.parts import PseudoContextGenerator
from probnets.validation import check_positive_int


class MartingaleNP(NeuralProcess):
    """A martingale posterior NP over either path.

    Args:
        dim: Input dimension ``d``.
        num_pseudo: Pseudo-context items ``M`` per draw (0 gives the base conditional NP).
        num_draws: Pseudo-context draws ``K`` per task in the training objective.
        num_inducing: Inducing points of the generator's ISAB.
        num_predictive_samples: Default ``K`` of :meth:`predict` and :meth:`log_likelihood`.
        **kwargs: As :class:`~probnets.neural_process.NeuralProcess` (``path``, ``width``, ...).
    """

    def __init__(self, dim: int = 1, *, num_pseudo: int = 20, num_draws: int = 4, num_inducing: int = 16,
                 num_predictive_samples: int = 50, **kwargs):
        super().__init__(dim, **kwargs)
        self.num_pseudo = check_positive_int(num_pseudo, "num_pseudo", minimum=0)
        self.num_draws = check_positive_int(num_draws, "num_draws")
        self.num_predictive_samples = check_positive_int(num_predictive_samples, "num_predictive_samples")
        out_width = 2 * self.width if self.path.uses_keys else self.width
        self.pseudo_generator = PseudoContextGenerator(self.width, out_width, self.num_heads, num_inducing)

    def pseudo_context(self, values: Tensor, num_draws: int,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Pseudo keys and values, each ``K x B x M x width``, from the context's values ``B x n x width``."""
        out = self.pseudo_generator(values, num_draws, self.num_pseudo, generator)
        return out.chunk(2, -1) if self.path.uses_keys else (out, out)

    def decode_from(self, keys: Tensor, values: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Means and standard deviations ``... x B x m x 1`` from a set of keys and values ``... x B x n x width``."""
        return self.decode(x, self.path.aggregate(keys, values, x))

    def _with_pseudo(self, context_x: Tensor, context_y: Tensor, num_draws: int,
                     generator: torch.Generator | None):
        keys, values = self.path.encode(context_x, context_y)
        pseudo_keys, pseudo_values = self.pseudo_context(values, num_draws, generator)
        lead = (num_draws,) + keys.shape
        return ((keys, values), (pseudo_keys, pseudo_values),
                (torch.cat([keys.expand(lead), pseudo_keys], -2), torch.cat([values.expand(lead), pseudo_values], -2)))

    def forward(self, context_x: Tensor, context_y: Tensor, x: Tensor, *, num_samples: int | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Means and standard deviations ``K x B x m x 1``, one per pseudo-context draw joined to the context."""
        _, _, joint = self._with_pseudo(context_x, context_y, num_samples or self.num_predictive_samples, generator)
        return self.decode_from(*joint, x)

    def loss_terms(self, batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The three negated objectives per point, averaged over the batch: ``marginal``, ``amortized``,
        ``pseudo`` (see the module docstring)."""
        real, pseudo, joint = self._with_pseudo(batch.context_x, batch.context_y, self.num_draws, generator)
        log_k = math.log(self.num_draws)

        def task_log_lik(keys: Tensor, values: Tensor) -> Tensor:
            mean, scale = self.decode_from(keys, values, batch.x)
            return torch.distributions.Normal(mean, scale).log_prob(batch.y).sum((-2, -1))

        terms = {"marginal": torch.logsumexp(task_log_lik(*joint), 0) - log_k,
                 "amortized": task_log_lik(*real),
                 "pseudo": torch.logsumexp(task_log_lik(*pseudo), 0) - log_k}
        return {name: -(value / batch.x.shape[1]).mean() for name, value in terms.items()}

    def loss(self, batch, generator: torch.Generator | None = None) -> Tensor:
        """``-(L_marg + L_amort + L_pseudo) / N``, averaged over the batch."""
        return sum(self.loss_terms(batch, generator).values())


class MPNP(MartingaleNP):
    """Martingale posterior NP on the CNP. Keyword arguments as :class:`MartingaleNP`."""

    def __init__(self, dim: int = 1, **kwargs):
        super().__init__(dim, path="mean", **kwargs)


class MPANP(MartingaleNP):
    """Martingale posterior attentive NP on the CANP. Keyword arguments as :class:`MartingaleNP`."""

    def __init__(self, dim: int = 1, **kwargs):
        super().__init__(dim, path="attention", **kwargs)
