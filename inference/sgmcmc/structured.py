"""Structured SG-MCMC (Alexos, Boyd and Mandt 2022): SG-MCMC on a mean-field (structured) family, with the
expectation over the other parameter groups replaced by the chain's own history.

``theta`` is partitioned into groups ``theta_1 .. theta_K`` (``groups``). The structured variational family
``q = prod_k q_k`` has the CAVI optimum ``q_k ~ exp(E_{q_-k} log p(theta, D))``; structured SG-MCMC samples it
by Langevin steps on each group's self-averaged energy, the expectation over ``theta_-k`` taken under the
empirical distribution ``q_hat`` of stored iterates (``history``, one ring buffer per chain). Per step, the
gradient of group ``k`` is estimated from parameter vectors that mix live entries (the current ``theta``) with
stored ones:

- plain variant (``live_probability=None``): ``K`` passes; in pass ``k`` only group ``k`` is live and every
  other group takes a uniformly random stored iterate of its own; group ``k``'s gradient is that of pass ``k``.
- dropout variant (``live_probability=p``): ``L = num_passes`` passes; in each pass (and chain) every group is
  live with probability ``p``, else drawn from its history; group ``k``'s gradient is ``1 / (p L)`` times the
  sum of its gradients over the passes where it is live, an unbiased estimate of the plain variant's at
  ``p -> 0``, and SG-MCMC's itself at ``p = 1``. Intermediate ``p`` interpolate between the mean-field and the
  full posterior. The whole log density (prior included) is weighted; Alexos et al. add the live groups'
  log prior unweighted, which has the same expectation.

The mixed vectors, and the current ``theta`` (which gives ``lp`` and lets the non-finite guard see the actual
position), are evaluated in ONE vectorised call of the log density on ``(1 + P) * C`` rows, so a step costs
``1 + K`` (plain) or ``1 + L`` (dropout) gradient evaluations per chain; only live entries receive gradient
(stored entries are constants). ``K = 1`` in the plain variant is ordinary SG-MCMC, bit for bit (one evaluation
per step).

Start: the first ``plain_warmup`` iterations (default half the warm-up) are ordinary SG-MCMC steps of the base
sampler, which move the chain from its initial position to where the posterior has mass; the history is then
filled with the position reached (``q_hat`` a point mass there) and the structured steps begin, each group moving
with the others held at that point until the history fills with the chain's own iterates. This is Alexos et al.'s
start (an SGD MAP estimate, then structured steps), with the plain phase standing in for the MAP fit. Without it,
a network started at random weights sees the other groups at those random weights, and the self-averaged energy
keeps it there: measured on a small ResNet (``benchmarks/sgmcmc_resnet.py``), structured SGHMC stayed at chance
accuracy. Start at a MAP estimate (``init=``) with ``plain_warmup=0`` to reproduce the paper exactly.

The chain samples the mean-field approximation, not the posterior: on a Gaussian with precision ``Lambda``
and one group per coordinate the stationary law is ``N(mean, diag(1 / Lambda_kk))`` (up to SG-MCMC's step-size
bias and the finite history), so correlations between groups vanish and variances shrink to the conditional
ones; in exchange, chains decorrelate faster, as the slow directions of correlated groups are gone.

Any SG-MCMC base sampler works unchanged (its step evaluates ``logdensity.at(batch)``; here the "batch" it is
handed also carries the history and the generator). Registered: ``structured-sgld``, ``structured-psgld`` and
``structured-sghmc``. Temperature: the noise follows ``inference.sgmcmc.langevin`` (``posterior_temperature=1``
samples the target; the reference code's convention is ``0.5``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from inference.base import Algorithm
from inference.minibatch import at_batch
from inference.sgmcmc import groups as groups_lib
from inference.sgmcmc import history as history_lib
from inference.sgmcmc.psgld import psgld
from inference.sgmcmc.schedules import Schedule
from inference.sgmcmc.sghmc import sghmc
from inference.sgmcmc.sgld import sgld
from probnets.model import Batch, LogDensity
from probnets.validation import check_positive_int

#: Passes of the dropout variant (Alexos et al.'s ResNet-20 setting).
DEFAULT_NUM_PASSES = 16


class StructuredState(NamedTuple):
    """``base``: the base sampler's state; ``history``: the ring buffers of past iterates (``history.History``);
    ``groups`` ``D``: the group id of every coordinate; ``iteration`` ``()``: steps taken (the first
    ``plain_warmup`` are plain)."""

    base: Any
    history: history_lib.History
    groups: Tensor
    iteration: Tensor

    @property
    def position(self) -> Tensor:
        """``C x D``: the chains' current position."""
        return self.base.chain.position if hasattr(self.base, "chain") else self.base.position

    def run_info(self) -> dict[str, int]:
        """Plain facts for the posterior's ``info``: groups and the history buffers' size in bytes."""
        draws = self.history.draws
        return {"num_groups": int(self.groups.max()) + 1, "history_bytes": draws.numel() * draws.element_size()}


