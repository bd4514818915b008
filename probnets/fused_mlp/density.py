"""The log density with the fused gradient: which BNNs it supports, the data layout, the split of the work
over threads, and the dispatch to the generated kernels."""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import torch
from torch import Tensor

from probnets.fused_mlp import codegen, helpers, loader
from probnets.fused_mlp.prior import AnalyticPrior
from probnets.log_density import CompiledGradient, LogDensity

if helpers.HAVE_NUMBA:
    import numba

#: Activations with a fused kernel (``gelu``: the exact one, ``torch.nn.functional.gelu``'s default).
ACTIVATIONS = codegen.ACTIVATIONS

# Data blocks (and the padded number of data points) are multiples of this, so that every SIMD loop over
# data points runs on whole AVX-512 vectors (16 float32 / 8 float64) and needs no scalar remainder.
_PAD = 16


def supports(model) -> bool:
    """True when :class:`FusedMLPLogDensity` applies to ``model``.

    That is: numba importable, ``model`` a :class:`~probnets.bnn.BNN` with a Gaussian (fixed or learned
    noise), Bernoulli or Categorical likelihood, an activation in :data:`ACTIVATIONS`, any depth and any
    number of outputs, and priors on the CPU (any elementwise prior; non-Normal ones are differentiated with
    autograd).
    """
    if not helpers.HAVE_NUMBA:
        return False
    from probnets.bnn import BNN

    if not isinstance(model, BNN) or _likelihood_kind(model.likelihood) is None:
        return False
    if not isinstance(model.activation_name, str) or model.activation_name not in ACTIVATIONS:
        return False
    from probnets.activations import ACTIVATIONS as _TORCH_ACTIVATIONS

    # A callable that merely shares a name with a built-in activation is not the built-in one.
    if model.activation is not _TORCH_ACTIVATIONS[model.activation_name]:
        return False
    for prior in list(model.priors.values()) + [getattr(model.likelihood, "noise_prior", None)]:
        if prior is not None and not _on_cpu(prior):
            return False
    return True


def _likelihood_kind(likelihood) -> str | None:
    """The kernels' name of a likelihood (one of ``codegen.LIKELIHOODS``), None without a kernel."""
    from probnets.likelihoods import Bernoulli, Categorical, Gaussian

    kinds = {Gaussian: "gaussian", Bernoulli: "bernoulli", Categorical: "categorical"}
    return kinds.get(type(likelihood))


def _on_cpu(d: torch.distributions.Distribution) -> bool:
    return all(v.device.type == "cpu" for v in vars(d).values() if isinstance(v, Tensor))



