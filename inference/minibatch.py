"""Minibatches for stochastic-gradient samplers: a reproducible batch stream and the scaled log density.

With ``N`` data and a minibatch ``B``, the log posterior is estimated without bias by
``log p(theta) + (N / |B|) sum_{i in B} log p(y_i | x_i, theta) / T``. The runner draws one batch per step
from a :class:`Minibatches` stream and hands it to the algorithm's ``step``, which evaluates
``MinibatchLogDensity.at(batch)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from probnets.model import Batch, LogDensity, ProbModel
from probnets.validation import check_positive_int

#: Seeds the epoch permutations apart from the sampler's own generator, so that the order of minibatches
#: does not depend on how many random numbers the sampler has drawn.
_ORDER_SEED_OFFSET = 0x5EED


class Minibatches:
    """An endless, reproducible stream of minibatches over a data set.

    Tensors ``(x, y)`` are shuffled afresh every epoch by a permutation seeded with ``(seed, epoch)``; the
    last batch of an epoch may be smaller. A ``torch.utils.data.DataLoader`` is iterated as it is; when its
    sampler has a ``torch.Generator`` (``DataLoader(..., shuffle=True, generator=torch.Generator())``), that
    generator is reseeded with ``(seed, epoch)`` at every epoch so that a resumed run sees the same order.

    Args:
        data: ``(x, y)`` with ``n`` rows, or a ``DataLoader`` yielding ``(x, y)`` pairs.
        batch_size: Rows per batch (tensors only; a ``DataLoader`` has its own).
        seed: Seeds the epoch order.
    """

    def __init__(self, data: Batch | torch.utils.data.DataLoader, batch_size: int | None, *, seed: int):
        self.seed = int(seed)
        self.epoch, self.index = 0, 0
        if isinstance(data, torch.utils.data.DataLoader):
            if batch_size is not None:
                raise ValueError("batch_size is set by the DataLoader itself; pass batch_size=None with a DataLoader")
            self.loader, self.data = data, None
            self.num_data = len(data.dataset)
            self.batches_per_epoch = len(data)
        else:
            self.loader, self.data = None, data
            self.num_data = data[0].shape[0]
            self.batch_size = check_positive_int(batch_size, "batch_size")
            self.batches_per_epoch = -(-self.num_data // self.batch_size)
        if self.num_data == 0 or self.batches_per_epoch == 0:
            raise ValueError("data has no rows; at least one observation is needed")
        self._iterator = None
        self._order = None

    def _start_epoch(self) -> None:
        epoch_seed = ((self.seed + _ORDER_SEED_OFFSET) * 1_000_003 + self.epoch) % 2**63
        if self.loader is None:
            generator = torch.Generator().manual_seed(epoch_seed)
            self._order = torch.randperm(self.num_data, generator=generator).to(self.data[0].device)
            return
        generator = getattr(self.loader.sampler, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(epoch_seed)
        self._iterator = iter(self.loader)
        for _ in range(self.index):
            next(self._iterator)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self.index == self.batches_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
            self._iterator = self._order = None
        if self._iterator is None and self._order is None:
            self._start_epoch()
        if self.loader is None:
            rows = self._order[self.index * self.batch_size:(self.index + 1) * self.batch_size]
            batch = (self.data[0][rows], self.data[1][rows])
        else:
            batch = tuple(next(self._iterator))
            if len(batch) != 2:
                raise ValueError(f"the DataLoader must yield (x, y) pairs, got {len(batch)} items")
        self.index += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position (the next batch is the one that followed it)."""
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._iterator = self._order = None
        if self.index == self.batches_per_epoch:
            return
        self._start_epoch()


class MinibatchLogDensity(LogDensity):
    """The log posterior of a ``ProbModel`` estimated on minibatches, ``theta (..., D) -> (...)``.

    ``at(batch)`` is the unbiased minibatch estimate. Calling the object itself (or ``value_and_grad``), as
    samplers do for their initial state, evaluates it on ``default_batch``: the whole data set when it is in
    memory (the exact log posterior), or one minibatch of a ``DataLoader`` (an estimate).

    Args:
        model: The model.
        num_data: ``N``, the size of the whole data set.
        default_batch: The batch used when none is given.
        temperature: Likelihood tempering ``T``.
        dtype: Floating-point type the batches are converted to.
    """

    def __init__(self, model: ProbModel, num_data: int, default_batch: Batch, *, temperature: float = 1.0,
                 dtype: torch.dtype | None = None):
        self.model = model
        self.num_data = check_positive_int(num_data, "num_data")
        self.temperature = temperature
        self.dtype = dtype
        default_batch = self._prepare(default_batch)
        super().__init__(lambda theta: self._value(theta, default_batch), model.spec.dim)

    def _prepare(self, batch: Batch) -> Batch:
        x, y = self.model.prepare_batch(batch)
        if self.dtype is not None:
            x = x.to(self.dtype)
            y = y.to(self.dtype) if torch.is_floating_point(y) else y
        return x, y

    def _value(self, theta: Tensor, batch: Batch) -> Tensor:
        scale = self.num_data / (batch[0].shape[0] * self.temperature)
        return self.model.log_prior(theta) + scale * self.model.log_likelihood(theta, batch).sum(-1)

    def at(self, batch: Batch) -> LogDensity:
        """The minibatch estimate on ``batch`` ``(x, y)``, as a ``LogDensity``."""
        batch = self._prepare(batch)
        return LogDensity(lambda theta: self._value(theta, batch), self.dim)


def at_batch(logdensity: LogDensity, batch: Batch | None) -> LogDensity:
    """The log density to use for one step: the minibatch estimate on ``batch``, or ``logdensity`` itself
    when the step has no batch (full-batch sampling)."""
    return logdensity if batch is None else logdensity.at(batch)
