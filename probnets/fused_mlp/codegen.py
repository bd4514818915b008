"""Python source of the fused kernels, specialised to an architecture (layer sizes, activation, likelihood,
dtype)."""

from __future__ import annotations

import contextlib
import functools
import hashlib

from probnets.fused_mlp import helpers

# One kernel per (layer sizes, activation, likelihood, dtype), generated as Python source specialised to the
# architecture: every loop over features of width <= UNROLL is unrolled into scalar weights and
# scalar accumulators, so the innermost loops run over data points only, with all partial sums in
# registers (wider layers use runtime blocks of BLOCK features). The source is written once to a
# cache directory and imported from there, so numba's ``cache=True`` keeps the compiled code on disk.
#
# Per work item (chain c, data block [n0, n0 + nb)), with activations stored transposed (width, n):
#   forward   z_l[j] = act(b_l[j] + sum_k W_l[j, k] z_{l-1}[k]); the output f[o] is accumulated in the
#             same pass over the last hidden layer (for m <= FUSE_OUT outputs);
#   residual  f[o] <- dlogp/df[o]: (y[o] - f[o]) / (sigma^2 T) (Gaussian; the sum of squares in float64),
#             (y - sigmoid(f)) / T (Bernoulli), (onehot(y)[o] - softmax(f)[o]) / T (Categorical; the
#             log-likelihood sum in float64);
#             GELU layers keep their pre-activations in the rows of wd that the backward pass overwrites;
#   backward  one pass per hidden unit j: e = sum_o W_{l+1}[o, j] da_{l+1}[o], da = e act'(z),
#             the gradients of b_l[j], W_l[j, :] (and of W_out[:, j]) as register reductions.

_GEN_VERSION = 6
UNROLL = 16      # feature dimensions up to this are unrolled into scalars
BLOCK = 8        # wider dimensions: runtime blocks of this many features
FUSE_OUT = 4     # the output layer is fused into the last hidden layer's passes for m <= FUSE_OUT
UNITS = 2        # wide layers: units whose sums over the same input rows are accumulated together
ACTIVATIONS = ("tanh", "relu", "gelu")
#: GELU's kernel approximates Phi to 1e-7 (``helpers.phi32``), enough for float32 only; float64 theta of a GELU
#: network takes the generic path (with libm's scalar erf a fused kernel was slower than eager autograd).
GELU_DTYPES = ("float32",)
LIKELIHOODS = ("gaussian", "bernoulli", "categorical")


@functools.lru_cache(maxsize=1)
def _helpers_digest() -> str:
    """Digest of the shared helpers' file: generated kernels embed it, so that editing the helpers also renames
    (and so recompiles) every generated kernel instead of reusing stale cached machine code."""
    try:
        with open(helpers.__file__, "rb") as fh:
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


