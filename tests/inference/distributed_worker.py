"""Two gloo processes on loopback running the distributed-sampling scenarios of test_distributed.py.

``launch`` spawns the ranks once (importing torch costs seconds per process); each rank runs every scenario and
saves its results to ``out/rank<r>.pt``, which the tests read. A hang is cut off by the join deadline.
"""

from __future__ import annotations

import datetime
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import inference
from inference import distributed
from sampler_contract import InterruptingLikelihood, _Interrupt, conjugate_regression

WORLD_SIZE = 2
#: Data-parallel runs compared across ranks and with one process: short, minibatches of 10 (5 per rank).
SHORT = dict(num_chains=4, num_warmup=20, num_samples=30, thin=1, seed=7)
#: The contract's SGLD minibatch regression (TestSGLD.minibatch_regression), data-parallel: 2 shards of 20 rows.
MCSE_RUN = dict(method="sgld", num_chains=64, num_warmup=300, num_samples=2000, thin=5, step_size=5e-4,
                batch_size=10, seed=22)
#: Independent SGHMC chains, 8 per rank (the contract's regression settings, fewer chains per process).
CHAINS_RUN = dict(method="sghmc", num_chains=8, num_warmup=1000, num_samples=2000, thin=5, step_size=0.05, seed=3)
QUIET = dict(progress=False, check_convergence=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, timeout: float = 300.0) -> None:
    """Run ``_worker`` on ``WORLD_SIZE`` ranks; kill them and raise if they have not finished after ``timeout``."""
    context = mp.spawn(_worker, args=(WORLD_SIZE, free_port(), str(out)), nprocs=WORLD_SIZE, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
            raise TimeoutError(f"the distributed workers did not finish within {timeout} s")


def _error(fn) -> str:
    try:
        fn()
    except (ValueError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def _interrupted_and_resumed(model, shard, path: Path) -> dict:
    """Data-parallel SGHMC with minibatches, uninterrupted; then stopped two thirds through (every rank at the
    same step, before that step's all-reduce) and resumed from the ranks' checkpoints."""
    settings = dict(method="sghmc", batch_size=10, distributed="data", step_size=1e-2, checkpoint_every=7, **SHORT,
                    **QUIET)
    likelihood = InterruptingLikelihood(model)
    uninterrupted = inference.sample(model, shard, **settings).samples
    total_calls = likelihood.calls
    likelihood.restart(2 * total_calls // 3)
    try:
        inference.sample(model, shard, checkpoint=path, **settings)
        stopped = False
    except _Interrupt:
        stopped = True
    saved = distributed.rank_path(path).exists()
    likelihood.restart()
    resumed = inference.sample(model, shard, checkpoint=path, **settings).samples
    resumed_calls = likelihood.calls
    likelihood.remove()
    return {"resume_stopped": stopped and saved, "resume_calls": (resumed_calls, total_calls),
            "resume_uninterrupted": uninterrupted, "resume_resumed": resumed}


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=120))
    try:
        model, data, _, _ = conjugate_regression()
        shard = distributed.shard(data)
        results = {"rank_seed": distributed.rank_seed(CHAINS_RUN["seed"])}
        for method in ("sgld", "psgld", "sghmc"):
            post = inference.sample(model, shard, method=method, batch_size=10, distributed="data", step_size=1e-3,
                                    **SHORT, **QUIET)
            results[f"short_{method}"] = post.samples
        results["full_batch_sgld"] = inference.sample(model, shard, method="sgld", distributed="data",
                                                      step_size=1e-3, **SHORT, **QUIET).samples
        dataset = torch.utils.data.TensorDataset(*data)
        loader = torch.utils.data.DataLoader(dataset, batch_size=20, sampler=torch.utils.data.distributed.
                                             DistributedSampler(dataset, shuffle=False))  # the whole rank share
        results["loader_full_batch_sgld"] = inference.sample(model, loader, method="sgld", distributed="data",
                                                             step_size=1e-3, **SHORT, **QUIET).samples
        shuffled = torch.utils.data.DataLoader(dataset, batch_size=5, sampler=torch.utils.data.distributed.
                                               DistributedSampler(dataset, seed=1))
        results["loader_sgld"] = inference.sample(model, shuffled, method="sgld", distributed="data",
                                                  step_size=1e-3, **SHORT, **QUIET).samples
        results["mcse"] = inference.sample(model, shard, distributed="data", **MCSE_RUN, **QUIET).samples
        results.update(_interrupted_and_resumed(model, shard, Path(out) / "resume.ckpt"))
        chains = inference.sample(model, data, distributed="chains", **CHAINS_RUN, **QUIET)
        results["chains"] = chains.samples
        results["chains_info"] = chains.info

        tiny = dict(method="sgld", num_chains=2, num_warmup=1, num_samples=2, thin=1, **QUIET)
        empty = (data[0][:0], data[1][:0]) if rank == 1 else shard
        results["error_empty"] = _error(lambda: inference.sample(model, empty, distributed="data", **tiny))
        results["error_same_data"] = _error(lambda: inference.sample(model, data, distributed="data", **tiny))
        results["error_seed"] = _error(lambda: inference.sample(model, shard, distributed="data", seed=rank, **tiny))
        results["error_chains"] = _error(lambda: inference.sample(model, data, distributed="chains",
                                                                  **dict(tiny, num_chains=2 + rank)))
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
