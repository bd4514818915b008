"""A compiled ``value_and_grad`` for the log density of any ``ProbModel`` (``torch.func`` + inductor).

Eager autograd spends most of a small network's gradient in per-operation overhead and in separate passes
of torch's elementwise kernels. :class:`CompiledLogDensity` instead

1. traces ``theta -> (log density, gradient)`` once per input shape and dtype with
   ``torch.func.grad_and_value`` under ``make_fx``: one FX graph of aten operations holding the forward
   pass, the backward pass and the data as constants (no autograd graph at run time; Python control flow
   of the model is evaluated once, at trace time);
2. compiles the graph with inductor (C++ kernels on CPU, static shapes). Inductor's FX graph cache (under
   ``$TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``) keeps the compiled code, so a new
   process with the same architecture, data and shape loads it instead of compiling again;
3. checks the compiled value and gradient against eager autograd at the first ``theta`` (to a tolerance of
   the dtype) before using it.

A model whose log density cannot be traced (data-dependent Python control flow such as ``if x.item()``,
operations inductor cannot compile) or whose compiled result disagrees with eager falls back to eager
autograd with one ``CompileFallbackWarning`` naming the reason. Distributions' argument validation is
switched off during the trace (it is data-dependent control flow); the eager check at the first ``theta``
still runs it. NaN and inf in ``theta`` propagate into the value and gradient as in eager mode (samplers
count them as divergences).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from unittest import mock

import torch
from torch import Tensor

from probnets.log_density import LogDensity

#: Tolerance of the first-use check, relative to ``max(1, max |eager|)`` of the value and of the gradient.
CHECK_TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-4}
#: The ``torch.compile`` modes offered (CPU: no CUDA graphs).
MODES = (None, "max-autotune-no-cudagraphs")


class CompileFallbackWarning(UserWarning):
    """A log density could not be compiled; eager autograd is used instead."""


class CompiledLogDensity(LogDensity):
    """``value_and_grad`` of ``base`` through a traced and compiled graph, one per ``theta`` shape and dtype.

    Args:
        base: The eager log density (``fn: theta (C, D) -> (C,)``); it also serves as the fallback.
        name: What to call the log density in the fallback warning (e.g. the model's repr).
        mode: ``torch.compile``'s mode: None (inductor's default: matrix products by the BLAS library) or
            ``"max-autotune-no-cudagraphs"`` (inductor also times its own C++ matrix-product templates and keeps
            the fastest; longer compilation, see ``benchmarks/results/generic_grad.md``).

    Attributes:
        compile_seconds: Wall time spent tracing, compiling and checking so far (0 while nothing is compiled);
            samplers report it.
        fallback_reason: Why the last compilation fell back to eager autograd, else None.
    """

    def __init__(self, base: LogDensity, *, name: str = "the log density", mode: str | None = None):
        if not isinstance(base, LogDensity):
            raise TypeError(f"base must be a LogDensity, got {type(base).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        super().__init__(base.fn, base.dim)
        self.base = base
        self.name = name
        self.compile_seconds = 0.0
        self.fallback_reason: str | None = None
        self._compiled: dict[tuple, Callable[[Tensor], tuple[Tensor, Tensor]] | None] = {}

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Log density ``(C,)`` and gradient ``(C, D)`` of ``theta`` ``(C, D)``."""
        theta = theta.detach()
        key = (tuple(theta.shape), theta.dtype, theta.device)
        if key not in self._compiled and theta.dim() == 2:
            # fewer chains than an already compiled graph takes: pad with copies of the first row, not recompile
            wider = [k for k in self._compiled if k[0][1:] == key[0][1:] and k[1:] == key[1:]
                     and k[0][0] > theta.shape[0] and self._compiled[k] is not None]
            if wider:
                rows = min(k[0][0] for k in wider)
                padded = torch.cat([theta, theta[:1].expand(rows - theta.shape[0], -1)])
                value, grad = self._compiled[((rows, *key[0][1:]), *key[1:])](padded)
                return value[: theta.shape[0]].detach(), grad[: theta.shape[0]].detach()
        if key not in self._compiled:
            start = time.perf_counter()
            self._compiled[key] = self._build(theta)
            self.compile_seconds += time.perf_counter() - start
        compiled = self._compiled[key]
        if compiled is None:
            return self.base.value_and_grad(theta)
        value, grad = compiled(theta.contiguous())
        return value.detach(), grad.detach()  # a module's deterministic parameters are graph inputs with grad

    def _build(self, theta: Tensor) -> Callable[[Tensor], tuple[Tensor, Tensor]] | None:
        """Trace, compile and check for ``theta``'s shape; None (after one warning) when that fails."""
        try:
            # eager first: a log density that settles lazily how to evaluate (from_pyro's batching check
            # compares values, which a trace cannot) settles it before the trace
            ref_value, ref_grad = self.base.value_and_grad(theta)
            compiled = compile_value_and_grad(self.base.fn, theta, mode=self.mode)
            value, grad = (out.detach() for out in compiled(theta.contiguous()))
            mismatch = _mismatch(value, ref_value) or _mismatch(grad, ref_grad)
            if mismatch:
                raise _Mismatch(f"the compiled log density differs from eager autograd: {mismatch}")
        except Exception as exc:  # anything the tracer or compiler raises means: not compilable
            self.fallback_reason = _reason(exc)
            warnings.warn(f"probnets could not compile {self.name} ({self.fallback_reason}); using eager "
                          "autograd instead (correct, but slower)", CompileFallbackWarning, stacklevel=4)
            return None
        self.fallback_reason = None
        return compiled


