"""Starting a sampler: the gradient-counting log density and the checks of the starting points."""

from __future__ import annotations

import torch
from torch import Tensor

from probnets.log_density import CompiledGradient, LogDensity
from probnets.model import Batch
from probnets.spec import ParamSpec


class CountingLogDensity(LogDensity):
    """Delegates to a log density and counts gradient evaluations per chain (``grad_evals``).

    ``at(batch)`` (minibatch log densities) returns a counter of the minibatch estimate that adds to this
    counter's count. ``spec`` is the parameter layout, for samplers that use it (structured SG-MCMC's groups).
    """

    def __init__(self, inner: LogDensity, parent: CountingLogDensity | None = None, spec: ParamSpec | None = None):
        super().__init__(inner.__call__, inner.dim)
        self.inner = inner
        self.parent = parent
        self.spec = spec
        self.uses_own_threads = inner.uses_own_threads
        self.grad_evals = 0

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        (self.parent or self).grad_evals += theta.shape[:-1].numel()
        return self.inner.value_and_grad(theta)

    def compiled_gradient(self, dtype: torch.dtype) -> CompiledGradient | None:
        return self.inner.compiled_gradient(dtype)

    def count_grad_evals(self, num: int) -> None:
        (self.parent or self).grad_evals += num

    def at(self, batch: Batch) -> CountingLogDensity:
        return CountingLogDensity(self.inner.at(batch), self.parent or self)


def check_init(init: Tensor, num_chains: int, dim: int, dtype: torch.dtype) -> Tensor:
    """``init`` (``C x D``) checked (type, shape, finite) and cast to ``dtype``."""
    if not isinstance(init, Tensor):
        raise TypeError(f"init must be a torch.Tensor, got {type(init).__name__}")
    if init.shape != (num_chains, dim):
        raise ValueError(f"init must have shape (num_chains, D) = ({num_chains}, {dim}), got {tuple(init.shape)}")
    if not bool(torch.isfinite(init).all()):
        raise ValueError("init contains NaN or infinite values")
    return init.to(dtype)


def check_initial_density(logdensity: LogDensity, init: Tensor, target=None) -> tuple[Tensor, Tensor]:
    """Fail fast on a non-finite start, saying why when the target knows (a dtype other than its own, an error
    the model raised); adopt the log density's dtype if it promotes the positions.

    Returns:
        The starting points and the log density there, ``(C,)``.
    """
    value, grad = logdensity.value_and_grad(init)
    bad = ~(torch.isfinite(value) & torch.isfinite(grad).all(-1))
    if bool(bad.any()):
        own_dtype = getattr(target, "dtype", None)
        if isinstance(own_dtype, torch.dtype) and own_dtype != init.dtype:
            raise TypeError(f"dtype mismatch: the model's tensors are {own_dtype} but the sampler runs in {init.dtype} "
                            f"(from dtype= or init), and the model fails in that dtype; pass dtype={own_dtype} or "
                            f"give the model data of dtype {init.dtype}")
        chains = bad.nonzero().flatten().tolist()
        error = getattr(target, "last_error", None)
        raise ValueError(f"the log density or its gradient is not finite at the initial point of chains {chains[:10]}"
                         f"{'...' if len(chains) > 10 else ''}; choose another init"
                         + (f" (the model raised {type(error).__name__}: {error})" if error is not None else ""))
    init = init.to(grad.dtype) if grad.dtype != init.dtype and grad.dtype.is_floating_point else init
    return init, value.detach()