class _Step(NamedTuple):
    """What the base sampler's step hands to ``StructuredLogDensity.at`` in place of a minibatch."""

    batch: Batch | None
    history: history_lib.History | None
    generator: torch.Generator


class StructuredLogDensity(LogDensity):
    """The log density with the structured gradient: ``value_and_grad(theta)`` returns the log density at
    ``theta`` ``C x D`` and, per group, the gradient of the passes where the group is live (module docstring).

    Without a history (``at`` not called: the base sampler's ``init``) it is ``logdensity`` itself.

    Args:
        logdensity: The target (a ``MinibatchLogDensity`` for minibatches).
        groups: ``D`` group ids in ``0 .. K - 1``.
        live_probability: ``None`` (plain variant) or ``p`` in ``(0, 1]`` (dropout variant).
        num_passes: ``L`` of the dropout variant.
    """

    def __init__(self, logdensity: LogDensity, groups: Tensor, live_probability: float | None,
                 num_passes: int | None):
        super().__init__(logdensity.__call__, logdensity.dim)
        self.inner = logdensity
        self.uses_own_threads = logdensity.uses_own_threads
        self.groups = groups
        self.num_groups = int(groups.max()) + 1
        self.live_probability = live_probability
        self.num_passes = num_passes
        #: ``K x 1 x D``: group ``k`` is live in pass ``k`` (plain variant).
        self.one_live = (groups == torch.arange(self.num_groups)[:, None])[:, None, :]
        self.history: history_lib.History | None = None
        self.generator: torch.Generator | None = None

    def at(self, step: _Step) -> StructuredLogDensity:
        """Bound to the minibatch, history and generator of one step (``history`` ``None``: a plain step)."""
        bound = copy.copy(self)
        bound.inner, bound.history, bound.generator = at_batch(self.inner, step.batch), step.history, step.generator
        return bound

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        plain = self.live_probability is None
        if self.history is None or (plain and self.num_groups == 1):
            return self.inner.value_and_grad(theta)
        num_chains, dim = theta.shape
        length = self.history.draws.shape[1]
        groups = self.groups.to(theta.device)
        if plain:
            passes, weight = self.num_groups, 1.0
            live = self.one_live.to(theta.device)
        else:
            passes, weight = self.num_passes, 1.0 / (self.live_probability * self.num_passes)
            uniform = torch.rand((passes, num_chains, self.num_groups), generator=self.generator, dtype=theta.dtype,
                                 device=theta.device)
            live = (uniform < self.live_probability).index_select(-1, groups)  # L x C x D
        slots = torch.randint(length, (passes, num_chains, self.num_groups), generator=self.generator,
                              device=theta.device).index_select(-1, groups)
        mixed = torch.where(live, theta, history_lib.draw(self.history, slots))
        value, grad = self.inner.value_and_grad(torch.cat([theta[None], mixed]).reshape(-1, dim))
        value, grad = value.reshape(1 + passes, num_chains), grad.reshape(1 + passes, num_chains, dim)
        # where, not a product: a NaN gradient of a stored (constant) entry must not leak into a live one.
        structured = torch.where(live, grad[1:], 0.0).sum(0)
        return value[0], structured if weight == 1.0 else weight * structured


