"""Fused analytic log-density gradients for Gaussian-likelihood MLPs on CPU (numba kernels).

HMC/NUTS evaluate ``value_and_grad`` of the log posterior of a BNN for many chains at once. For the small
networks of BNN regression, eager autograd spends its time in per-op overhead and a slow elementwise
``tanh``. :class:`FusedGaussianMLPLogDensity` evaluates the forward pass, the Gaussian log-likelihood, the
backward pass and (for Normal priors) the log prior in one compiled kernel:

* **Specialised kernels.** For every architecture (layer sizes, activation) and dtype, Python source is
  generated in which every loop over up to ``_UNROLL`` features is unrolled into scalar weights and scalar
  accumulators; the remaining loops run over data points, which are the SIMD dimension (activations are
  stored transposed, ``(width, n)``, in a per-thread workspace). LLVM vectorises them with AVX-512/AVX2;
  the output layer is fused into the last hidden layer's passes, ``tanh`` is evaluated once and reused as
  ``1 - tanh^2`` in the backward pass, and each weight gradient is one register reduction over the data.
  The source goes to a cache directory (``$PROBNETS_KERNEL_DIR``, else ``~/.cache/probnets/fused_mlp``,
  else a temporary directory) and numba's ``cache=True`` stores the machine code beside it, so a new process
  loads a kernel in well under a second; compiling a new one takes about 1-2 s.
* **Threads.** Work items are (chain, block of data points), split evenly over up to
  ``torch.get_num_threads()`` threads (read when the log density is built) by a numba ``prange`` driver
  generated with each kernel. Data are split into blocks only when there are too few chains to keep the
  threads busy. (A Python thread pool was measured first: waking its threads cost ~100-250 us per call.)
  numba's OpenMP layer is not fork-safe: do not evaluate the kernel in a forked child of a process that
  already used it.
* **Precision.** float32 stays float32 inside the kernel (constants are typed); per-chain sums (squared
  error, log prior) are accumulated in float64. ``tanh``: a rational approximation in float32 (< 2 ulp) and
  a branch-free Cephes-style one in float64 (~1e-16), both vectorisable. Fast-math is limited to
  ``contract/reassoc/arcp/nsz/afn`` -- without ``nnan``/``ninf`` -- and numba's ``error_model="numpy"``
  is used, so NaN and inf in ``theta`` propagate into the value and gradient (the samplers count them as
  divergences) and nothing raises.

Numba is optional: :func:`supports` is False without it and ``BNN.logdensity`` keeps the autograd path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
import types

import numpy as np
import torch
from torch import Tensor

from probnets.model import LogDensity

try:  # numba is optional: without it the generic autograd path is used.
    import numba

    _HAVE_NUMBA = True
except Exception:  # noqa: BLE001 - any import problem (missing, broken llvmlite) disables the fast path
    _HAVE_NUMBA = False

__all__ = ["ACTIVATIONS", "FusedGaussianMLPLogDensity", "supports"]

#: Activations with a fused kernel.
ACTIVATIONS = ("tanh", "relu")

# Data blocks (and the padded number of data points) are multiples of this, so that every SIMD loop over
# data points runs on whole AVX-512 vectors (16 float32 / 8 float64) and needs no scalar remainder.
_PAD = 16
_LOG_2PI = math.log(2.0 * math.pi)


def supports(model) -> bool:
    """True when :class:`FusedGaussianMLPLogDensity` applies to ``model``.

    That is: numba importable, ``model`` a :class:`~probnets.bnn.BNN` with a Gaussian likelihood (fixed or
    learned noise), an activation in :data:`ACTIVATIONS`, any depth and any number of outputs, and
    priors on the CPU (any elementwise prior; non-Normal ones are differentiated with autograd).
    """
    if not _HAVE_NUMBA:
        return False
    from probnets.bnn import BNN
    from probnets.likelihoods import Gaussian

    if not isinstance(model, BNN) or type(model.likelihood) is not Gaussian:
        return False
    if not isinstance(model.activation_name, str) or model.activation_name not in ACTIVATIONS:
        return False
    from probnets.activations import ACTIVATIONS as _TORCH_ACTIVATIONS

    # A callable that merely shares a name with a built-in activation is not the built-in one.
    if model.activation is not _TORCH_ACTIVATIONS[model.activation_name]:
        return False
    for prior in list(model.priors.values()) + [model.likelihood.noise_prior]:
        if prior is not None and not _on_cpu(prior):
            return False
    return True


def _on_cpu(d: torch.distributions.Distribution) -> bool:
    return all(v.device.type == "cpu" for v in vars(d).values() if isinstance(v, Tensor))


# --------------------------------------------------------------------------------------------------
# Analytic priors
# --------------------------------------------------------------------------------------------------


def _normal_params(d) -> tuple[Tensor, Tensor] | None:
    """(loc, scale) of a plain Normal (torch or pyro) prior, else None."""
    import pyro.distributions as pdist

    if type(d) in (torch.distributions.Normal, pdist.Normal):
        return d.loc, d.scale
    return None


def _lognormal_params(d) -> tuple[Tensor, Tensor] | None:
    import pyro.distributions as pdist

    if type(d) in (torch.distributions.LogNormal, pdist.LogNormal):
        return d.loc, d.scale
    return None


class _AnalyticPrior:
    """The log prior as ``const - 0.5 * sum_i prec_i (theta_i - loc_i)^2`` when every network prior is a
    Normal and the learned noise prior, if any, is a LogNormal (a Normal on ``u = log sigma`` once the
    Jacobian ``+u`` is added); ``None`` otherwise."""

    @staticmethod
    def _terms(loc: Tensor, scale: Tensor, shape) -> tuple[Tensor, Tensor, float]:
        # Like torch's Normal.log_prob, the variance and log-scale are formed in the parameters' own dtype
        # (float32 for the usual Python-number priors) and only then promoted.
        loc, scale = (torch.broadcast_to(t.detach(), shape).reshape(-1) for t in (loc, scale))
        prec = 1.0 / (scale * scale).to(torch.float64)
        const = float((-scale.log().to(torch.float64) - 0.5 * _LOG_2PI).sum())
        return loc.to(torch.float64), prec, const

    @staticmethod
    def build(model) -> tuple[np.ndarray, np.ndarray, float] | None:
        locs, precs, const = [], [], 0.0
        for name, shape in zip(model.net_spec.names, model.net_spec.shapes):
            params = _normal_params(model.priors[name])
            if params is None:
                return None
            loc, prec, c = _AnalyticPrior._terms(*params, shape)
            locs.append(loc)
            precs.append(prec)
            const += c
        lik = model.likelihood
        if lik.learned:
            params = _lognormal_params(lik.noise_prior)
            if params is None or params[0].numel() != 1 or params[1].numel() != 1:
                return None
            loc, prec, c = _AnalyticPrior._terms(*params, (1,))
            locs.append(loc)
            precs.append(prec)
            const += c
        return torch.cat(locs).numpy(), torch.cat(precs).numpy(), const


# --------------------------------------------------------------------------------------------------
# Kernel generation
# --------------------------------------------------------------------------------------------------
#
# One kernel per (layer sizes, activation, dtype), generated as Python source specialised to the
# architecture: every loop over features of width <= _UNROLL is unrolled into scalar weights and
# scalar accumulators, so the innermost loops run over data points only, with all partial sums in
# registers (wider layers use runtime blocks of _BLOCK features). The source is written once to a
# cache directory and imported from there, so numba's ``cache=True`` keeps the compiled code on disk.
#
# Per work item (chain c, data block [n0, n0 + nb)), with activations stored transposed (width, n):
#   forward   z_l[j] = act(b_l[j] + sum_k W_l[j, k] z_{l-1}[k]); the output f[o] is accumulated in the
#             same pass over the last hidden layer (for m <= _FUSE_OUT outputs);
#   residual  f[o] <- (y[o] - f[o]) / (sigma^2 T), sum of squares in float64;
#   backward  one pass per hidden unit j: e = sum_o W_{l+1}[o, j] da_{l+1}[o], da = e act'(z),
#             the gradients of b_l[j], W_l[j, :] (and of W_out[:, j]) as register reductions.

_GEN_VERSION = 4
_UNROLL = 16     # feature dimensions up to this are unrolled into scalars
_BLOCK = 8       # wider dimensions: runtime blocks of this many features
_FUSE_OUT = 4    # the output layer is fused into the last hidden layer's passes for m <= _FUSE_OUT

if _HAVE_NUMBA:
    # Shared compiled helpers, imported by every generated kernel module. No 'nnan'/'ninf' fast-math
    # flags: NaN and inf must propagate. error_model="numpy": x / 0 follows IEEE (no exception, and loops
    # with a division stay vectorisable).
    _FASTMATH = {"contract", "reassoc", "arcp", "nsz", "afn"}
    _JIT = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
    _JIT_INNER = dict(_JIT, no_cpython_wrapper=True)

    @numba.njit(**_JIT_INNER)
    def _tanh32(x):
        # Rational minimax approximation (Eigen's float tanh), error < 2 ulp. numba's min/max follow Python
        # (max(x, b) = b if b > x else x), so the clamp keeps NaN, and LLVM emits vmaxps/vminps for it.
        c = np.float32(7.90531110763549805)
        x = min(max(x, -c), c)
        x2 = x * x
        p = np.float32(-2.76076847742355e-16)
        p = p * x2 + np.float32(2.00018790482477e-13)
        p = p * x2 + np.float32(-8.60467152213735e-11)
        p = p * x2 + np.float32(5.12229709037114e-08)
        p = p * x2 + np.float32(1.48572235717979e-05)
        p = p * x2 + np.float32(6.37261928875436e-04)
        p = p * x2 + np.float32(4.89352455891786e-03)
        q = np.float32(1.19825839466702e-06)
        q = q * x2 + np.float32(1.18534705686654e-04)
        q = q * x2 + np.float32(2.26843463243900e-03)
        q = q * x2 + np.float32(4.89352518554385e-03)
        return x * p / q

    @numba.njit(**_JIT_INNER)
    def _tanh64(x):
        # Branch-free float64 tanh, ~1e-16 relative error, one division. |x| <= 0.625: Cephes' rational
        # x + x z P(z)/Q(z), z = x^2. Otherwise 1 - 2/(e^y + 1), y = 2|x| (clamped to 40, where tanh is 1)
        # with e^y = 2^k (Q(r) + rP(r))/(Q(r) - rP(r)), y = k ln2 + r (Cephes exp); 2^k is built exactly
        # from an integer. NaN takes the first branch and propagates.
        ax = abs(x)
        z = x * x
        p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3
        q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3
        y = min(ax, 20.0)
        if not (y > 0.0):  # NaN: keep the integer conversion below defined (the result takes the other branch)
            y = 0.0
        y = y + y
        k = np.int64(y * 1.4426950408889634 + 0.5)
        kf = np.float64(k)
        r = (y - kf * 6.93145751953125e-1) - kf * 1.42860682030941723212e-6
        rr = r * r
        px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
                  + 9.99999999999999999910e-1)
        qx = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
              + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0
        s = np.float64(np.int64(1) << k)
        sgn = -1.0 if x < 0.0 else 1.0
        if ax > 0.625:
            num_a = sgn
            num_b = -2.0 * sgn * (qx - px)
            den = s * (qx + px) + (qx - px)
        else:
            num_a = x
            num_b = x * z * p
            den = q
        return num_a + num_b / den

    @numba.njit(**_JIT_INNER)
    def _finish(theta, c, sse, u, inv_var, prm_i, prm_f, prior_loc, prior_prec, out_val, out_grad):
        """Value = log-likelihood / T + analytic log prior, and the gradients of the noise parameter and
        of the prior, for chain c; the network part of the gradient is already in out_grad[c]."""
        D = theta.shape[1]
        learned = prm_i[1] != 0
        use_prior = prm_i[2] != 0
        need_grad = prm_i[3] != 0
        inv_temp = prm_f[0]
        nm = np.float64(prm_i[0] * prm_i[4])
        val = (-0.5 * sse * inv_var - nm * u - 0.5 * nm * 1.8378770664093453) * inv_temp
        th = theta[c]
        if use_prior:
            lp = 0.0
            for k in range(D):
                dlt = np.float64(th[k]) - prior_loc[k]
                lp += prior_prec[k] * dlt * dlt
            val += prm_f[2] - 0.5 * lp
        out_val[c] = val
        if need_grad:
            gout = out_grad[c]
            dt = gout.dtype.type
            if learned:
                gout[D - 1] = (sse * inv_var - nm) * inv_temp
            if use_prior:
                for k in range(D):
                    gout[k] -= dt(prior_prec[k]) * (th[k] - dt(prior_loc[k]))

    @numba.njit(**_JIT)
    def _combine(theta, dnet, prm_i, prm_f, prior_loc, prior_prec, part_g, part_sse, out_val, out_grad):
        """Several data blocks per chain: sum the partial results and finish every chain."""
        nblk, C = part_sse.shape
        D = theta.shape[1]
        need_grad = prm_i[3] != 0
        for c in range(C):
            sse = 0.0
            for b in range(nblk):
                sse += part_sse[b, c]
            if need_grad:
                gout = out_grad[c]
                for k in range(dnet):
                    gout[k] = part_g[0, c, k]
                for b in range(1, nblk):
                    pg = part_g[b, c]
                    for k in range(dnet):
                        gout[k] += pg[k]
            u = np.float64(theta[c, D - 1]) if prm_i[1] != 0 else prm_f[1]
            _finish(theta, c, sse, u, math.exp(-2.0 * u), prm_i, prm_f, prior_loc, prior_prec, out_val,
                    out_grad)


@functools.lru_cache(maxsize=1)
def _own_source_digest() -> str:
    """Digest of this file: generated kernels embed it, so that editing the shared helpers above also
    renames (and so recompiles) every generated kernel instead of reusing stale cached machine code."""
    try:
        with open(__file__, "rb") as fh:
            return hashlib.sha1(fh.read()).hexdigest()[:16]
    except OSError:  # pragma: no cover
        return "unknown"


class _Code:
    """A tiny indented source writer."""

    def __init__(self):
        self.lines: list[str] = []
        self.level = 0

    def __call__(self, *lines: str) -> None:
        self.lines.extend("    " * self.level + line for line in lines)

    @contextlib.contextmanager
    def block(self, header: str):
        self(header)
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _kernel_source(sizes: tuple[int, ...], act: str, dtype: str, cache: bool,
                   tuning: tuple[int, int, int] | None = None) -> str:
    """Python source of the kernel module for layer sizes ``(d, widths..., m)``; ``tuning`` is
    ``(_UNROLL, _BLOCK, _FUSE_OUT)`` (the module defaults when None)."""
    L = len(sizes) - 1
    m = sizes[-1]
    U, B, fuse_limit = tuning if tuning is not None else (_UNROLL, _BLOCK, _FUSE_OUT)
    woff, boff, zoff = [], [], []
    off = z = 0
    for l in range(L):
        woff.append(off)
        off += sizes[l] * sizes[l + 1]
        boff.append(off)
        off += sizes[l + 1]
        zoff.append(z)
        if l < L - 1:
            z += sizes[l + 1]
    dnet = off
    fuse = L >= 2 and m <= fuse_limit

    def act_expr(a: str) -> str:
        return f"_tanh({a})" if act == "tanh" else f"(ZERO if {a} < ZERO else {a})"

    def in_rt(l: int, k: str) -> str:  # input row k of layer l (runtime index)
        return f"xt[{k}, n0:n0 + nb]" if l == 0 else f"wz[{zoff[l - 1]} + {k}]"

    def in_row(l: int, k: int) -> str:  # input row k of layer l (static index; bound name if unrolled)
        if sizes[l] <= U:
            return f"x{k}" if l == 0 else f"z{l - 1}_{k}"
        return in_rt(l, str(k))

    def da_rt(l: int, k: str) -> str:  # rows of dlogp/d(pre-activation) of layer l
        return f"wg[{k}]" if l == L - 1 else f"wd[{zoff[l]} + {k}]"

    def da_row(l: int, k: int) -> str:
        if sizes[l + 1] <= U:
            return f"f{k}" if l == L - 1 else f"d{l}_{k}"
        return da_rt(l, str(k))

    def total(terms: list[str]) -> str:
        return " + ".join(terms)

    c = _Code()
    c("# Generated by probnets.fused_mlp; do not edit.",
      f"# sizes={sizes} activation={act} dtype={dtype} tuning={(U, B, fuse_limit)} version={_GEN_VERSION}",
      "import math", "", "import numpy as np", "from numba import njit, prange", "",
      f"from probnets.fused_mlp import _FASTMATH, _finish, {'_tanh32' if dtype == 'float32' else '_tanh64'} as _tanh",
      f"# helpers: {_own_source_digest()}", "",
      f"DT = np.{dtype}", "ZERO = DT(0.0)", "ONE = DT(1.0)", f"DNET = {dnet}",
      f"_JIT = dict(nogil=True, cache={cache}, fastmath=_FASTMATH, error_model='numpy')")
    c("", "")
    c("@njit(parallel=True, **_JIT)")
    with c.block("def kernel_parallel(theta, xt, yt, prm_i, prm_f, prior_loc, prior_prec, blocks, wz, wd, wg, wt, "
                 "part_g, part_sse, out_val, out_grad, items, nthreads):"):
        c("# Static split of the work items over threads; thread t uses workspace t.",
          "per = (items + nthreads - 1) // nthreads")
        with c.block("for t in prange(nthreads):"):
            c("lo = t * per", "hi = min(items, lo + per)")
            with c.block("if lo < hi:"):
                c("kernel(theta, xt, yt, prm_i, prm_f, prior_loc, prior_prec, blocks, wz[t], wd[t], wg[t], wt[t], "
                  "part_g, part_sse, out_val, out_grad, lo, hi)")
    c("", "")
    c("@njit(**_JIT)")
    with c.block("def kernel(theta, xt, yt, prm_i, prm_f, prior_loc, prior_prec, blocks, wz, wd, wg, wt, "
                 "part_g, part_sse, out_val, out_grad, i_start, i_end):"):
        c("D = theta.shape[1]", "nreal = prm_i[0]", "learned = prm_i[1] != 0", "need_grad = prm_i[3] != 0",
          "nblk = blocks.shape[0] - 1", "tr = wt[0]")
        # row views of the workspace that unrolled loops use by name
        for l in range(L - 1):
            if sizes[l + 1] <= U:
                for k in range(sizes[l + 1]):
                    c(f"z{l}_{k} = wz[{zoff[l] + k}]", f"d{l}_{k} = wd[{zoff[l] + k}]")
        if m <= U:
            for o in range(m):
                c(f"f{o} = wg[{o}]")
        with c.block("for i in range(i_start, i_end):"):
            c("c = i // nblk", "b = i - c * nblk", "w = theta[c]",
              "u = np.float64(w[D - 1]) if learned else prm_f[1]", "inv_var = math.exp(-2.0 * u)",
              "gscale = DT(inv_var * prm_f[0])", "n0 = blocks[b]", "nb = blocks[b + 1] - n0")
            if sizes[0] <= U:
                for k in range(sizes[0]):
                    c(f"x{k} = xt[{k}, n0:n0 + nb]")
            # ---- forward
            for l in range(L):
                din, dout = sizes[l], sizes[l + 1]
                is_out = l == L - 1
                if is_out and fuse:
                    break
                fuse_here = fuse and l == L - 2
                c(f"# layer {l}: {din} -> {dout}")
                if fuse_here:
                    for o in range(m):
                        c(f"bo{o} = w[{boff[L - 1] + o}]")
                    with c.block("for n in range(nb):"):
                        for o in range(m):
                            c(f"f{o}[n] = bo{o}")

                def finalize():
                    if is_out:
                        c("zr[n] = a")
                        return
                    c(f"t = {act_expr('a')}", "zr[n] = t")
                    if fuse_here:
                        for o in range(m):
                            c(f"f{o}[n] += v{o} * t")

                with c.block(f"for j in range({dout}):"):
                    c(f"zr = {'wg[j]' if is_out else f'wz[{zoff[l]} + j]'}", f"bj = w[{boff[l]} + j]",
                      f"o_ = {woff[l]} + j * {din}")
                    if fuse_here:
                        for o in range(m):
                            c(f"v{o} = w[{woff[L - 1] + o * dout} + j]")
                    if din <= U:
                        for k in range(din):
                            c(f"w{k} = w[o_ + {k}]")
                        with c.block("for n in range(nb):"):
                            c("a = bj + " + total([f"w{k} * {in_row(l, k)}[n]" for k in range(din)]))
                            finalize()
                    else:
                        R = din % B or B
                        KM = din - R
                        with c.block("for n in range(nb):"):
                            c("zr[n] = bj")
                        with c.block(f"for kb in range(0, {KM}, {B}):"):
                            for i in range(B):
                                c(f"q{i} = w[o_ + kb + {i}]", f"r{i} = {in_rt(l, f'kb + {i}')}")
                            with c.block("for n in range(nb):"):
                                c("zr[n] += " + total([f"q{i} * r{i}[n]" for i in range(B)]))
                        for i in range(R):
                            c(f"q{i} = w[o_ + {KM + i}]", f"r{i} = {in_row(l, KM + i)}")
                        with c.block("for n in range(nb):"):
                            c("a = zr[n] + " + total([f"q{i} * r{i}[n]" for i in range(R)]))
                            finalize()
            # ---- residuals: wg[o] <- (y - f) / (sigma^2 T) (zero on the padding), whose sums are the
            # gradient of the output bias
            c("g = out_grad[c if need_grad else 0] if nblk == 1 else part_g[b, c]",
              "sse = 0.0", "nvalid = min(nb, max(nreal - n0, 0))")
            with c.block(f"for o in range({m}):"):
                c("fr = wg[o]", "yr = yt[o, n0:n0 + nb]", "s = 0.0", "sg = ZERO")
                with c.block("for n in range(nb):"):
                    c("r = yr[n] - fr[n]", "r = r if n < nvalid else ZERO", "s += np.float64(r) * np.float64(r)",
                      "q = r * gscale", "fr[n] = q", "sg += q")
                c("sse += s")
                with c.block("if need_grad:"):
                    c(f"g[{boff[L - 1]} + o] = sg")
            # ---- backward
            with c.block("if need_grad:"):

                def weight_grad(l: int):
                    din, dout = sizes[l], sizes[l + 1]
                    c(f"# gradient of W_{l}")
                    with c.block(f"for j in range({dout}):"):
                        c(f"ar = {da_rt(l, 'j')}", f"o_ = {woff[l]} + j * {din}")
                        R = din if din <= U else (din % B or B)
                        KM = din - R
                        if KM:
                            with c.block(f"for kb in range(0, {KM}, {B}):"):
                                for i in range(B):
                                    c(f"r{i} = {in_rt(l, f'kb + {i}')}", f"s{i} = ZERO")
                                with c.block("for n in range(nb):"):
                                    c("an = ar[n]", *[f"s{i} += an * r{i}[n]" for i in range(B)])
                                c(*[f"g[o_ + kb + {i}] = s{i}" for i in range(B)])
                        c(*[f"s{i} = ZERO" for i in range(R)])
                        with c.block("for n in range(nb):"):
                            c("an = ar[n]", *[f"s{i} += an * {in_row(l, KM + i)}[n]" for i in range(R)])
                        c(*[f"g[o_ + {KM + i}] = s{i}" for i in range(R)])

                if not fuse:  # else W_out's gradient comes with the last hidden layer's pass
                    weight_grad(L - 1)
                for l in range(L - 2, -1, -1):
                    din, dout, nxt = sizes[l], sizes[l + 1], sizes[l + 2]
                    sv_here = fuse and l == L - 2
                    store_da = l > 0 or din > U
                    c(f"# hidden layer {l}: back-propagate from layer {l + 1}, gradient of b_{l}"
                      + (f", W_{l}" if din <= U else "") + (f", W_{L - 1}" if sv_here else ""))
                    with c.block(f"for j in range({dout}):"):
                        c(f"zr = wz[{zoff[l]} + j]")
                        if store_da:
                            c(f"dr = wd[{zoff[l]} + j]")
                        # With one unit above (nxt == 1), its weight v0 factors out of the reductions:
                        # accumulate q = da / v0 and scale the sums by v0 once.
                        factor = nxt == 1
                        if nxt <= U:
                            for o in range(nxt):
                                c(f"v{o} = w[{woff[l + 1] + o * dout} + j]")
                            e_expr = (f"{da_row(l + 1, 0)}[n]" if factor
                                      else total([f"v{o} * {da_row(l + 1, o)}[n]" for o in range(nxt)]))
                        else:
                            R = nxt % B or B
                            OM = nxt - R
                            with c.block("for n in range(nb):"):
                                c("tr[n] = ZERO")
                            with c.block(f"for ob in range(0, {OM}, {B}):"):
                                for i in range(B):
                                    c(f"q{i} = w[{woff[l + 1]} + (ob + {i}) * {dout} + j]",
                                      f"r{i} = {da_rt(l + 1, f'ob + {i}')}")
                                with c.block("for n in range(nb):"):
                                    c("tr[n] += " + total([f"q{i} * r{i}[n]" for i in range(B)]))
                            for i in range(R):
                                c(f"q{i} = w[{woff[l + 1] + (OM + i) * dout} + j]",
                                  f"r{i} = {da_row(l + 1, OM + i)}")
                            e_expr = "tr[n] + " + total([f"q{i} * r{i}[n]" for i in range(R)])
                        c("sb = ZERO")
                        if din <= U:
                            c(*[f"s{k} = ZERO" for k in range(din)])
                        if sv_here:
                            c(*[f"sv{o} = ZERO" for o in range(m)])
                        with c.block("for n in range(nb):"):
                            c("t = zr[n]", f"e = {e_expr}")
                            if sv_here:
                                c(*[f"sv{o} += f{o}[n] * t" for o in range(m)])
                            c("da = e * (ONE - t * t)" if act == "tanh" else "da = e if t > ZERO else ZERO")
                            c("sb += da")
                            if din <= U:
                                c(*[f"s{k} += da * {in_row(l, k)}[n]" for k in range(din)])
                            if store_da:
                                c("dr[n] = v0 * da" if factor else "dr[n] = da")
                        c(f"g[{boff[l]} + j] = {'v0 * sb' if factor else 'sb'}")
                        if din <= U:
                            c(f"o_ = {woff[l]} + j * {din}",
                              *[f"g[o_ + {k}] = {'v0 * ' if factor else ''}s{k}" for k in range(din)])
                        if sv_here:
                            c(*[f"g[{woff[L - 1] + o * dout} + j] = sv{o}" for o in range(m)])
                    if din > U:
                        weight_grad(l)
            with c.block("if nblk == 1:"):
                c("_finish(theta, c, sse, u, inv_var, prm_i, prm_f, prior_loc, prior_prec, out_val, out_grad)")
            with c.block("else:"):
                c("part_sse[b, c] = sse")
    return c.text()


def _kernel_dir() -> str | None:
    """A writable directory for generated kernel modules (numba caches their machine code next to them),
    or None (then kernels are compiled in memory for this process only)."""
    candidates = [os.environ.get("PROBNETS_KERNEL_DIR")]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(os.path.join(base, "probnets", "fused_mlp"))
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(os.path.join(tempfile.gettempdir(), f"probnets-fused-mlp-{uid}"))
    for path in candidates:
        if not path:
            continue
        try:
            os.makedirs(path, exist_ok=True)
            if os.access(path, os.W_OK | os.X_OK):
                return path
        except OSError:
            continue
    return None


_MODULES: dict[tuple, object] = {}
_MODULES_LOCK = threading.Lock()


def _kernel_module(sizes: tuple[int, ...], act: str, dtype: str):
    """The (imported, lazily compiled) generated kernel module for an architecture and dtype."""
    tuning = (_UNROLL, _BLOCK, _FUSE_OUT)
    key = (sizes, act, dtype, tuning)
    with _MODULES_LOCK:
        module = _MODULES.get(key)
        if module is not None:
            return module
        directory = _kernel_dir()
        source = _kernel_source(sizes, act, dtype, cache=directory is not None, tuning=tuning)
        digest = hashlib.sha1(source.encode()).hexdigest()[:20]
        name = f"pnfused_{digest}"
        module = None
        if directory is not None:
            path = os.path.join(directory, name + ".py")
            try:
                if not os.path.exists(path):
                    # Atomic and never rewritten: numba's cache index is keyed on the file's timestamp.
                    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
                    try:
                        with os.fdopen(fd, "w") as fh:
                            fh.write(source)
                        os.replace(tmp, path)
                    finally:
                        if os.path.exists(tmp):
                            os.unlink(tmp)
                with open(path) as fh:
                    if fh.read() != source:  # pragma: no cover - digest collision or tampering
                        raise OSError("unexpected kernel file content")
                # Registered in sys.modules under a top-level name: numba looks the module up by name when
                # it loads cached machine code.
                modname = f"_probnets_fused_{digest}"
                spec = importlib.util.spec_from_file_location(modname, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[modname] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(modname, None)
                    raise
            except OSError:
                module = None
        if module is None:  # no usable cache directory: compile in memory
            source = _kernel_source(sizes, act, dtype, cache=False, tuning=tuning)
            module = types.ModuleType(f"_probnets_fused_{digest}")
            exec(compile(source, f"<probnets fused kernel {name}>", "exec"), module.__dict__)
        _MODULES[key] = module
        return module


class _Workspace(threading.local):
    """Per-Python-thread scratch buffers of one log density (so concurrent callers never share them)."""

    def __init__(self):
        self.buffers = {}


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class FusedGaussianMLPLogDensity(LogDensity):
    """Log posterior of a Gaussian-likelihood :class:`~probnets.bnn.BNN` with a fused CPU gradient.

    ``value_and_grad(theta)`` equals autograd of ``model.log_prior(theta) +
    model.log_likelihood(theta, batch).sum(-1) / temperature`` for ``theta`` of shape ``(..., D)`` in
    float32 or float64; other dtypes, non-CPU tensors and a differentiable ``__call__`` (``theta``
    requiring grad with grad mode on) go to ``fallback``. The returned tensors are freshly allocated on
    every call, so callers may keep them.

    Threads: up to ``torch.get_num_threads()`` (read at construction) threads share the chains (or, with
    fewer chains than threads, chains and blocks of data points); the kernels run without the GIL.

    Args:
        model: A BNN for which :func:`supports` is true.
        batch: Prepared data ``(x (n, d), y (n, m))``.
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
        n, m = x.shape[0], model.num_latent
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
        self.learned = bool(lik.learned)
        self.analytic_prior = _AnalyticPrior.build(model)
        # prm_i: (n, learned noise, analytic prior, need grad, m)
        self._prm_i = np.asarray([n, int(self.learned), int(self.analytic_prior is not None), 1, m], dtype=np.int64)
        self._prm_i_value = self._prm_i.copy()
        self._prm_i_value[3] = 0
        loc, prec, const = self.analytic_prior if self.analytic_prior is not None else (np.zeros(1), np.zeros(1), 0.0)
        self._prior_loc, self._prior_prec = loc, prec
        # prm_f: (1/T, fixed log sigma, constant of the analytic log prior)
        self._prm_f = np.asarray([1.0 / self.temperature, 0.0 if self.learned else math.log(lik.noise_scale),
                                  const])
        self._data = {}
        self._modules = {}
        self._plans = {}
        self._dummies = {np.dtype(t): (np.empty((1, 1, 1), dtype=t), np.empty((1, 1), dtype=np.float64),
                                       np.empty((1, model.spec.dim), dtype=t)) for t in (np.float32, np.float64)}
        self._ws = _Workspace()
        # Prepare the data once, in the dtype of x (another theta dtype is prepared on its first use).
        self._prepared(torch.float32 if x.dtype == torch.float32 else torch.float64)

    def _generic(self, theta: Tensor) -> Tensor:
        batch = (self._x.to(theta.dtype), self._y)
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
        return (isinstance(theta, Tensor) and theta.is_cpu and theta.dtype in (torch.float32, torch.float64)
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
                module = self._modules[dtype] = _kernel_module(self.sizes, self.activation, npd.name)
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
                _combine(args[0], self._dnet, prm_i, self._prm_f, self._prior_loc, self._prior_prec, part_g,
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

    def __call__(self, theta: Tensor) -> Tensor:
        if not self._usable(theta) or (theta.requires_grad and torch.is_grad_enabled()):
            return self.fn(theta)  # differentiable or unsupported input: the generic path
        return self._run(theta, need_grad=False)[0]

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        if not self._usable(theta):
            return super().value_and_grad(theta)
        return self._run(theta, need_grad=True)