def kernel_source(sizes: tuple[int, ...], act: str, dtype: str, cache: bool,
                   tuning: tuple[int, int, int, int] | None = None, likelihood: str = "gaussian") -> str:
    """Python source of the kernel module for layer sizes ``(d, widths..., m)``, an activation in
    ``ACTIVATIONS`` (or ``"none"`` without hidden layers) and a likelihood in ``LIKELIHOODS``; ``tuning`` is
    ``(UNROLL, BLOCK, FUSE_OUT, UNITS)`` (the module defaults when None)."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if act == "gelu" and dtype not in GELU_DTYPES:
        raise ValueError(f"the fused GELU kernel takes dtypes {GELU_DTYPES}, got {dtype!r}")
    L = len(sizes) - 1
    m = sizes[-1]
    U, B, fuse_limit, J = tuning if tuning is not None else (UNROLL, BLOCK, FUSE_OUT, UNITS)
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
    fuse = L >= 2 and m <= min(fuse_limit, U)  # the fused passes use the unrolled output rows

    def act_expr(a: str) -> str:
        if act == "tanh":
            return f"_tanh({a})"
        if act == "gelu":  # exact: a Phi(a), with Phi bound by the caller (the backward pass needs it too)
            return f"{a} * _phi({a})[0]"
        return f"(ZERO if {a} < ZERO else {a})"

    def act_grad_expr() -> str:  # d act / d a from t = act(a) (tanh, relu) or from a itself (gelu)
        if act == "tanh":
            return "ONE - t * t"
        if act == "gelu":
            return "cdf + a * pdf"
        return "ONE if t > ZERO else ZERO"

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

    tanh = "tanh32" if dtype == "float32" else "tanh64"
    c = _Code()
    c("# Generated by probnets.fused_mlp; do not edit.",
      f"# sizes={sizes} activation={act} dtype={dtype} tuning={(U, B, fuse_limit, J)} version={_GEN_VERSION}",
      "import math", "", "import numpy as np", "from numba import njit, prange", "",
      f"from probnets.fused_mlp.helpers import FASTMATH, finish, phi32 as _phi, {tanh} as _tanh",
      f"# helpers: {_helpers_digest()}", "",
      f"DT = np.{dtype}", "ZERO = DT(0.0)", "ONE = DT(1.0)", f"DNET = {dnet}",
      f"_JIT = dict(nogil=True, cache={cache}, fastmath=FASTMATH, error_model='numpy')")
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
                    if act == "gelu":
                        c("pr[n] = a")
                    c(f"t = {act_expr('a')}", "zr[n] = t")
                    if fuse_here:
                        for o in range(m):
                            c(f"f{o}[n] += v{o} * t")

                def out_row(j: str) -> str:
                    return f"wg[{j}]" if is_out else f"wz[{zoff[l]} + {j}]"

                R = din % B or B
                KM = din - R
                # wide inputs: the first KM inputs of J units at a time, so each input row loaded is used J
                # times (the per-unit loop below adds the last R inputs and applies the activation)
                JM = dout - dout % J if din > U and KM else 0
                if JM:
                    with c.block(f"for jb in range(0, {JM}, {J}):"):
                        for u in range(J):
                            c(f"zr{u} = {out_row(f'jb + {u}')}", f"bj{u} = w[{boff[l]} + jb + {u}]",
                              f"o{u} = {woff[l]} + (jb + {u}) * {din}")
                        with c.block("for n in range(nb):"):
                            c(*[f"zr{u}[n] = bj{u}" for u in range(J)])
                        with c.block(f"for kb in range(0, {KM}, {B}):"):
                            for i in range(B):
                                c(f"r{i} = {in_rt(l, f'kb + {i}')}", *[f"q{u}_{i} = w[o{u} + kb + {i}]"
                                                                       for u in range(J)])
                            with c.block("for n in range(nb):"):
                                c(*[f"zr{u}[n] += " + total([f"q{u}_{i} * r{i}[n]" for i in range(B)])
                                    for u in range(J)])

                with c.block(f"for j in range({dout}):"):
                    c(f"zr = {out_row('j')}", f"bj = w[{boff[l]} + j]", f"o_ = {woff[l]} + j * {din}")
                    if act == "gelu" and not is_out:
                        c(f"pr = wd[{zoff[l]} + j]")
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
                        with c.block(f"if j >= {JM}:"):  # the units the blocked pass left (all when JM = 0)
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
            # ---- residuals: wg[o] <- dlogp/df[o] (zero on the padding), whose sums are the gradient of the
            # output bias; sse: the sum of squared residuals (Gaussian) or the log-likelihood (otherwise)
            c("g = out_grad[c if need_grad else 0] if nblk == 1 else part_g[b, c]",
              "sse = 0.0", "nvalid = min(nb, max(nreal - n0, 0))")
            if likelihood == "gaussian":
                with c.block(f"for o in range({m}):"):
                    c("fr = wg[o]", "yr = yt[o, n0:n0 + nb]", "s = 0.0", "sg = ZERO")
                    with c.block("for n in range(nb):"):
                        c("r = yr[n] - fr[n]", "r = r if n < nvalid else ZERO",
                          "s += np.float64(r) * np.float64(r)", "q = r * gscale", "fr[n] = q", "sg += q")
                    c("sse += s")
                    with c.block("if need_grad:"):
                        c(f"g[{boff[L - 1]} + o] = sg")
            elif likelihood == "bernoulli":  # y in {0, 1}; log p = y f - softplus(f)
                c("fr = wg[0]", "yr = yt[0, n0:n0 + nb]", "sg = ZERO")
                with c.block("for n in range(nb):"):
                    c("f = fr[n]", "sp = (f if f > ZERO else ZERO) + math.log1p(math.exp(-abs(f)))",
                      "ok = n < nvalid", "sse += np.float64(yr[n] * f - sp) if ok else 0.0",
                      "q = (yr[n] - math.exp(f - sp)) * gscale if ok else ZERO", "fr[n] = q", "sg += q")
                with c.block("if need_grad:"):
                    c(f"g[{boff[L - 1]}] = sg")
            else:  # categorical, y one-hot; log p = <y, f> - logsumexp(f)
                c(*[f"fr{o} = wg[{o}]" for o in range(m)], *[f"yr{o} = yt[{o}, n0:n0 + nb]" for o in range(m)],
                  *[f"sg{o} = ZERO" for o in range(m)])
                with c.block("for n in range(nb):"):
                    c("mx = fr0[n]", *[f"mx = max(mx, fr{o}[n])" for o in range(1, m)],
                      *[f"e{o} = math.exp(fr{o}[n] - mx)" for o in range(m)],
                      "se = " + total([f"e{o}" for o in range(m)]),
                      "ok = n < nvalid",
                      "sse += np.float64(" + total([f"yr{o}[n] * fr{o}[n]" for o in range(m)])
                      + " - mx - math.log(se)) if ok else 0.0",
                      "sc = gscale / se if ok else ZERO",
                      *[line for o in range(m) for line in (
                          f"q = yr{o}[n] * gscale - e{o} * sc if ok else ZERO", f"fr{o}[n] = q", f"sg{o} += q")])
                with c.block("if need_grad:"):
                    c(*[f"g[{boff[L - 1] + o}] = sg{o}" for o in range(m)])
            # ---- backward
            with c.block("if need_grad:"):

                def weight_grad(l: int):
                    din, dout = sizes[l], sizes[l + 1]
                    R = din if din <= U else (din % B or B)
                    KM = din - R
                    c(f"# gradient of W_{l}")
                    # the first KM inputs of J units at a time: each input row loaded serves J reductions
                    JM = dout - dout % J if KM else 0
                    if JM:
                        with c.block(f"for jb in range(0, {JM}, {J}):"):
                            c(*[f"ar{u} = {da_rt(l, f'jb + {u}')}" for u in range(J)],
                              *[f"o{u} = {woff[l]} + (jb + {u}) * {din}" for u in range(J)])
                            with c.block(f"for kb in range(0, {KM}, {B}):"):
                                for i in range(B):
                                    c(f"r{i} = {in_rt(l, f'kb + {i}')}", *[f"s{u}_{i} = ZERO" for u in range(J)])
                                with c.block("for n in range(nb):"):
                                    c(*[f"an{u} = ar{u}[n]" for u in range(J)],
                                      *[f"s{u}_{i} += an{u} * r{i}[n]" for i in range(B) for u in range(J)])
                                c(*[f"g[o{u} + kb + {i}] = s{u}_{i}" for u in range(J) for i in range(B)])
                    with c.block(f"for j in range({dout}):"):
                        c(f"ar = {da_rt(l, 'j')}", f"o_ = {woff[l]} + j * {din}")
                        if KM:
                            with c.block(f"for kb in range(0, {KM} if j >= {JM} else 0, {B}):"):
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
                        if act == "gelu":
                            c(f"pr = wd[{zoff[l]} + j]")
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
                            if act == "gelu":
                                c("a = pr[n]", "cdf, pdf = _phi(a)")
                            c(f"da = e * ({act_grad_expr()})")
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
                c("finish(theta, c, sse, u, inv_var, prm_i, prm_f, prior_loc, prior_prec, out_val, out_grad)")
            with c.block("else:"):
                c("part_sse[b, c] = sse")
    return c.text()