def structured(base: Callable[..., Algorithm], logdensity: LogDensity, num_warmup: int, *, groups: str | Tensor,
               num_groups: int | None, live_probability: float | None, num_passes: int | None, history_length: int,
               history_thin: int, max_history_bytes: int, group_seed: int, plain_warmup: int | None,
               **base_options) -> Algorithm:
    """Structured SG-MCMC over the base sampler ``base(logdensity, num_warmup, **base_options)`` (``sgld``,
    ``psgld``, ``sghmc`` or a cyclical one); arguments as in ``structured_sgld``."""
    ids = groups_lib.resolve(groups, num_groups, logdensity.dim, getattr(logdensity, "spec", None), group_seed)
    if live_probability is None:
        if num_passes is not None:
            raise ValueError("num_passes is for the dropout variant; set live_probability too, or leave it None")
    else:
        if (isinstance(live_probability, bool) or not isinstance(live_probability, (int, float))
                or not 0 < live_probability <= 1):
            raise ValueError(f"live_probability must be None (plain variant) or in (0, 1], got {live_probability!r}")
        num_passes = check_positive_int(DEFAULT_NUM_PASSES if num_passes is None else num_passes, "num_passes")
    history_length = check_positive_int(history_length, "history_length")
    history_thin = check_positive_int(history_thin, "history_thin")
    max_history_bytes = check_positive_int(max_history_bytes, "max_history_bytes")
    plain_warmup = check_positive_int(num_warmup // 2 if plain_warmup is None else plain_warmup, "plain_warmup",
                                      minimum=0)
    inner = base(StructuredLogDensity(logdensity, ids, live_probability, num_passes), num_warmup, **base_options)

    def init(position: Tensor) -> StructuredState:
        return StructuredState(inner.init(position), history_lib.init(position, history_length, max_history_bytes),
                               ids.to(position.device), torch.zeros((), dtype=torch.long, device=position.device))

    def step(state: StructuredState, batch, generator) -> tuple[StructuredState, dict[str, Tensor]]:
        iteration = int(state.iteration)
        if iteration < plain_warmup:
            base_state, info = inner.step(state.base, _Step(batch, None, generator), generator)
            new = state._replace(base=base_state, iteration=state.iteration + 1)
            if iteration + 1 == plain_warmup:
                new = new._replace(history=history_lib.refill(state.history, new.position))
            return new, info
        base_state, info = inner.step(state.base, _Step(batch, state.history, generator), generator)
        new = state._replace(base=base_state, iteration=state.iteration + 1)
        return new._replace(history=history_lib.push(state.history, new.position, history_thin)), info

    return Algorithm(init, step, inner.is_sampling)


