"""Bayesian-optimisation loops over any surrogate kind, with checkpoint and bit-identical resume."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from botorch.acquisition import qLogExpectedImprovement, qLogNoisyExpectedImprovement, qUpperConfidenceBound
from botorch.acquisition.multi_objective import qLogNoisyExpectedHypervolumeImprovement
from botorch.optim import optimize_acqf
from botorch.utils.multi_objective.box_decompositions import DominatedPartitioning
from botorch.utils.sampling import draw_sobol_samples
from torch import Tensor

from inference import checkpoint as checkpoint_io
from inference.progress import ProgressBar
from surrogates.fit import KINDS, check_options, fit_surrogate
from surrogates.names import MULTI_OBJECTIVE, SINGLE_OBJECTIVE
from surrogates.problems import Problem, get_problem



@dataclass
class BOResult:
    """Everything a BO run observed.

    Attributes:
        n_init: Size of the initial design. q: Points per iteration.
        X: Evaluated inputs ``n x d`` (initial design first). Y: Outcomes ``n x num_objectives``.
        best: Best value so far after the initial design and after each iteration (single objective), or
            the dominated hypervolume (multi-objective), ``iterations + 1``.
        regret: ``optimal_value - best`` where the optimum is known, else ``None``.
        fit_time / acq_time: Seconds per iteration spent fitting the surrogate / optimising the acquisition.
    """

    problem: str
    surrogate: str
    acquisition: str
    seed: int
    n_init: int
    q: int
    X: Tensor
    Y: Tensor
    best: list[float] = field(default_factory=list)
    regret: list[float] | None = None
    fit_time: list[float] = field(default_factory=list)
    acq_time: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}


def run_bo(problem: str | Problem, surrogate: str = "gp", acquisition: str | None = None, *, q: int = 1,
           n_init: int = 10, iterations: int = 10, seed: int = 0, surrogate_options: dict | None = None,
           num_restarts: int = 4, raw_samples: int = 64, checkpoint: str | os.PathLike | None = None,
           progress: bool = True) -> BOResult:
    """Run a BO loop: a Sobol initial design, then ``iterations`` rounds of fit -> acquire ``q`` points -> evaluate.

    Args:
        problem: A ``Problem`` or a name known to ``get_problem``.
        surrogate: A kind known to ``fit_surrogate``.
        acquisition: ``"qlognei"`` (default single-objective), ``"qlogei"``, ``"qucb"`` (beta 0.2), or
            ``"qlognehvi"`` (the default and only choice for multi-objective problems).
        q: Points per batch. n_init: Size of the initial Sobol design. iterations: BO rounds.
        seed: Seeds the design, every fit and every acquisition optimisation (iteration ``i`` uses
            ``seed * 100003 + i``), so a run is reproducible and a resumed run identical.
        surrogate_options: Extra keyword arguments for ``fit_surrogate``.
        num_restarts, raw_samples: ``optimize_acqf`` settings.
        checkpoint: File saved after every iteration; if it exists, the run resumes from it.
        progress: Show a progress bar (iteration, best value, fit time).

    Returns:
        A ``BOResult``.
    """
    problem = get_problem(problem) if isinstance(problem, str) else problem
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a Problem or a problem name, got {type(problem).__name__}")
    multi = problem.num_objectives > 1
    acquisition = acquisition or ("qlognehvi" if multi else "qlognei")
    allowed = MULTI_OBJECTIVE if multi else SINGLE_OBJECTIVE
    if acquisition not in allowed:
        raise ValueError(f"acquisition must be one of {allowed} for {problem.name}, got {acquisition!r}")
    if surrogate not in KINDS:
        raise ValueError(f"surrogate must be one of {sorted(KINDS)}, got {surrogate!r}")
    check_options(surrogate, surrogate_options or {})
    for name, value, low in (("q", q, 1), ("n_init", n_init, 2), ("iterations", iterations, 0),
                             ("num_restarts", num_restarts, 1), ("raw_samples", raw_samples, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    state = checkpoint_io.load(checkpoint) if checkpoint is not None and Path(checkpoint).exists() else None
    if state is None:
        X = draw_sobol_samples(problem.bounds, n=n_init, q=1, seed=seed).squeeze(-2)
        result = BOResult(problem.name, surrogate, acquisition, seed, n_init, q, X, _evaluate(problem, X))
        result.best.append(_best(problem, result.Y))
        warm_start = None
    else:
        result, warm_start = BOResult(**state["result"]), state["warm_start"]
    bar = ProgressBar(iterations, initial=len(result.fit_time), description=f"BO {problem.name}",
                      enabled=progress)
    for it in range(len(result.fit_time), iterations):
        with torch.random.fork_rng():
            torch.manual_seed(seed * 100003 + it)
            start = time.perf_counter()
            model = fit_surrogate(result.X, result.Y, surrogate, bounds=problem.bounds, seed=seed * 100003 + it,
                                  warm_start=warm_start, **(surrogate_options or {}))
            fit_done = time.perf_counter()
            acq = make_acquisition(acquisition, model, result.X, problem)
            candidates, _ = optimize_acqf(acq, problem.bounds, q=q, num_restarts=num_restarts,
                                          raw_samples=raw_samples)
            acq_done = time.perf_counter()
        candidates = candidates.detach()
        result.X = torch.cat([result.X, candidates])
        result.Y = torch.cat([result.Y, _evaluate(problem, candidates)])
        result.best.append(_best(problem, result.Y))
        result.fit_time.append(fit_done - start)
        result.acq_time.append(acq_done - fit_done)
        warm_start = getattr(model, "warm_start", None)
        if checkpoint is not None:
            checkpoint_io.save(checkpoint, {"result": dict(result.__dict__), "warm_start": warm_start})
        bar.update(best=result.best[-1], fit_s=result.fit_time[-1])
    bar.close()
    if problem.optimal_value is not None:
        result.regret = [problem.optimal_value - b for b in result.best]
    elif problem.max_hypervolume is not None:
        result.regret = [problem.max_hypervolume - b for b in result.best]
    return result


def _evaluate(problem: Problem, X: Tensor) -> Tensor:
    Y = problem(X)
    if not bool(torch.isfinite(Y).all()):
        raise ValueError(f"{problem.name} returned non-finite values at {X[~torch.isfinite(Y).all(-1)].tolist()}")
    return Y


def _best(problem: Problem, Y: Tensor) -> float:
    if problem.num_objectives == 1:
        return float(Y.max())
    return float(DominatedPartitioning(ref_point=problem.ref_point, Y=Y).compute_hypervolume())


def make_acquisition(name: str, model, X_baseline: Tensor, problem: Problem):
    """The named BoTorch acquisition function for ``model`` given the evaluated points ``X_baseline``."""
    if name == "qlognei":
        return qLogNoisyExpectedImprovement(model, X_baseline, prune_baseline=True)
    if name == "qlogei":
        return qLogExpectedImprovement(model, best_f=model.posterior(X_baseline).mean.max())
    if name == "qucb":
        return qUpperConfidenceBound(model, beta=0.2)
    return qLogNoisyExpectedHypervolumeImprovement(model, ref_point=problem.ref_point.tolist(),
                                                   X_baseline=X_baseline, prune_baseline=True)


