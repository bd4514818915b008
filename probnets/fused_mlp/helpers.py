"""Compiled helpers shared by every generated kernel: the vectorisable ``tanh`` approximations, the
per-chain finish (value, noise and prior gradients) and the sum of per-block partial results."""

from __future__ import annotations

import math

import numpy as np

try:  # numba is optional: without it the generic autograd path is used.
    import numba

    HAVE_NUMBA = True
except Exception:  # noqa: BLE001 - any import problem (missing, broken llvmlite) disables the fast path
    HAVE_NUMBA = False

if HAVE_NUMBA:
    # No 'nnan'/'ninf' fast-math flags: NaN and inf must propagate. error_model="numpy": x / 0 follows IEEE
    # (no exception, and loops with a division stay vectorisable).
    FASTMATH = {"contract", "reassoc", "arcp", "nsz", "afn"}
    _JIT = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
    _JIT_INNER = dict(_JIT, no_cpython_wrapper=True)

    @numba.njit(**_JIT_INNER)
    def tanh32(x):
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
    def tanh64(x):
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
    def exp_neg(y):
        # exp(-y) for y >= 0 in float64, branch-free so that loops calling it vectorise (numba's math.exp is a
        # scalar libm call: pip's llvmlite has no SVML). y = k ln2 + r, |r| <= ln2 / 2, e^r by its Taylor
        # polynomial of degree 9 (relative error < 2e-12), 2^k exact from an integer; y is clamped to 40
        # (exp(-40) = 4e-18 stands in for anything smaller). NaN takes y = 0 (callers multiply by their input,
        # which carries the NaN).
        y = min(y, 40.0)
        if not (y > 0.0):
            y = 0.0
        k = np.int64(y * 1.4426950408889634 + 0.5)
        kf = np.float64(k)
        r = (y - kf * 0.6931471803691238) - kf * 1.9082149292705877e-10
        p = 1.0 + r / 9.0
        p = 1.0 + r / 8.0 * p
        p = 1.0 + r / 7.0 * p
        p = 1.0 + r / 6.0 * p
        p = 1.0 + r / 5.0 * p
        p = 1.0 + r / 4.0 * p
        p = 1.0 + r / 3.0 * p
        p = 1.0 + r / 2.0 * p
        p = 1.0 + r * p
        return 1.0 / (np.float64(np.int64(1) << k) * p)

    @numba.njit(**_JIT_INNER)
    def phi32(a):
        """Standard normal cdf and density ``(Phi(a), phi(a))`` of a float32, vectorisable: ``erfc`` by
        Abramowitz and Stegun 7.1.26 (their rational-times-Gaussian form, |error| <= 1.5e-7 for erf, so <= 7.5e-8
        for Phi), evaluated in float64 and rounded to float32 (< 1.5e-7 in all)."""
        x = np.float64(a)
        z = abs(x) * 0.7071067811865476
        t = 1.0 / (1.0 + 0.3275911 * z)
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        g = exp_neg(z * z)
        half_erfc = 0.5 * poly * g  # P(N > |a|)
        cdf = 1.0 - half_erfc if x >= 0.0 else half_erfc
        return np.float32(cdf), np.float32(0.3989422804014327 * g)

    @numba.njit(**_JIT_INNER)
    def finish(theta, c, sse, u, inv_var, prm_i, prm_f, prior_loc, prior_prec, out_val, out_grad):
        """Value = log-likelihood / T + analytic log prior, and the gradients of the noise parameter and
        of the prior, for chain c; the network part of the gradient is already in out_grad[c]. ``sse`` is the
        sum of squared residuals for a Gaussian likelihood (``prm_i[5]`` nonzero), else the log-likelihood."""
        D = theta.shape[1]
        learned = prm_i[1] != 0
        use_prior = prm_i[2] != 0
        need_grad = prm_i[3] != 0
        inv_temp = prm_f[0]
        nm = np.float64(prm_i[0] * prm_i[4])
        if prm_i[5] != 0:
            val = (-0.5 * sse * inv_var - nm * u - 0.5 * nm * 1.8378770664093453) * inv_temp
        else:
            val = sse * inv_temp
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
    def combine(theta, dnet, prm_i, prm_f, prior_loc, prior_prec, part_g, part_sse, out_val, out_grad):
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
            finish(theta, c, sse, u, math.exp(-2.0 * u), prm_i, prm_f, prior_loc, prior_prec, out_val,
                    out_grad)