def structured_sgld(logdensity: LogDensity, num_warmup: int, *, step_size: float | Schedule = 1e-4,
                    posterior_temperature: float = 1.0, groups: str | Tensor = "permuted",
                    num_groups: int | None = None, live_probability: float | None = None,
                    num_passes: int | None = None, history_length: int = 1000, history_thin: int = 1,
                    max_history_bytes: int = 2**30, group_seed: int = 0,
                     plain_warmup: int | None = None) -> Algorithm:
    """Structured SGLD as an ``Algorithm`` (module docstring); ``step(state, batch, generator)`` as ``sgld``'s.

    Args:
        logdensity: The target; ``groups="layer"``/``"neuron"`` read its ``spec``.
        num_warmup: Warm-up iterations of the base sampler (their draws are discarded; the history records
            them: a warm-up of at least ``history_length * history_thin`` flushes the transient out of it).
        step_size, posterior_temperature: The base sampler's (``sgld``).
        groups: ``"permuted"`` (balanced random groups, the default), ``"random"``, ``"layer"``, ``"neuron"``
            (``inference.sgmcmc.groups``), or ``D`` explicit group ids.
        num_groups: ``K`` of ``"permuted"`` and ``"random"`` (``None``: ``min(4, D)``; ``1``: ordinary SG-MCMC);
            ``None`` for the other partitions, which fix it.
        live_probability: ``None``: the plain variant (``K`` passes per step); ``p`` in ``(0, 1]``: the dropout
            variant (each group live with probability ``p`` in each of ``num_passes`` passes).
        num_passes: ``L`` of the dropout variant (default 16).
        history_length: Stored iterates per chain (and group).
        history_thin: Store every ``history_thin``-th iterate (the buffer then spans ``history_length *
            history_thin`` iterations).
        max_history_bytes: Refuse larger buffers (``num_chains * history_length * D * itemsize`` bytes;
            default 1 GiB). The size is reported as ``posterior.info["history_bytes"]``.
        group_seed: Seeds the random partitions (fixed by default, so that a resumed run has the same groups).
        plain_warmup: Ordinary SG-MCMC steps before the structured ones (``None``: ``num_warmup // 2``; ``0``:
            structured from the first step, the history a point mass at ``init``); the history is filled with the
            position they reach (module docstring).
    """
    return structured(sgld, logdensity, num_warmup, groups=groups, num_groups=num_groups,
                      live_probability=live_probability, num_passes=num_passes, history_length=history_length,
                      history_thin=history_thin, max_history_bytes=max_history_bytes, group_seed=group_seed,
                      plain_warmup=plain_warmup, step_size=step_size,
                      posterior_temperature=posterior_temperature)


def structured_psgld(logdensity: LogDensity, num_warmup: int, *, step_size: float | Schedule = 1e-3,
                     alpha: float = 0.99, eps: float = 1e-5, posterior_temperature: float = 1.0,
                     groups: str | Tensor = "permuted", num_groups: int | None = None,
                     live_probability: float | None = None, num_passes: int | None = None,
                     history_length: int = 1000, history_thin: int = 1, max_history_bytes: int = 2**30,
                     group_seed: int = 0, plain_warmup: int | None = None) -> Algorithm:
    """Structured pSGLD (the reference code's default base sampler): ``psgld`` options ``step_size``,
    ``alpha``, ``eps``, ``posterior_temperature``; the rest as in ``structured_sgld``."""
    return structured(psgld, logdensity, num_warmup, groups=groups, num_groups=num_groups,
                      live_probability=live_probability, num_passes=num_passes, history_length=history_length,
                      history_thin=history_thin, max_history_bytes=max_history_bytes, group_seed=group_seed,
                      plain_warmup=plain_warmup, step_size=step_size, alpha=alpha, eps=eps,
                      posterior_temperature=posterior_temperature)


def structured_sghmc(logdensity: LogDensity, num_warmup: int, *, step_size: float | Schedule = 1e-2,
                     friction: float = 0.05, posterior_temperature: float = 1.0, groups: str | Tensor = "permuted",
                     num_groups: int | None = None, live_probability: float | None = None,
                     num_passes: int | None = None, history_length: int = 1000, history_thin: int = 1,
                     max_history_bytes: int = 2**30, group_seed: int = 0,
                     plain_warmup: int | None = None) -> Algorithm:
    """Structured scale-adapted SGHMC: ``sghmc`` options ``step_size``, ``friction``,
    ``posterior_temperature``; the rest as in ``structured_sgld``."""
    return structured(sghmc, logdensity, num_warmup, groups=groups, num_groups=num_groups,
                      live_probability=live_probability, num_passes=num_passes, history_length=history_length,
                      history_thin=history_thin, max_history_bytes=max_history_bytes, group_seed=group_seed,
                      plain_warmup=plain_warmup, step_size=step_size, friction=friction,
                      posterior_temperature=posterior_temperature)