def compile_value_and_grad(fn: Callable[[Tensor], Tensor], theta: Tensor, *,
                           mode: str | None = None) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Compile ``theta -> (fn(theta), d sum(fn(theta)) / d theta)`` for ``theta``'s shape and dtype.

    Args:
        fn: ``theta (C, D) -> (C,)``, chains independent.
        theta: An example input ``(C, D)``; the result accepts contiguous tensors of this shape and dtype.
        mode: ``torch.compile``'s mode (see :class:`CompiledLogDensity`).

    Raises:
        Whatever tracing or compilation raises (e.g. ``RuntimeError`` on data-dependent control flow).
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    def value_and_grad(t: Tensor) -> tuple[Tensor, Tensor]:
        def summed(u: Tensor) -> tuple[Tensor, Tensor]:
            value = fn(u)
            return value.sum(), value

        grad, (_, value) = torch.func.grad_and_value(summed, has_aux=True)(t)
        return value, grad

    example = theta.detach().contiguous()
    with _no_distribution_validation(), torch.enable_grad():
        graph = make_fx(value_and_grad)(example)
    # The graph is already flat ATen: inductor compiles it directly, without dynamo's frame guards and
    # runtime wrappers around every call (about 60 us of a 280 us call on a Pyro logistic regression).
    import torch._inductor as inductor

    options = inductor.list_mode_options(mode) if mode is not None else None
    return inductor.compile(graph, [example], options=options)


@contextlib.contextmanager
def _no_distribution_validation():
    """torch.distributions' argument checks branch on tensor values, which a trace cannot contain."""
    with mock.patch.object(torch.distributions.Distribution, "_validate_sample", lambda self, value: None):
        yield


class _Mismatch(Exception):
    pass


def _mismatch(compiled: Tensor, eager: Tensor) -> str | None:
    """A description of how ``compiled`` differs from ``eager`` beyond the dtype's tolerance, else None."""
    if compiled.shape != eager.shape or compiled.dtype != eager.dtype:
        return f"shape/dtype {tuple(compiled.shape)}/{compiled.dtype} instead of {tuple(eager.shape)}/{eager.dtype}"
    finite = torch.isfinite(eager)
    if not torch.equal(finite, torch.isfinite(compiled)):
        return "non-finite entries differ"
    if not bool(finite.any()):
        return None
    scale = max(1.0, float(eager[finite].abs().max()))
    err = float((compiled[finite] - eager[finite]).abs().max()) / scale
    tol = CHECK_TOLERANCE.get(eager.dtype, 1e-3)
    return f"relative error {err:.1e} > {tol:.0e}" if err > tol else None


def _reason(exc: Exception) -> str:
    """The first line of an exception, which names the offending operation."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(first) > 240:
        first = first[:237] + "..."
    return first if isinstance(exc, _Mismatch) else f"{type(exc).__name__}: {first}"


__all__ = ["CHECK_TOLERANCE", "MODES", "CompileFallbackWarning", "CompiledLogDensity", "compile_value_and_grad"]
