"""Micro-benchmark of the fused numba log-density gradient against eager autograd (protocol H1 shape).

Model and data: BNN 10-50-1 with tanh, N(0, 1) priors, Gaussian likelihood with a learned noise scale under
LogNormal(-1, 1); the training part of scikit-learn's diabetes data (N = 397, d = 10), as in protocol H1.
For float32 and float64 and C chains in {2, 16, 64, 128, 256} it times ``value_and_grad(theta)`` with theta
of shape (C, D) through

* ``autograd``: the generic path (``LogDensity.value_and_grad``: eager PyTorch forward + backward);
* ``fused``: ``FusedMLPLogDensity.value_and_grad`` (generated numba kernel);
  both with ``--threads`` threads and with one thread;
* ``jax`` (if JAX is installed, in a subprocess): ``jax.jit(jax.value_and_grad(potential))`` of the same
  single-chain log density, called once per chain as NumPyro's NUTS does (reference only).

Timings are microseconds per chain-gradient (call time / C): the minimum and the median over rounds of
repeated calls, and the process CPU time per chain-gradient (all threads), which is less sensitive to other
load on a shared machine. Both PyTorch and the fused kernel use ``torch.get_num_threads()`` threads
(``--threads``, default 2).

Compile time: a fresh subprocess with empty kernel/numba cache directories measures the first
``value_and_grad`` call (``cold``: code generation, numba compilation of the shared helpers and of the
kernel; numba's own import is reported separately); a second fresh subprocess with the same, now warm,
cache directories measures the same call (``cached``: loading machine code from disk).

Usage::

    python benchmarks/fused_mlp.py [--chains 2,16,64,128,256] [--dtypes float32,float64] [--threads 2]
                                   [--rounds 7] [--no-jax] [--out benchmarks/results]

Writes ``fused_mlp.json`` and ``fused_mlp.md`` into ``--out`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

WIDTH = 50


def _model_and_data(dtype_name: str):
    import pyro.distributions as dist
    import torch

    from probnets import BNN, Gaussian
    from probnets.datasets import diabetes

    dtype = getattr(torch, dtype_name)
    split = diabetes(dtype=dtype)
    model = BNN(split.x_train.shape[1], (WIDTH,), 1, activation="tanh",
                likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    return model, (split.x_train, split.y_train)


def _theta(model, num: int, dtype_name: str):
    import torch

    g = torch.Generator().manual_seed(num)
    theta = model.init_theta(num, generator=g, dtype=getattr(torch, dtype_name))
    return theta + 0.1 * torch.randn(theta.shape, generator=g, dtype=theta.dtype)


def _time(fn, C: int, rounds: int, budget: float = 0.25) -> dict:
    """us per chain-gradient: min and median over rounds, and CPU us (all threads) per chain-gradient."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, min(200, int(budget / once)))
    walls, cpus = [], []
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(reps):
            fn()
        walls.append((time.perf_counter() - t0) / reps / C * 1e6)
        cpus.append((time.process_time() - c0) / reps / C * 1e6)
    walls.sort()
    cpus.sort()
    return {"min_us": walls[0], "median_us": walls[len(walls) // 2], "cpu_us": cpus[len(cpus) // 2], "reps": reps}


# ---- subprocess modes ------------------------------------------------------------------------------------


def _child_compile(dtype_name: str) -> dict:
    """Time numba's import and the first fused value_and_grad call (cache state set by the parent)."""
    t0 = time.perf_counter()
    import numba  # noqa: F401

    t_numba = time.perf_counter() - t0
    import torch

    torch.set_num_threads(1)
    from probnets.fused_mlp import FusedMLPLogDensity

    model, batch = _model_and_data(dtype_name)
    ld = model.logdensity(batch)
    assert isinstance(ld, FusedMLPLogDensity)
    theta = _theta(model, 2, dtype_name)
    t0, c0 = time.perf_counter(), time.process_time()
    ld.value_and_grad(theta)
    return {"numba_import_s": t_numba, "first_call_s": time.perf_counter() - t0,
            "first_call_cpu_s": time.process_time() - c0}


def _child_jax(dtype_name: str, chains: list[int], rounds: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    if dtype_name == "float64":
        jax.config.update("jax_enable_x64", True)
    model, (x, y) = _model_and_data(dtype_name)
    x = jnp.asarray(x.numpy())
    y = jnp.asarray(y.numpy().reshape(-1))
    d, n = x.shape[1], x.shape[0]
    D = model.spec.dim
    log2pi = float(np.log(2 * np.pi))

    def potential(theta):  # the same log posterior, single chain
        w1 = theta[: WIDTH * d].reshape(WIDTH, d)
        b1 = theta[WIDTH * d: WIDTH * d + WIDTH]
        o = WIDTH * d + WIDTH
        w2, b2, u = theta[o: o + WIDTH], theta[o + WIDTH], theta[o + WIDTH + 1]
        f = jnp.tanh(x @ w1.T + b1) @ w2 + b2
        r = (y - f) * jnp.exp(-u)
        loglik = -0.5 * jnp.sum(r * r) - n * u - 0.5 * n * log2pi
        net = theta[: D - 1]
        lp = -0.5 * jnp.sum(net * net) - 0.5 * (D - 1) * log2pi
        lp += -0.5 * (u + 1.0) ** 2 - 0.5 * log2pi  # LogNormal(-1, 1) on sigma, with the Jacobian
        return loglik + lp

    vg = jax.jit(jax.value_and_grad(potential))
    out = {}
    for C in chains:
        theta = [jnp.asarray(t) for t in _theta(model, C, dtype_name).numpy()]

        def run():
            res = [vg(t) for t in theta]
            jax.block_until_ready(res)

        out[str(C)] = _time(run, C, rounds)
    t0 = time.perf_counter()
    jax.jit(jax.value_and_grad(potential)).lower(theta[0]).compile()
    out["compile_s"] = time.perf_counter() - t0
    out["version"] = jax.__version__
    return out


def _run_child(args: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- main ------------------------------------------------------------------------------------------------


def _machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = os.getloadavg()
    return info


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chains", default="2,16,64,128,256")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    a = p.parse_args(argv)
    chains = [int(c) for c in a.chains.split(",")]
    dtypes = a.dtypes.split(",")

    import numba
    import torch

    from probnets.fused_mlp import FusedMLPLogDensity
    from probnets.model import LogDensity

    torch.set_num_threads(a.threads)
    result = {"benchmark": "fused_mlp", "shape": {"N": None, "d": None, "H": WIDTH, "m": 1, "activation": "tanh"},
              "threads": a.threads, "chains": chains, "machine": _machine(),
              "versions": {"torch": torch.__version__, "numba": numba.__version__}, "dtypes": {}}

    for dtype_name in dtypes:
        entry = result["dtypes"][dtype_name] = {}
        # compile time: cold (empty caches), then cached (same caches, new process)
        with tempfile.TemporaryDirectory() as kdir, tempfile.TemporaryDirectory() as ndir:
            env = {"PROBNETS_KERNEL_DIR": kdir, "NUMBA_CACHE_DIR": ndir}
            entry["compile"] = {"cold": _run_child(["_compile", dtype_name], env),
                                "cached": _run_child(["_compile", dtype_name], env)}
        model, batch = _model_and_data(dtype_name)
        result["shape"].update(N=int(batch[0].shape[0]), d=int(batch[0].shape[1]), D=model.spec.dim)
        ld = model.logdensity(batch)
        assert isinstance(ld, FusedMLPLogDensity)
        entry["autograd"], entry["fused"] = {}, {}
        for C in chains:
            theta = _theta(model, C, dtype_name)
            v0, g0 = LogDensity.value_and_grad(ld, theta)
            v1, g1 = ld.value_and_grad(theta)
            entry.setdefault("max_rel_err", {})[str(C)] = {
                "value": float(((v1 - v0).abs() / v0.abs()).max()),
                "grad": float((g1 - g0).abs().max() / g0.abs().max())}
            entry["autograd"][str(C)] = _time(lambda: LogDensity.value_and_grad(ld, theta), C, a.rounds)
            entry["fused"][str(C)] = _time(lambda: ld.value_and_grad(theta), C, a.rounds)
            # single-threaded references: PyTorch's OpenMP regions stall badly when the machine is busy
            torch.set_num_threads(1)
            entry.setdefault("autograd_1thread", {})[str(C)] = _time(lambda: LogDensity.value_and_grad(ld, theta),
                                                                     C, max(3, a.rounds // 2))
            entry.setdefault("fused_1thread", {})[str(C)] = _time(lambda: ld.value_and_grad(theta), C, a.rounds)
            torch.set_num_threads(a.threads)
            print(f"{dtype_name} C={C}: autograd {entry['autograd'][str(C)]['min_us']:.1f} us, "
                  f"fused {entry['fused'][str(C)]['min_us']:.2f} us per chain-gradient", file=sys.stderr)
        if not a.no_jax:
            try:
                entry["jax"] = _run_child(["_jax", dtype_name, ",".join(map(str, chains)), str(a.rounds)])
                result["versions"]["jax"] = entry["jax"].pop("version")
            except Exception as exc:  # noqa: BLE001 - JAX is an optional reference
                entry["jax_error"] = str(exc).splitlines()[0][:200]
    if hasattr(os, "getloadavg"):
        result["machine"]["loadavg_end"] = os.getloadavg()

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "fused_mlp.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    md = _markdown(result)
    with open(os.path.join(a.out, "fused_mlp.md"), "w") as fh:
        fh.write(md)
    print(md)
    return result


def _markdown(r: dict) -> str:
    s = r["shape"]
    lines = [f"# Fused MLP log-density gradient: {s['d']}-{s['H']}-{s['m']} {s['activation']}, N = {s['N']}, "
             f"D = {s.get('D')}", "",
             "Microseconds per chain-gradient (`value_and_grad` call time / C): min (median) over rounds; "
             f"fused CPU = process CPU time per chain-gradient with {r['threads']} threads (all threads); "
             "speed-up = best autograd / fused with "
             f"{r['threads']} threads. "
             f"Machine: {r['machine'].get('cpu', '?')}, {r['machine']['cpus']} CPUs, load average "
             f"{_fmt_load(r['machine'].get('loadavg_start'))} at start, "
             f"{_fmt_load(r['machine'].get('loadavg_end'))} at end. Versions: "
             + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + ".", ""]
    load = r["machine"].get("loadavg_start")
    if load and load[0] > 0.5:
        lines += [f"*The machine was busy (1-minute load average {load[0]:.1f} on {r['machine']['cpus']} CPUs): other "
                  "processes held CPU time, so wall-clock times with several threads are inflated (PyTorch's "
                  "OpenMP regions stall by milliseconds when a thread is descheduled). The fused CPU column is "
                  "the cost in CPU time (all threads); with idle cores the fused wall time can at best approach "
                  "that divided by the number of threads (not measured here).*", ""]
    for dtype_name, e in r["dtypes"].items():
        has_jax = "jax" in e
        t = r["threads"]
        head = (f"| C | autograd, {t} thr | autograd, 1 thr | fused, {t} thr | fused, 1 thr | fused CPU | speed-up |"
                + (" JAX jit, 1 chain/call |" if has_jax else ""))
        lines += [f"## {dtype_name}", "", head, "|" + "---|" * (head.count("|") - 1)]
        for C in r["chains"]:
            ag, fu = e["autograd"][str(C)], e["fused"][str(C)]
            ag1, fu1 = e["autograd_1thread"][str(C)], e["fused_1thread"][str(C)]
            best_ag = min(ag["min_us"], ag1["min_us"])
            row = (f"| {C} | {ag['min_us']:.1f} ({ag['median_us']:.1f}) | {ag1['min_us']:.1f} ({ag1['median_us']:.1f}) "
                   f"| {fu['min_us']:.2f} ({fu['median_us']:.2f}) | {fu1['min_us']:.2f} ({fu1['median_us']:.2f}) "
                   f"| {fu['cpu_us']:.2f} | {best_ag / fu['min_us']:.0f}x |")
            if has_jax:
                jx = e["jax"][str(C)]
                row += f" {jx['min_us']:.1f} ({jx['median_us']:.1f}) |"
            lines.append(row)
        cold, cached = e["compile"]["cold"], e["compile"]["cached"]
        err = max(max(v["value"], v["grad"]) for v in e["max_rel_err"].values())
        lines += ["", f"First call (new process): cold cache {cold['first_call_s']:.2f} s "
                  f"({cold['first_call_cpu_s']:.2f} s CPU), disk-cached {cached['first_call_s']:.2f} s; "
                  f"numba import {cold['numba_import_s']:.2f} s."
                  + (f" JAX compile of value_and_grad: {e['jax']['compile_s']:.2f} s." if has_jax else "")
                  + f" Max relative difference fused vs autograd: {err:.1e}.", ""]
    return "\n".join(lines)


def _fmt_load(load) -> str:
    return "/".join(f"{v:.1f}" for v in load) if load else "?"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_compile":
        print(json.dumps(_child_compile(sys.argv[2])))
    elif len(sys.argv) > 1 and sys.argv[1] == "_jax":
        print(json.dumps(_child_jax(sys.argv[2], [int(c) for c in sys.argv[3].split(",")], int(sys.argv[4]))))
    else:
        main()
