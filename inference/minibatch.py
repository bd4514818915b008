"""Minibatches: shuffled row indices (fits and samplers), a reproducible batch stream, the scaled log density.

With ``N`` data and a minibatch ``B``, the log posterior is estimated without bias by
``log p(theta) + (N / |B|) sum_{i in B} log p(y_i | x_i, theta) / T``. The sampling runner draws one batch per
step from a :class:`BatchStream` and hands it to the algorithm's ``step``, which evaluates
``MinibatchLogDensity.at(batch)``; ``inference.fit`` cuts its data with :class:`Minibatches`.
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
    """Row indices of shuffled minibatches, epoch after epoch: each epoch starts with a fresh permutation of
    ``num_data`` rows from ``generator``, cut into batches of ``batch_size`` (the last one may be smaller).

    Its :meth:`state_dict` goes into ``inference.optim.minimize``'s checkpoints (``state={"batches": batches}``),
    so a run resumed mid-epoch continues with the same permutation.
    """

    def __init__(self, num_data: int, batch_size: int, generator: torch.Generator | None = None):
        self.num_data = check_positive_int(num_data, "num_data")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.generator = generator
        self._order: Tensor | None = None
        self._position = 0

    @property
    def num_batches(self) -> int:
        """Batches per epoch."""
        return -(-self.num_data // self.batch_size)

    def next(self) -> Tensor:
        """The rows of the next minibatch, ``B``."""
        if self._position == 0:
            self._order = torch.randperm(self.num_data, generator=self.generator)
        rows = self._order[self._position:self._position + self.batch_size]
        self._position = (self._position + self.batch_size) % (self.num_batches * self.batch_size)
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"order": self._order, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order, self._position = state["order"], int(state["position"])


class PreparedBatch(tuple):
    """A minibatch ``(x, y)`` cut from data that ``ProbModel.prepare_batch`` has already validated and converted;
    ``MinibatchLogDensity.at`` takes it as it is instead of checking every row again at every step."""


class BatchStream:
    """An endless, reproducible stream of ``(x, y)`` minibatches over a data set, one per sampler step.

    Tensors ``(x, y)`` are cut by :class:`Minibatches` with a generator of its own, seeded with ``seed``, so the
    order of the batches does not depend on the sampler's random numbers. A ``torch.utils.data.DataLoader`` is
    iterated as it is; when its sampler has a ``torch.Generator`` (``DataLoader(..., shuffle=True,
    generator=torch.Generator())``), that generator is reseeded from ``(seed, epoch)`` at every epoch so that a
    resumed run sees the same order; a ``DistributedSampler`` is told the epoch (``set_epoch``), and its rows
    (``len(sampler)``, this rank's share) are the data set's size.

    Args:
        data: ``(x, y)`` with ``n`` rows, or a ``DataLoader`` yielding ``(x, y)`` pairs.
        batch_size: Rows per batch (tensors only; a ``DataLoader`` has its own).
        seed: Seeds the order.
        prepared: The tensors ``(x, y)`` come from ``ProbModel.prepare_batch``: their batches are yielded as
            ``PreparedBatch`` and not validated again.
    """

    def __init__(self, data: Batch | torch.utils.data.DataLoader, batch_size: int | None, *, seed: int,
                 prepared: bool = False):
        self.seed = int(seed) + _ORDER_SEED_OFFSET
        if isinstance(data, torch.utils.data.DataLoader):
            if batch_size is not None:
                raise ValueError("batch_size is set by the DataLoader itself; pass batch_size=None with a DataLoader")
            self.loader, self.data, self.rows = data, None, None
            sharded = isinstance(data.sampler, torch.utils.data.distributed.DistributedSampler)
            self.num_data = len(data.sampler) if sharded else len(data.dataset)
            self.batches_per_epoch = len(data)
            self.epoch, self.index, self._iterator = 0, 0, None
        else:
            self.loader, self.data, self.prepared = None, data, prepared
            self.generator = torch.Generator().manual_seed(self.seed)
            self.rows = Minibatches(data[0].shape[0], batch_size, self.generator)
            self.num_data, self.batches_per_epoch = self.rows.num_data, self.rows.num_batches

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self.loader is None:
            rows = self.rows.next().to(self.data[0].device)
            batch = self.data[0][rows], self.data[1][rows]
            return PreparedBatch(batch) if self.prepared else batch
        if self.index == self.batches_per_epoch:
            self.epoch, self.index, self._iterator = self.epoch + 1, 0, None
        if self._iterator is None:
            self._start_epoch()
        batch = tuple(next(self._iterator))
        if len(batch) != 2:
            raise ValueError(f"the DataLoader must yield (x, y) pairs, got {len(batch)} items")
        self.index += 1
        return batch

    def _start_epoch(self) -> None:
        generator = getattr(self.loader.sampler, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        if isinstance(self.loader.sampler, torch.utils.data.distributed.DistributedSampler):
            self.loader.sampler.set_epoch(self.epoch)  # its order is a function of (its seed, epoch)
        self._iterator = iter(self.loader)
        for _ in range(self.index):
            next(self._iterator)

    def state_dict(self) -> dict[str, Any]:
        if self.loader is None:
            return {"rows": self.rows.state_dict(), "generator": self.generator.get_state()}
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position (the next batch is the one that followed it)."""
        if self.loader is None:
            self.rows.load_state_dict(state["rows"])
            self.generator.set_state(state["generator"])
        else:
            self.epoch, self.index, self._iterator = int(state["epoch"]), int(state["index"]), None


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
        x, y = batch if isinstance(batch, PreparedBatch) else self.model.prepare_batch(batch)
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
