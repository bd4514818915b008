"""Benchmark problems for BO loops, all posed as maximisation (BoTorch's test functions with ``negate=True``).

``get_problem(name)`` knows BoTorch's Branin, Hartmann-6, Ackley-10, BraninCurrin, DTLZ1 and DTLZ5, and two
of the BNN-surrogate study's harder problems that are built offline from a seed: ``bnn-draw`` (a function
drawn from a random tanh network with N(0, 1) weights and biases, as in the study: strongly non-stationary;
default 100-D, the study's is 400-D) and ``poly-draw`` (a random cubic
polynomial with sparse pairwise interactions, default 50-D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from botorch.test_functions import Ackley, Branin, Hartmann
from botorch.test_functions.multi_objective import DTLZ1, DTLZ5, BraninCurrin
from torch import Tensor

from probnets import BNN
from surrogates.names import PROBLEMS


@dataclass(frozen=True)
class Problem:
    """A black-box objective to maximise.

    Attributes:
        name: Registry name.
        function: ``batch x d -> batch x num_objectives`` (always 2-D output).
        bounds: ``2 x d`` search box.
        num_objectives: 1 for single-objective problems.
        optimal_value: The known maximum (single objective), else ``None``.
        ref_point: Reference point for hypervolume (multi-objective, maximisation), else ``None``.
        max_hypervolume: The known maximal hypervolume where BoTorch gives it, else ``None``.
    """

    name: str
    function: object
    bounds: Tensor
    num_objectives: int = 1
    optimal_value: float | None = None
    ref_point: Tensor | None = None
    max_hypervolume: float | None = None

    @property
    def dim(self) -> int:
        return self.bounds.shape[-1]

    def __call__(self, X: Tensor) -> Tensor:
        """Evaluate at ``n x d`` points; returns ``n x num_objectives``."""
        Y = self.function(X)
        return Y.unsqueeze(-1) if Y.dim() == X.dim() - 1 else Y




def get_problem(name: str, *, dim: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float64) -> Problem:
    """Build a problem by name; ``dim`` applies to ``bnn-draw``/``poly-draw``, ``seed`` to their random draw."""
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {PROBLEMS}, got {name!r}")
    if dim is not None and name not in ("bnn-draw", "poly-draw"):
        raise ValueError(f"dim can only be chosen for bnn-draw and poly-draw, not {name!r}")
    single = {"branin": lambda: Branin(negate=True), "hartmann6": lambda: Hartmann(dim=6, negate=True),
              "ackley10": lambda: Ackley(dim=10, negate=True)}
    multi = {"branincurrin": lambda: BraninCurrin(negate=True),
             "dtlz1": lambda: DTLZ1(dim=5, num_objectives=2, negate=True),
             "dtlz5": lambda: DTLZ5(dim=20, num_objectives=3, negate=True)}
    if name in single:
        f = single[name]().to(dtype)
        return Problem(name, f, f.bounds, optimal_value=float(f.optimal_value))
    if name in multi:
        f = multi[name]().to(dtype)
        return Problem(name, f, f.bounds, num_objectives=f.num_objectives, ref_point=f.ref_point.clone(),
                       max_hypervolume=getattr(f, "_max_hv", None))
    generator = torch.Generator().manual_seed(seed)
    if name == "bnn-draw":
        return _bnn_draw(dim or 100, generator, dtype)
    return _poly_draw(dim or 50, generator, dtype)


def _bnn_draw(dim: int, generator: torch.Generator, dtype: torch.dtype) -> Problem:
    # As the study's BnnDraw: two tanh layers of 256 units, every weight and bias N(0, 1) (no fan-in scaling,
    # so the units saturate and the function is piecewise nearly constant across many hyperplanes), on [0, 1]^d.
    net = BNN(dim, (256, 256), activation="tanh")
    theta = torch.randn(net.spec.dim, generator=generator, dtype=dtype)

    def f(X: Tensor) -> Tensor:
        return net.predict_f(theta, X.reshape(-1, dim)).reshape(*X.shape[:-1], 1)

    bounds = torch.stack([torch.zeros(dim, dtype=dtype), torch.ones(dim, dtype=dtype)])
    return Problem(f"bnn-draw-{dim}", f, bounds)


def _poly_draw(dim: int, generator: torch.Generator, dtype: torch.dtype) -> Problem:
    linear = torch.randn(dim, generator=generator, dtype=dtype)
    cubic = 0.5 * torch.randn(dim, generator=generator, dtype=dtype)
    pairs = torch.randint(0, dim, (2 * dim, 2), generator=generator)
    pair_coef = torch.randn(2 * dim, generator=generator, dtype=dtype)

    def f(X: Tensor) -> Tensor:
        value = X @ linear + (X**3) @ cubic + (X[..., pairs[:, 0]] * X[..., pairs[:, 1]]) @ pair_coef
        return value.unsqueeze(-1)

    bounds = torch.stack([-torch.ones(dim, dtype=dtype), torch.ones(dim, dtype=dtype)])
    return Problem(f"poly-draw-{dim}", f, bounds)
