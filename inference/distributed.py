"""Sampling on ``torch.distributed``: data-parallel chains over sharded data, or independent chains per rank.

Two modes, both run by ``inference.sample(..., distributed=mode)`` in every process of an initialised process
group (``torchrun``; gloo on CPU, nccl on GPU) and both reusing the registered samplers unchanged:

``"data"``
    Every rank holds one shard of the data and the same chains. The log density is a sum over ranks
    (:class:`AllReduced`): each rank evaluates ``log p(theta) / W + (N_r / |B_r|) sum_{B_r} log p(y | x,
    theta) / T`` on a minibatch ``B_r`` of its own ``N_r`` rows (``W`` ranks), and one ``all_reduce`` sums values
    and gradients, so every rank sees the same unbiased estimate of the full-data log posterior (the exact one
    without minibatches, where ``B_r`` is the whole shard). Each rank's minibatch estimates its own shard's
    likelihood (a stratified estimate): unbiased also for shards of unequal sizes. The sampler's generator is
    seeded identically on every rank (the seed and the initial positions are checked), so the Langevin noise
    is the same everywhere and the chains stay identical without ever exchanging positions. Any sampler
    works: the SG-MCMC family on minibatches, NUTS/HMC/ChEES on the exact all-reduced density.

``"chains"``
    Every rank holds all the data and runs its own chains from its own seed (:func:`rank_seed`); the draws
    of all ranks are gathered into one ``SamplePosterior`` (``W * C`` chains, rank-major) on every rank, whose
    cross-chain R-hat and ESS cover all of them.

The collectives need identical call sequences on every rank, so every check here that can fail is decided
on gathered values: all ranks raise the same error instead of some of them waiting forever.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from inference.minibatch import BatchStream, MinibatchLogDensity
from inference.posterior import SamplePosterior
from probnets.model import Batch, LogDensity, ProbModel

MODES = ("data", "chains")


def _dist():
    import torch.distributed as dist

    return dist


def check_mode(mode: Any) -> str | None:
    """``None`` (not distributed) or a mode of :data:`MODES` whose process group is initialised.

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES`.
        RuntimeError: no process group is initialised.
    """
    if mode is None:
        return None
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"distributed must be None or one of {MODES} ('data': data-parallel chains over sharded "
                         f"data; 'chains': independent chains per rank), got {mode!r}")
    world()
    return mode


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; a ``RuntimeError`` saying how to start one if
    there is none."""
    dist = _dist()
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("distributed sampling needs an initialised torch.distributed process group: launch with "
                           "`torchrun --nproc-per-node N ...` and call inference.distributed.init_process_group() "
                           "(or torch.distributed.init_process_group) first")
    return dist.get_rank(), dist.get_world_size()


def init_process_group(backend: str | None = None, *, timeout: float = 600.0) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``), unless one is initialised already.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default nccl when CUDA is available (each rank then uses the GPU
            ``LOCAL_RANK``), gloo otherwise.
        timeout: Seconds a collective may wait for the other ranks before failing (a dead rank must not
            leave the others hanging for ever).

    Returns:
        ``(rank, world_size)``.
    """
    dist = _dist()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise RuntimeError("RANK and WORLD_SIZE are not set: launch with `torchrun --nproc-per-node N ...`")
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    return world()


def destroy_process_group() -> None:
    """Leave the process group (if any): every rank does so once its last collective call is done, before the
    process exits (a gloo group still alive at exit aborts the process)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _device() -> torch.device:
    """Where collectives of small bookkeeping tensors run (nccl only moves CUDA tensors)."""
    if _dist().get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather(tensor: Tensor) -> list[Tensor]:
    """Every rank's ``tensor`` (same shape on every rank), in rank order."""
    parts = [torch.empty_like(tensor) for _ in range(_dist().get_world_size())]
    _dist().all_gather(parts, tensor.contiguous())
    return parts


def shard(data: Batch, rank: int | None = None, world_size: int | None = None) -> Batch:
    """This rank's contiguous block of the rows of ``(x, y)`` (block sizes differ by at most one row).

    Args:
        data: The whole data set ``(x, y)``, ``n`` rows.
        rank, world_size: Default: those of the process group.

    Returns:
        ``(x[a:b], y[a:b])``, views.
    """
    if rank is None or world_size is None:
        rank, world_size = world()
    x, y = data
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y must have the same number of rows, got {n} and {y.shape[0]}")
    start, stop = (rank * n) // world_size, ((rank + 1) * n) // world_size
    return x[start:stop], y[start:stop]


def split_batch_size(batch_size: int, rank: int, world_size: int) -> int:
    """Rank ``rank``'s share of a global minibatch of ``batch_size`` rows (shares differ by at most one)."""
    if batch_size < world_size:
        raise ValueError(f"batch_size ({batch_size}) is the global minibatch, split over the ranks: it must be at "
                         f"least the number of ranks ({world_size})")
    return batch_size // world_size + (rank < batch_size % world_size)


def check_identical(value: Tensor, name: str) -> None:
    """A ``ValueError`` (on every rank) unless ``value`` is the same on every rank."""
    value = value.detach().to(_device(), torch.float64 if value.is_floating_point() else torch.int64).reshape(-1)
    parts = _gather(value)
    if any(not torch.equal(part, parts[0]) for part in parts[1:]):
        raise ValueError(f"{name} must be the same on every rank in data-parallel sampling (the chains are "
                         f"replicated); it differs between ranks")


class AllReduced(LogDensity):
    """A log density that is a sum of per-rank terms: ``sum_r local_r(theta)``.

    Every rank passes its own term; ``value_and_grad`` evaluates it and sums the values and gradients of all
    ranks with one ``all_reduce`` (a ``C x (D + 1)`` buffer), so all ranks return the same tensors. ``at(batch)``
    (a minibatch term, as ``MinibatchLogDensity.at``) is all-reduced as well. Every rank must call it with the
    same ``theta``: it is a collective.

    Args:
        local: This rank's term.
        group: The process group (default: the default group).
    """

    def __init__(self, local: LogDensity, group=None):
        super().__init__(local.__call__, local.dim)
        self.local = local
        self.group = group
        self.uses_own_threads = local.uses_own_threads

    def __call__(self, theta: Tensor) -> Tensor:
        value = self.local(theta).clone()
        _dist().all_reduce(value, group=self.group)
        return value

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        value, grad = self.local.value_and_grad(theta)
        buffer = torch.cat([value.unsqueeze(-1).to(grad.dtype), grad], -1)
        _dist().all_reduce(buffer, group=self.group)
        return buffer[..., 0], buffer[..., 1:]

    def at(self, batch: Batch) -> AllReduced:
        return AllReduced(self.local.at(batch), self.group)


class ShardTerm(MinibatchLogDensity):
    """One rank's term of the data-parallel log posterior: ``log p(theta) / W + (N_r / |B|) sum_B log p(y | x,
    theta) / T`` on a batch ``B`` of this rank's ``N_r`` rows (default batch: the whole shard)."""

    def __init__(self, model: ProbModel, shard: Batch, world_size: int, *, num_data: int | None = None,
                 temperature: float = 1.0, dtype: torch.dtype | None = None):
        self.world_size = world_size
        super().__init__(model, shard[0].shape[0] if num_data is None else num_data, shard, temperature=temperature,
                         dtype=dtype)

    def _value(self, theta: Tensor, batch: Batch) -> Tensor:
        scale = self.num_data / (batch[0].shape[0] * self.temperature)
        return self.model.log_prior(theta) / self.world_size + scale * self.model.log_likelihood(theta, batch).sum(-1)


def data_parallel(model: ProbModel, shard: Batch | torch.utils.data.DataLoader, batch_size: int | None, *,
                  seed: int, temperature: float = 1.0,
                  dtype: torch.dtype | None = None) -> tuple[AllReduced, BatchStream | None]:
    """The all-reduced log posterior over every rank's shard and this rank's minibatch stream.

    Args:
        model: The model (the same on every rank).
        shard: This rank's rows ``(x, y)`` (:func:`shard` cuts them from a whole data set), or a ``DataLoader``
            of this rank's minibatches, e.g. with a ``torch.utils.data.distributed.DistributedSampler`` (its
            ``N_r`` is ``len(loader.sampler)`` for a ``DistributedSampler``, else ``len(loader.dataset)``; its
            first batch is the default batch, as in single-process sampling).
        batch_size: The global minibatch size ``|B|`` (each rank draws its share, :func:`split_batch_size`, from
            its own shard); ``None``: full batch (the exact log posterior), or the ``DataLoader``'s batches.
        seed: Seeds the minibatch order (the same on every rank).
        temperature: Likelihood tempering ``T``.
        dtype: Floating-point type of the batches (default: that of ``x``, else torch's default).

    Returns:
        ``(logdensity, batches)``; ``batches`` is ``None`` without ``batch_size``.

    Raises:
        ValueError: a shard is empty, or every rank holds the same data (pass each rank its own shard).
    """
    rank, world_size = world()
    loader = shard if isinstance(shard, torch.utils.data.DataLoader) else None
    if loader is not None:
        batches = BatchStream(loader, batch_size, seed=seed)
        shard = next(iter(loader))
        num_rows = batches.num_data
    else:
        num_rows = int(shard[0].shape[0]) if hasattr(shard[0], "shape") and len(shard[0].shape) else 0
    problem: Exception | None = None
    fingerprint = torch.zeros(4, dtype=torch.float64)
    if num_rows == 0:
        problem = ValueError(f"the data shard of rank {rank} is empty: every rank needs at least one row")
    else:
        try:
            x, y = model.prepare_batch(shard)
            fingerprint = torch.tensor([0.0, num_rows, float(x.double().sum()), float(y.double().sum())],
                                       dtype=torch.float64)
        except (ValueError, TypeError) as exc:
            problem = exc
    fingerprint[0] = 0.0 if problem is None else 1.0 if num_rows == 0 else 2.0  # ok, empty, rejected
    parts = torch.stack(_gather(fingerprint.to(_device()))).cpu()
    if bool((parts[:, 0] > 0).any()):
        if problem is not None:
            raise problem
        empty = (parts[:, 0] == 1).nonzero().flatten().tolist()
        rejected = (parts[:, 0] == 2).nonzero().flatten().tolist()
        raise ValueError(f"the data shards of rank(s) {empty} are empty and those of rank(s) {rejected} were "
                         f"rejected (see the error on those ranks): every rank needs valid rows")
    if world_size > 1 and bool((parts == parts[0]).all()):
        raise ValueError("every rank holds the same data: in data-parallel sampling each rank passes its own shard "
                         "(inference.distributed.shard(data) cuts it from the whole data set)")
    dtype = dtype or (x.dtype if torch.is_floating_point(x) else torch.get_default_dtype())
    if loader is None:
        local_batch = None if batch_size is None else split_batch_size(batch_size, rank, world_size)
        batches = None if local_batch is None else BatchStream((x, y), local_batch, seed=seed, prepared=True)
    logdensity = AllReduced(ShardTerm(model, (x, y), world_size, num_data=num_rows, temperature=temperature,
                                      dtype=dtype))
    return logdensity, batches


def rank_seed(seed: int) -> int:
    """This rank's seed in ``"chains"`` mode: the ``rank``-th of ``world_size`` seeds drawn from ``seed``."""
    rank, world_size = world()
    seeds = torch.randint(2**62, (world_size,), generator=torch.Generator().manual_seed(int(seed)))
    return int(seeds[rank])


def rank_path(path: str | os.PathLike | None) -> Path | None:
    """This rank's checkpoint file: ``path`` with ``.rank<r>`` appended (ranks hold different states)."""
    if path is None:
        return None
    rank, _ = world()
    return Path(f"{path}.rank{rank}")


def gather_chains(posterior: SamplePosterior) -> SamplePosterior:
    """The chains of every rank in one ``SamplePosterior`` (rank-major), returned on every rank.

    Draws and statistics are concatenated along the chain dimension; ``info`` takes rank 0's settings with the
    longest ``wall_time`` and the summed ``grad_evals``; ``final_state`` is dropped (each
    rank keeps its own chains' state).
    """
    world()
    shape = torch.tensor(posterior.samples.shape, device=_device())
    shapes = torch.stack(_gather(shape)).cpu()
    if not bool((shapes == shapes[0]).all()):
        raise ValueError(f"every rank must run the same number of chains and draws to gather them, got shapes "
                         f"{[tuple(s.tolist()) for s in shapes]}")

    def cat(tensor: Tensor) -> Tensor:
        return torch.cat(_gather(tensor), 0)

    info = dict(posterior.info)
    if "wall_time" in info:
        info["wall_time"] = float(torch.stack(_gather(torch.tensor(float(info["wall_time"]), device=_device()))).max())
    if "grad_evals" in info:
        info["grad_evals"] = int(torch.stack(_gather(torch.tensor(int(info["grad_evals"]), device=_device()))).sum())
    return SamplePosterior(
        cat(posterior.samples),
        {k: cat(v) for k, v in sorted(posterior.sample_stats.items())},
        warmup_stats={k: cat(v) for k, v in sorted(posterior.warmup_stats.items())},
        spec=posterior.spec, info=info, constrain=posterior.constrain,
        log_weights=None if posterior.log_weights is None else cat(posterior.log_weights))


__all__ = ["MODES", "AllReduced", "ShardTerm", "check_identical", "check_mode", "data_parallel",
           "destroy_process_group", "gather_chains", "init_process_group", "rank_path", "rank_seed", "shard",
           "split_batch_size", "world"]
