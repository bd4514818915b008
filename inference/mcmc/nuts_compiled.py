"""One NUTS transition per chain in a single numba call, for log densities with a compiled gradient.

The lockstep torch kernel (``inference.mcmc.nuts``) spends about 60 small tensor operations on the
bookkeeping of every leaf (energy, multinomial sampling, U-turn checks, masking), a few microseconds each;
with a fused gradient of ~20 us per chain that bookkeeping dominates. Here the whole transition of every
chain -- integrator steps, energies, progressive multinomial sampling, the U-turn checks over momentum
checkpoints and the merges -- runs in one compiled call that evaluates the log density through the model's
``CompiledGradient`` (``LogDensity.compiled_gradient``), one chain at a time. Each chain then stops at its
own U-turn: no gradient is spent on chains that have finished, unlike in lockstep.

It implements exactly the algorithm of ``nuts.build_kernel`` and consumes the same random numbers (the
momenta and the per-transition uniforms ``nuts.draw_uniforms``), so both kernels give the same transition
up to floating-point rounding (energies and weights are accumulated in float64 here). Only diagonal mass
matrices are supported; the caller falls back to the torch kernel otherwise.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# cache=True: the transition is compiled for a signature (a few seconds) once per machine, not per process.
_JIT = dict(nogil=True, error_model="numpy", cache=True)
# Sums over D may be reassociated (vectorised); no nnan/ninf, so NaN and inf still propagate.
_SUM_JIT = dict(_JIT, fastmath={"reassoc", "contract", "nsz", "arcp"})


@numba.njit(**_SUM_JIT)
def _kinetic(p, inv):
    k = 0.0
    for i in range(p.shape[0]):
        k += np.float64(p[i]) * np.float64(inv[i]) * np.float64(p[i])
    return 0.5 * k


@numba.njit(**_JIT)
def _copy_point(qs, ps, gs, lps, dst, src):
    """Phase-space point ``src`` into slot ``dst`` (explicit loops: array assignment compiles slowly)."""
    for i in range(qs.shape[1]):
        qs[dst, i] = qs[src, i]
        ps[dst, i] = ps[src, i]
        gs[dst, i] = gs[src, i]
    lps[dst] = lps[src]


@numba.njit(**_JIT)
def _logaddexp(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    hi = max(a, b)
    return hi + math.log1p(math.exp(-abs(a - b)))


@numba.njit(**_SUM_JIT)
def _turning(inv, p_left, p_right, p_sum, offset):
    """Generalised U-turn criterion with ``rho = p_sum - offset - (p_left + p_right) / 2``."""
    dl = 0.0
    dr = 0.0
    for i in range(inv.shape[0]):
        rho = p_sum[i] - offset[i] - 0.5 * (np.float64(p_left[i]) + np.float64(p_right[i]))
        dl += np.float64(inv[i]) * np.float64(p_left[i]) * rho
        dr += np.float64(inv[i]) * np.float64(p_right[i]) * rho
    return dl <= 0.0 or dr <= 0.0


@numba.njit(**_JIT)
def _step(grad_fn, grad_args, theta, val, grad, c, q, p, g, inv, weights, eps):
    """One palindromic integrator step of chain ``c`` in place on ``q, p, g``; returns the new log density.

    ``weights`` are the kick/drift coefficients ``(b_1, a_1, ..., b_{k+1})`` (float64); ``theta``,
    ``val`` and ``grad`` are the ``C x D`` / ``C`` buffers the compiled gradient reads and writes.
    """
    D = q.shape[0]
    dt = q.dtype.type
    step = dt(eps)
    value = 0.0
    # weight x step in the state's dtype, as torch multiplies a tensor by a Python float
    b = dt(weights[0]) * step
    for i in range(D):
        p[i] += b * g[i]
    for s in range(1, weights.shape[0], 2):
        a = dt(weights[s]) * step
        b = dt(weights[s + 1]) * step
        row = theta[c]
        for i in range(D):
            q[i] += a * (inv[i] * p[i])
            row[i] = q[i]
        grad_fn(theta, *grad_args, val, grad, c, c + 1)
        value = np.float64(val[c])
        gc = grad[c]
        for i in range(D):
            g[i] = gc[i]
            p[i] += b * g[i]
    return value


def transition(grad_fn, grad_args, *arrays) -> None:
    """NUTS transitions of all chains (see ``_transition`` for the arguments), compiled on first use for
    the argument types, with the gradient called through a function pointer.

    The gradient enters as a first-class function of explicit signature rather than as a dispatcher, so
    the compiled transition depends only on argument types, never on the model, and numba can cache it.
    """
    key = (grad_fn, arrays[0].dtype)
    compiled = _COMPILED.get(key)
    if compiled is None:
        chain, values = numba.typeof(arrays[0]), numba.typeof(arrays[1])
        grad_sig = numba.types.none(chain, *(numba.typeof(a) for a in grad_args), values, chain,
                                    numba.types.intp, numba.types.intp)
        grad_fn.compile(grad_sig.args)
        signature = numba.types.none(numba.types.FunctionType(grad_sig), numba.typeof(grad_args),
                                     *(numba.typeof(a) for a in arrays))
        compiled = _COMPILED[key] = numba.njit(signature, **_JIT)(_transition)
    compiled(grad_fn, grad_args, *arrays)


#: Compiled transitions by (gradient kernel, dtype); the argument types follow from these.
_COMPILED: dict = {}


def _transition(grad_fn, grad_args, position, logdensity, logdensity_grad, momentum, inverse_mass, step_size,
               log_u, weights, max_tree_depth, divergence_threshold, out_position, out_logdensity, out_grad,
               out_momentum, out_stats):
    """NUTS transitions of all chains, in place into the ``out_*`` arrays.

    Args:
        grad_fn, grad_args: The model's compiled gradient: ``grad_fn(theta, *grad_args, val, grad, c, c + 1)``
            evaluates chain ``c`` of ``theta`` ``C x D`` into ``val[c]`` and ``grad[c]``.
        position, logdensity, logdensity_grad, momentum: The start ``C x D`` / ``C`` (momenta drawn).
        inverse_mass: Diagonal inverse mass matrix per chain ``C x D``.
        step_size: ``C``.
        log_u: Logs of the transition's uniforms ``C x (2 max_tree_depth + 2**max_tree_depth - 1)``: the
            direction of each doubling, the merge of each doubling, then one per leaf in trajectory order.
        weights: The integrator's coefficients, float64.
        out_stats: ``C x 6`` float64: acceptance-rate sum, divergent, leaves, depth, reached max depth,
            energy of the chosen point.
    """
    C, D = position.shape
    dt = position.dtype
    log_half = log_u.dtype.type(-math.log(2.0))  # compared in the uniforms' dtype, as the torch kernel does
    theta = np.empty((C, D), dtype=dt)
    val = np.empty(C, dtype=dt)
    grad = np.empty((C, D), dtype=dt)
    # Phase-space points: 0 left end, 1 right end, 2 proposal, 3 moving point, 4 sub-tree proposal.
    qs = np.empty((5, D), dtype=dt)
    ps = np.empty((5, D), dtype=dt)
    gs = np.empty((5, D), dtype=dt)
    lps = np.empty(5)
    psum = np.empty(D)
    sub_psum = np.empty(D)
    ck_p = np.empty((max_tree_depth, D), dtype=dt)
    ck_psum = np.empty((max_tree_depth, D))
    offset = np.empty(D)
    for c in range(C):
        inv = inverse_mass[c]
        eps = np.float64(step_size[c])
        lu = log_u[c]
        for i in range(D):
            qs[0, i] = position[c, i]
            ps[0, i] = momentum[c, i]
            gs[0, i] = logdensity_grad[c, i]
            psum[i] = momentum[c, i]
        lps[0] = logdensity[c]
        _copy_point(qs, ps, gs, lps, 1, 0)
        _copy_point(qs, ps, gs, lps, 2, 0)
        h0 = -np.float64(logdensity[c]) + _kinetic(momentum[c], inv)
        log_w = 0.0
        num_steps = 0
        sum_accept = 0.0
        diverging = False
        active = True
        depth = 0
        for j in range(max_tree_depth):
            forward = lu[j] < log_half
            end = 1 if forward else 0
            signed = eps if forward else -eps
            _copy_point(qs, ps, gs, lps, 3, end)
            _copy_point(qs, ps, gs, lps, 4, end)
            sub_log_w = -np.inf
            for i in range(D):
                sub_psum[i] = 0.0
            turning_any = False
            first_leaf = 2 * max_tree_depth + (1 << j) - 1
            for leaf in range(1 << j):
                lps[3] = _step(grad_fn, grad_args, theta, val, grad, c, qs[3], ps[3], gs[3], inv, weights,
                               signed)
                delta = -lps[3] + _kinetic(ps[3], inv) - h0
                if math.isnan(delta):
                    delta = np.inf
                divergent = delta > divergence_threshold
                num_steps += 1
                sum_accept += math.exp(-max(delta, 0.0))
                leaf_log_w = -delta if math.isfinite(delta) else -np.inf
                new_log_w = _logaddexp(sub_log_w, leaf_log_w)
                if lu[first_leaf + leaf] < leaf_log_w - new_log_w:
                    _copy_point(qs, ps, gs, lps, 4, 3)
                sub_log_w = new_log_w
                for i in range(D):
                    sub_psum[i] += ps[3, i]
                stop = divergent
                if leaf % 2 == 0:
                    slot = 0
                    m = leaf >> 1
                    while m:
                        slot += m & 1
                        m >>= 1
                    for i in range(D):
                        ck_p[slot, i] = ps[3, i]
                        ck_psum[slot, i] = sub_psum[i]
                else:
                    hi = 0
                    m = leaf >> 1
                    while m:
                        hi += m & 1
                        m >>= 1
                    trailing_ones = 0
                    m = leaf
                    while m & 1:
                        trailing_ones += 1
                        m >>= 1
                    for slot in range(hi - trailing_ones + 1, hi + 1):
                        # the sub-tree's momentum sum is sub_psum - ck_psum + p_start
                        for i in range(D):
                            offset[i] = ck_psum[slot, i] - np.float64(ck_p[slot, i])
                        if _turning(inv, ck_p[slot], ps[3], sub_psum, offset):
                            turning_any = True
                            stop = True
                            break
                diverging = diverging or divergent
                if stop:
                    break
            merge = not turning_any and not diverging
            if merge:
                _copy_point(qs, ps, gs, lps, end, 3)
                if lu[max_tree_depth + j] < sub_log_w - log_w:
                    _copy_point(qs, ps, gs, lps, 2, 4)
                log_w = _logaddexp(log_w, sub_log_w)
                for i in range(D):
                    psum[i] += sub_psum[i]
            depth = j + 1
            for i in range(D):
                offset[i] = 0.0
            active = merge and not _turning(inv, ps[0], ps[1], psum, offset)
            if not active:
                break
        for i in range(D):
            out_position[c, i] = qs[2, i]
            out_momentum[c, i] = ps[2, i]
            out_grad[c, i] = gs[2, i]
        out_logdensity[c] = lps[2]
        out_stats[c, 0] = sum_accept
        out_stats[c, 1] = 1.0 if diverging else 0.0
        out_stats[c, 2] = num_steps
        out_stats[c, 3] = depth
        out_stats[c, 4] = 1.0 if active else 0.0
        out_stats[c, 5] = -lps[2] + _kinetic(ps[2], inv)