class _Workspace(threading.local):
    """Per-Python-thread scratch buffers and compiled gradients of one log density (so concurrent callers
    never share a workspace)."""

    def __init__(self):
        self.buffers = {}
        self.compiled = {}


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class FusedMLPLogDensity(LogDensity):
    """Log posterior of a :class:`~probnets.bnn.BNN` (Gaussian, Bernoulli or Categorical likelihood) with a
    fused CPU gradient.

    ``value_and_grad(theta)`` equals autograd of ``model.log_prior(theta) +
    model.log_likelihood(theta, batch).sum(-1) / temperature`` for ``theta`` of shape ``(..., D)`` in
    float32 or float64; other dtypes, non-CPU tensors and a differentiable ``__call__`` (``theta``
    requiring grad with grad mode on) go to ``fallback`` (so does float64 for GELU networks:
    ``codegen.GELU_DTYPES``). The returned tensors are freshly allocated on
    every call, so callers may keep them.

    Threads: up to ``torch.get_num_threads()`` (read at construction) threads share the chains (or, with
    fewer chains than threads, chains and blocks of data points); the kernels run without the GIL.

    Args:
        model: A BNN for which :func:`supports` is true.
        batch: Prepared data ``(x (n, d), y)``: ``y (n, m)`` or ``(n,)`` (Gaussian), ``(n,)`` in {0, 1}
            (Bernoulli), ``(n,)`` integer labels in ``[0, m)`` (Categorical).
        temperature: Likelihood temperature ``T`` (the log-likelihood is divided by it).
        fallback: The generic autograd :class:`LogDensity` of the same posterior.
    """

    uses_own_threads = True
    #: Below this many multiply-adds per call (forward + backward) one thread does all the work: waking
    #: a helper thread costs more than it saves.
    parallel_threshold = 2_000_000

    def __init__(self, model, batch, temperature: float = 1.0, *, fallback: LogDensity | None = None):
        if not supports(model):
            raise ValueError(f"the fused kernel does not support {model!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        x, y = batch
        self._batch_y = y
        n, m = x.shape[0], model.num_latent
        self.likelihood_kind = _likelihood_kind(model.likelihood)
        if self.likelihood_kind == "categorical":
            if y.shape != (n,):
                raise ValueError(f"y must have shape ({n},) for a Categorical likelihood, got {tuple(y.shape)}")
            y = torch.nn.functional.one_hot(y.long(), m)
        if y.dim() == 1:
            y = y.unsqueeze(-1)
        if y.dim() == 2 and y.shape == (n, 1) and m > 1:
            y = y.expand(n, m)  # the generic path broadcasts y against the m outputs too
        if x.dim() != 2 or x.shape[1] != model.in_features or tuple(y.shape) != (n, m):
            raise ValueError(f"batch must be (x (n, {model.in_features}), y (n, {m})), got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        self.model = model
        # Fixed here, so that a sampler may run torch single-threaded while the kernel keeps its threads.
        self.num_threads = torch.get_num_threads()
        self.temperature = float(temperature)
        self.fallback = fallback
        super().__init__(fallback.fn if fallback is not None else self._generic, model.spec.dim)
        self.n = n
        self.num_latent = m
        self._x = x.detach().cpu()
        self._y = y.detach().cpu()
        self.n_padded = -(-n // _PAD) * _PAD
        self.sizes = (model.in_features, *model.widths, m)
        # Without hidden layers the activation is unused: share one kernel between all of them.
        self.activation = model.activation_name if model.widths else "none"
        self._kernel_dtypes = (tuple(getattr(torch, d) for d in codegen.GELU_DTYPES) if self.activation == "gelu"
                               else (torch.float32, torch.float64))
        # The kernels assume the BNN layout: layers.{l}.weight (out x in) then layers.{l}.bias, in order.
        off = 0
        for l, (din, dout) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            spec = model.net_spec
            if (spec.slice(f"layers.{l}.weight") != slice(off, off + din * dout)
                    or spec.slice(f"layers.{l}.bias") != slice(off + din * dout, off + din * dout + dout)):
                raise ValueError("unexpected parameter layout of the BNN")  # pragma: no cover
            off += din * dout + dout
        self._dnet = off
        self._zrows = max(sum(model.widths), 1)
        self._macs_per_point = sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        lik = model.likelihood
        self.learned = bool(getattr(lik, "learned", False))
        self.analytic_prior = AnalyticPrior.build(model)
        # prm_i: (n, learned noise, analytic prior, need grad, m, Gaussian likelihood)
        self._prm_i = np.asarray([n, int(self.learned), int(self.analytic_prior is not None), 1, m,
                                  int(self.likelihood_kind == "gaussian")], dtype=np.int64)
        self._prm_i_value = self._prm_i.copy()
        self._prm_i_value[3] = 0
        loc, prec, const = self.analytic_prior if self.analytic_prior is not None else (np.zeros(1), np.zeros(1), 0.0)
        self._prior_loc, self._prior_prec = loc, prec
        # prm_f: (1/T, fixed log sigma, constant of the analytic log prior)
        fixed_log_scale = math.log(lik.noise_scale) if self.likelihood_kind == "gaussian" and not self.learned else 0.0
        self._prm_f = np.asarray([1.0 / self.temperature, fixed_log_scale, const])
        self._data = {}
        self._modules = {}
        self._plans = {}
        self._dummies = {np.dtype(t): (np.empty((1, 1, 1), dtype=t), np.empty((1, 1), dtype=np.float64),
                                       np.empty((1, model.spec.dim), dtype=t)) for t in (np.float32, np.float64)}
        self._ws = _Workspace()
        # Prepare the data once, in the dtype of x (another theta dtype is prepared on its first use).
        self._prepared(torch.float32 if x.dtype == torch.float32 else torch.float64)

    def _generic(self, theta: Tensor) -> Tensor:
        batch = (self._x.to(theta.dtype), self._batch_y)
        return self.model.log_prior(theta) + self.model.log_likelihood(theta, batch).sum(-1) / self.temperature

    # -- data, buffers, work split ----------------------------------------------------------------

    def _prepared(self, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
        data = self._data.get(dtype)
        if data is None:
            npd = np.float32 if dtype == torch.float32 else np.float64
            xt = np.zeros((self.model.in_features, self.n_padded), dtype=npd)
            xt[:, : self.n] = self._x.to(dtype).numpy().T
            # The generic path subtracts f from y in y's own dtype; the kernel works in theta's dtype.
            yt = np.zeros((self.num_latent, self.n_padded), dtype=npd)
            yt[:, : self.n] = self._y.to(dtype).numpy().T
            data = self._data[dtype] = (xt, yt)
        return data

    def _workspace(self, npd, nthreads: int, nb_max: int) -> tuple[np.ndarray, ...]:
        """Buffers stacked over threads (index 0 = thread): hidden activations, their back-propagated
        errors, outputs/residuals, and a row of scratch."""
        key = (npd, nthreads, nb_max)
        bufs = self._ws.buffers.get(key)
        if bufs is None:
            rows = (self._zrows, self._zrows, self.num_latent, 1)
            bufs = tuple(np.zeros((nthreads, r, nb_max), dtype=npd) for r in rows)
            self._ws.buffers = {key: bufs}  # keep only the latest shape
        return bufs

    def _plan(self, C: int) -> tuple[int, np.ndarray, int]:
        """(threads, data block boundaries, largest block) for C chains.

        Work items are (chain, data block) pairs, split evenly over the threads. The data are split into
        blocks only when there are too few chains for every thread to get several.
        """
        plan = self._plans.get(C)
        if plan is None:
            npad = self.n_padded
            macs_chain = npad * self._macs_per_point * 2  # forward + backward
            nthreads = max(1, min(self.num_threads, _available_cpus(), numba.config.NUMBA_NUM_THREADS,
                                  C * macs_chain // max(self.parallel_threshold, 1)))
            nblk = 1
            if nthreads > 1 and C < 4 * nthreads:
                nblk = min(max(1, npad // (4 * _PAD)), -(-4 * nthreads // C))
            units = npad // _PAD
            blocks = np.asarray([(units * b // nblk) * _PAD for b in range(nblk + 1)], dtype=np.int64)
            plan = (nthreads, blocks, int(np.max(np.diff(blocks))))
            if len(self._plans) > 64:
                self._plans.clear()
            self._plans[C] = plan
        return plan

    # -- evaluation -------------------------------------------------------------------------------

    def _usable(self, theta) -> bool:
        return (isinstance(theta, Tensor) and theta.is_cpu and theta.dtype in self._kernel_dtypes
                and theta.dim() >= 1 and theta.shape[-1] == self.dim)

    def _run(self, theta: Tensor, need_grad: bool) -> tuple[Tensor, Tensor | None]:
        D = self.dim
        flat = theta.detach()
        if flat.dim() != 2:
            flat = flat.reshape(-1, D)
        if not flat.is_contiguous():
            flat = flat.contiguous()
        C = flat.shape[0]
        dtype = flat.dtype
        xt, yt = self._prepared(dtype)
        npd = xt.dtype
        # Fresh outputs on every call (the caller may keep them); the kernels write every entry.
        out_val = np.empty(C, dtype=npd)
        out_grad = np.empty((C, D), dtype=npd) if need_grad else self._dummies[npd][2]
        if C > 0:
            nthreads, blocks, nb_max = self._plan(C)
            nblk = len(blocks) - 1
            module = self._modules.get(dtype)
            if module is None:
                module = self._modules[dtype] = loader.kernel_module(self.sizes, self.activation, npd.name,
                                                                         self.likelihood_kind)
                nthreads = 1  # the first call compiles (or loads from the cache) on this thread
            wz, wd, wg, wt = self._workspace(npd, nthreads, nb_max)
            if nblk > 1:
                part_g = np.empty((nblk, C, D), dtype=npd)
                part_sse = np.empty((nblk, C), dtype=np.float64)
            else:
                part_g, part_sse = self._dummies[npd][:2]
            prm_i = self._prm_i if need_grad else self._prm_i_value
            args = (flat.numpy(), xt, yt, prm_i, self._prm_f, self._prior_loc, self._prior_prec, blocks)
            outs = (part_g, part_sse, out_val, out_grad)
            items = C * nblk
            if nthreads == 1:
                module.kernel(*args, wz[0], wd[0], wg[0], wt[0], *outs, 0, items)
            else:
                numba.set_num_threads(nthreads)
                module.kernel_parallel(*args, wz, wd, wg, wt, *outs, items, nthreads)
            if nblk > 1:
                helpers.combine(args[0], self._dnet, prm_i, self._prm_f, self._prior_loc, self._prior_prec, part_g,
                         part_sse, out_val, out_grad)
        value = torch.from_numpy(out_val)
        grad = torch.from_numpy(out_grad) if need_grad else None
        if self.analytic_prior is None and C > 0:
            # Other priors: the (elementwise, cheap) log prior and its gradient by autograd.
            with torch.enable_grad():
                t = flat.detach().requires_grad_(need_grad)
                lp = self.model.log_prior(t)
                if need_grad:
                    (glp,) = torch.autograd.grad(lp.sum(), t)
                    grad += glp
            value += lp.detach()
        if theta.dim() != 2:
            batch_shape = theta.shape[:-1]
            value = value.reshape(batch_shape)
            grad = grad.reshape(*batch_shape, D) if need_grad else None
        return value, grad

    def compiled_gradient(self, dtype: torch.dtype) -> CompiledGradient | None:
        """The single-threaded kernel with this density's data and a workspace of the calling thread's own
        (one data block, so work item ``c`` is chain ``c``); None for priors without a closed form (their
        gradient is autograd)."""
        if self.analytic_prior is None or dtype not in self._kernel_dtypes:
            return None
        compiled = self._ws.compiled.get(dtype)
        if compiled is None:
            compiled = self._ws.compiled[dtype] = self._compiled_gradient(dtype)
        return compiled

    def _compiled_gradient(self, dtype: torch.dtype) -> CompiledGradient:
        xt, yt = self._prepared(dtype)
        npd = xt.dtype
        module = self._modules.get(dtype)
        if module is None:
            module = self._modules[dtype] = loader.kernel_module(self.sizes, self.activation, npd.name,
                                                                         self.likelihood_kind)
        rows = (self._zrows, self._zrows, self.num_latent, 1)
        workspace = tuple(np.zeros((r, self.n_padded), dtype=npd) for r in rows)
        blocks = np.asarray([0, self.n_padded], dtype=np.int64)
        part_g, part_sse = self._dummies[npd][:2]
        return CompiledGradient(module.kernel, (xt, yt, self._prm_i, self._prm_f, self._prior_loc,
                                                self._prior_prec, blocks, *workspace, part_g, part_sse))

    def __call__(self, theta: Tensor) -> Tensor:
        if not self._usable(theta) or (theta.requires_grad and torch.is_grad_enabled()):
            return self.fn(theta)  # differentiable or unsupported input: the generic path
        return self._run(theta, need_grad=False)[0]

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        if not self._usable(theta):
            return super().value_and_grad(theta)
        return self._run(theta, need_grad=True)
