"""Chain-gradient cost of the generic (non-fused) log-density path: eager autograd, compiled, NumPyro.

Models (both through the generic ``ProbModel.logdensity``; the fused numba kernel is never used):

* ``h1``: protocol H1's BNN 10-50-1 tanh, N(0, 1) priors, Gaussian likelihood with a learned noise scale under
  LogNormal(-1, 1), on the training part of scikit-learn's diabetes data (N = 397);
* ``digits``: BNN 64-50-10 tanh, N(0, 1) priors, Categorical likelihood, on all of scikit-learn's digits
  (N = 1797, pixels / 16);
* ``breast``: BNN 30-50-1 tanh, N(0, 1) priors, Bernoulli likelihood, on scikit-learn's breast cancer data
  (N = 569, standardised);
* ``h1-gelu``: ``h1`` with the exact GELU activation.

For float32 and float64 and C chains in ``--chains`` it times ``value_and_grad(theta)``, theta ``(C, D)``, with one
thread, each approach in its own process:

* ``eager``: ``LogDensity.value_and_grad`` (eager forward, autograd backward);
* ``compiled``: ``probnets.compiled.CompiledLogDensity`` (``torch.func.grad_and_value`` traced by ``make_fx``,
  compiled by inductor, one graph per C);
* ``autotune`` (float32 only, ``--no-autotune`` to skip): the same with
  ``mode="max-autotune-no-cudagraphs"`` (inductor times its C++ matrix-product templates against the BLAS
  library's and keeps the fastest);
* ``dynamo`` (float32 only, ``--no-dynamo`` to skip): ``torch.compile(fn, dynamic=False)`` of the forward pass with
  autograd's backward (AOTAutograd), the textbook way (graph breaks at the models' data-dependent checks);
* ``fused`` (``--approaches``): ``BNN.logdensity``'s default path, the fused numba kernel (a reference
  beside the generic path: it is what a user of these BNNs gets, not the generic path the target is about);
* ``numpyro``: the same model written in NumPyro, ``jax.jit(jax.value_and_grad(potential_fn))`` on the flat
  unconstrained parameters: called once per chain (``numpyro, per chain``, as NumPyro's NUTS evaluates each
  chain) and ``jax.vmap``-ed over all C chains in one call (``numpyro, vmap``, as ``chain_method="vectorized"``).

Timings: process CPU time per chain-gradient (CPU time of a call / C), median over ``--rounds`` rounds (the
machine is shared; CPU time is less sensitive to other load than wall time), and the minimum wall time over the
rounds. Compile time: the first call of the
compiled path per C (trace + compile + check against eager), wall and process CPU seconds (inductor may compile in
worker processes, whose CPU time the process CPU time does not include), with an empty inductor cache, then in a
second process with the same, now warm, cache (``TORCHINDUCTOR_CACHE_DIR`` points to a temporary directory).

Usage::

    python benchmarks/generic_grad.py [--models h1,digits] [--chains 2,16,64] [--dtypes float32,float64]
                                      [--rounds 5] [--approaches eager,compiled,autotune,dynamo]
                                      [--report generic_grad] [--out benchmarks/results]
    python benchmarks/generic_grad.py --render [--report NAME] [--out benchmarks/results]  # markdown from the JSON
    python benchmarks/generic_grad.py --models digits,breast,h1-gelu --approaches eager,fused --report fused_likelihoods

Writes ``<report>.json`` and ``<report>.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from fused_mlp import _machine, _theta, _time  # noqa: E402

WIDTH = 50


def _model_and_data(name: str, dtype_name: str):
    import numpy as np
    import pyro.distributions as dist
    import torch

    from probnets import BNN, Bernoulli, Categorical, Gaussian
    from probnets.datasets import diabetes, table

    dtype = getattr(torch, dtype_name)
    if name in ("h1", "h1-gelu"):
        split = diabetes(dtype=dtype)
        model = BNN(split.x_train.shape[1], (WIDTH,), 1, activation="gelu" if name == "h1-gelu" else "tanh",
                    likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
        return model, (split.x_train, split.y_train)
    if name == "breast":
        t = table("breast_cancer")
        x = (t.x - t.x.mean(0)) / t.x.std(0)
        model = BNN(t.x.shape[1], (WIDTH,), 1, activation="tanh", likelihood=Bernoulli())
        return model, (torch.tensor(x, dtype=dtype), torch.tensor(t.y, dtype=dtype))
    t = table("digits")
    model = BNN(t.x.shape[1], (WIDTH,), 10, activation="tanh", likelihood=Categorical(10))
    return model, (torch.tensor(t.x / 16.0, dtype=dtype), torch.tensor(t.y.astype(np.int64)))


# ---- subprocess modes ------------------------------------------------------------------------------------


def _child_torch(name: str, dtype_name: str, approach: str, chains: list[int], rounds: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from probnets.compiled import CompiledLogDensity
    from probnets.model import ProbModel

    model, batch = _model_and_data(name, dtype_name)
    eager = ProbModel.logdensity(model, batch)  # the generic path: never the fused kernel
    out = {"D": model.spec.dim, "N": int(batch[0].shape[0])}
    for C in chains:
        theta = _theta(model, C, dtype_name)
        if approach == "eager":
            fn = eager.value_and_grad
        elif approach == "fused":
            from probnets.fused_mlp import FusedMLPLogDensity

            fused = model.logdensity(batch)
            assert isinstance(fused, FusedMLPLogDensity), type(fused)
            fn = fused.value_and_grad
        elif approach in ("compiled", "autotune"):
            mode = "max-autotune-no-cudagraphs" if approach == "autotune" else None
            fn = CompiledLogDensity(eager, name=repr(model), mode=mode).value_and_grad
        else:  # dynamo: compiled forward, AOTAutograd backward
            torch._dynamo.reset()
            forward = torch.compile(eager.fn, dynamic=False)

            def fn(t, forward=forward):
                with torch.enable_grad():
                    t = t.detach().requires_grad_(True)
                    value = forward(t)
                    (grad,) = torch.autograd.grad(value.sum(), t)
                return value.detach(), grad
        t0, c0 = time.perf_counter(), time.process_time()
        value, grad = fn(theta)
        first = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        ref_value, ref_grad = eager.value_and_grad(theta)
        row = _time(lambda: fn(theta), C, rounds)
        row["first_call"] = first
        row["max_rel_err"] = float(max((value - ref_value).abs().max() / ref_value.abs().max(),
                                       (grad - ref_grad).abs().max() / ref_grad.abs().max()))
        out[str(C)] = row
    out["torch"] = torch.__version__
    return out


def _child_warm(name: str, dtype_name: str, C: int) -> dict:
    """First compiled call in a new process (the parent points the inductor cache at the warm directory)."""
    import torch

    torch.set_num_threads(1)
    from probnets.compiled import CompiledLogDensity
    from probnets.model import ProbModel

    model, batch = _model_and_data(name, dtype_name)
    ld = CompiledLogDensity(ProbModel.logdensity(model, batch))
    theta = _theta(model, C, dtype_name)
    t0, c0 = time.perf_counter(), time.process_time()
    ld.value_and_grad(theta)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "fallback": ld.fallback_reason}


def _numpyro_model(name: str):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    import jax

    def model(x, y):
        d = x.shape[1]
        m = 10 if name == "digits" else 1
        w1 = numpyro.sample("w1", nd.Normal(0.0, 1.0).expand([WIDTH, d]).to_event(2))
        b1 = numpyro.sample("b1", nd.Normal(0.0, 1.0).expand([WIDTH]).to_event(1))
        w2 = numpyro.sample("w2", nd.Normal(0.0, 1.0).expand([m, WIDTH]).to_event(2))
        b2 = numpyro.sample("b2", nd.Normal(0.0, 1.0).expand([m]).to_event(1))
        a = x @ w1.T + b1
        f = (jax.nn.gelu(a, approximate=False) if name == "h1-gelu" else jnp.tanh(a)) @ w2.T + b2
        if name in ("h1", "h1-gelu"):
            sigma = numpyro.sample("sigma", nd.LogNormal(-1.0, 1.0))
            numpyro.sample("y", nd.Normal(f[:, 0], sigma), obs=y)
        elif name == "breast":
            numpyro.sample("y", nd.Bernoulli(logits=f[:, 0]), obs=y)
        else:
            numpyro.sample("y", nd.Categorical(logits=f), obs=y)

    return model


def _child_numpyro(name: str, dtype_name: str, chains: list[int], rounds: int) -> dict:
    import jax

    if dtype_name == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model

    model, (x, y) = _model_and_data(name, dtype_name)
    x = jnp.asarray(x.numpy())
    y = jnp.asarray(y.numpy().reshape(-1))
    info = initialize_model(jax.random.PRNGKey(0), _numpyro_model(name), model_args=(x, y))
    flat0, unravel = ravel_pytree(info.param_info.z)

    def potential(flat):
        return info.potential_fn(unravel(flat))

    vg = jax.jit(jax.value_and_grad(potential))
    vg_vmap = jax.jit(jax.vmap(jax.value_and_grad(potential)))
    dt = np.float64 if dtype_name == "float64" else np.float32
    out = {"D": int(flat0.shape[0])}
    for C in chains:
        thetas = jnp.asarray(np.random.default_rng(C).normal(0.0, 0.3, (C, flat0.shape[0])).astype(dt))
        rows = [thetas[c] for c in range(C)]

        def per_chain():
            jax.block_until_ready([vg(t) for t in rows])

        def vmapped():
            jax.block_until_ready(vg_vmap(thetas))

        t0 = time.perf_counter()
        vmapped()
        vmap_compile = time.perf_counter() - t0
        out[str(C)] = {"per_chain": _time(per_chain, C, rounds), "vmap": _time(vmapped, C, rounds),
                       "vmap_compile_s": vmap_compile}
    t0 = time.perf_counter()
    jax.jit(jax.value_and_grad(potential)).lower(flat0).compile()
    out["compile_s"] = time.perf_counter() - t0
    out["jax"], out["numpyro"] = jax.__version__, __import__("numpyro").__version__
    return out


#: One thread for every child: XLA's CPU client otherwise runs its own thread pool beside OMP's.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def _run_child(args: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True,
                          env={**os.environ, **ONE_THREAD, **(env or {})}, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- main ------------------------------------------------------------------------------------------------


APPROACHES = ("eager", "compiled", "autotune", "dynamo", "fused")
LABELS = {"eager": "eager", "compiled": "compiled", "autotune": "compiled, max-autotune",
          "dynamo": "dynamo fwd + AOT bwd", "fused": "fused kernel"}
FLOAT32_ONLY = ("autotune", "dynamo")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="h1,digits")
    p.add_argument("--chains", default="2,16,64")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--approaches", default="eager,compiled,autotune,dynamo",
                   help=f"comma-separated subset of {','.join(APPROACHES)} (autotune and dynamo: float32 only)")
    p.add_argument("--report", default="generic_grad", help="name of the JSON and markdown files")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--render", action="store_true", help="only write the markdown of the saved JSON")
    a = p.parse_args(argv)
    if a.render:
        with open(os.path.join(a.out, f"{a.report}.json")) as fh:
            result = json.load(fh)
        return _write_markdown(result, a.out, a.report)
    approaches = a.approaches.split(",")
    unknown = sorted(set(approaches) - set(APPROACHES))
    if unknown:
        p.error(f"unknown approaches {unknown}; choose from {APPROACHES}")
    chains = a.chains.split(",")
    result = {"machine": _machine(), "chains": [int(c) for c in chains], "rounds": a.rounds, "models": {}}
    for name in a.models.split(","):
        for dtype_name in a.dtypes.split(","):
            with tempfile.TemporaryDirectory(prefix="generic_grad_inductor_") as cache:
                env = {"TORCHINDUCTOR_CACHE_DIR": cache}
                entry = {}
                for approach in approaches:
                    if approach in FLOAT32_ONLY and dtype_name != "float32":
                        continue
                    print(f"{name} {dtype_name} {approach} ...", file=sys.stderr, flush=True)
                    entry[approach] = _run_child(["--child", "torch", name, dtype_name, approach, ",".join(chains),
                                                  str(a.rounds)], env)
                if "compiled" in entry:
                    entry["compiled_warm"] = _run_child(["--child", "warm", name, dtype_name, chains[0]], env)
            print(f"{name} {dtype_name} numpyro ...", file=sys.stderr, flush=True)
            entry["numpyro"] = _run_child(["--child", "numpyro", name, dtype_name, ",".join(chains),
                                           str(a.rounds)])
            result["models"][f"{name}/{dtype_name}"] = entry
    result["machine"]["loadavg_end"] = os.getloadavg()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"{a.report}.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    return _write_markdown(result, a.out, a.report)


def _write_markdown(result: dict, out: str, report: str) -> dict:
    text = markdown(result)
    with open(os.path.join(out, f"{report}.md"), "w") as fh:
        fh.write(text)
    print(text)
    return result


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = ["# Log-density gradient per chain: eager, compiled, fused kernel vs NumPyro", "",
             "Microseconds of process CPU time per chain-gradient (CPU time of `value_and_grad` of C chains / C), "
             f"median over {r['rounds']} rounds [minimum wall time in brackets], one thread, each approach in its own "
             "process; the ratios compare with the better of NumPyro's two ways, by CPU time and by minimum wall time "
             "(NumPyro's process CPU time exceeds its wall time although XLA is limited to one thread: more than "
             "one of its threads is busy, so for NumPyro the minimum wall time is the fairer measure). Machine: "
             f"{m.get('cpu', '?')}, {m.get('cpus')} CPUs, load average {_load(m.get('loadavg_start'))} at start, "
             f"{_load(m.get('loadavg_end'))} at end.", ""]
    if m.get("loadavg_start", [0])[0] > 1.5:
        lines += [f"*Loaded machine (1-minute load {m['loadavg_start'][0]:.1f} on {m.get('cpus')} CPUs): CPU "
                  "times are less inflated than wall times, but cache and memory-bandwidth contention remain; compile "
                  "wall times are inflated most.*", ""]

    def cell(row):
        return f"{row['cpu_us']:.1f} [{row['min_us']:.0f}]"

    for key, e in r["models"].items():
        present = [k for k in APPROACHES if k in e]
        compiled = [k for k in ("compiled", "autotune") if k in e]
        head = [LABELS[k] for k in present] + ["numpyro, per chain", "numpyro, vmap"]
        head += (["best compiled / best numpyro (CPU; wall)"] if compiled else [])
        head += ["fused / best numpyro (CPU; wall)"] if "fused" in e else []
        head += ["compiled: compile s (wall / CPU)"] if "compiled" in e else []
        lines += [f"## {key} (D = {e[present[0]]['D']}, N = {e[present[0]]['N']})", "",
                  "| C | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
        for C in r["chains"]:
            c = str(C)
            npy = e["numpyro"][c]
            best_np = min(npy["per_chain"]["cpu_us"], npy["vmap"]["cpu_us"])
            best_np_wall = min(npy["per_chain"]["min_us"], npy["vmap"]["min_us"])
            cells = [c]
            for k in present:
                text = cell(e[k][c])
                if k == "autotune":
                    text += f", compile {e[k][c]['first_call']['wall_s']:.0f} s"
                cells.append(text)
            cells += [cell(npy["per_chain"]), cell(npy["vmap"])]
            if compiled:
                cells.append(f"{min(e[k][c]['cpu_us'] for k in compiled) / best_np:.2f}; "
                             f"{min(e[k][c]['min_us'] for k in compiled) / best_np_wall:.2f}")
            if "fused" in e:
                cells.append(f"{e['fused'][c]['cpu_us'] / best_np:.2f}; {e['fused'][c]['min_us'] / best_np_wall:.2f}")
            if "compiled" in e:
                first_call = e["compiled"][c]["first_call"]
                cells.append(f"{first_call['wall_s']:.1f} / {first_call['cpu_s']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        notes = []
        if "compiled_warm" in e:
            warm = e["compiled_warm"]
            notes.append(f"Compiled, first call in a new process with the inductor cache warm (C = {r['chains'][0]}): "
                         f"{warm['wall_s']:.1f} s wall, {warm['cpu_s']:.1f} s CPU"
                         + (f" (fell back: {warm['fallback']})" if warm.get("fallback") else "") + ".")
        notes.append(f"NumPyro jit compile of value_and_grad: {e['numpyro']['compile_s']:.2f} s.")
        for k in ("compiled", "fused"):
            if k in e:
                errs = ", ".join(f"C={C}: {e[k][str(C)]['max_rel_err']:.1e}" for C in r["chains"])
                notes.append(f"Max relative difference {k} vs eager: {errs}.")
        lines += ["", " ".join(notes), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind = sys.argv[2]
        if kind == "torch":
            res = _child_torch(sys.argv[3], sys.argv[4], sys.argv[5], [int(c) for c in sys.argv[6].split(",")],
                               int(sys.argv[7]))
        elif kind == "warm":
            res = _child_warm(sys.argv[3], sys.argv[4], int(sys.argv[5]))
        else:
            res = _child_numpyro(sys.argv[3], sys.argv[4], [int(c) for c in sys.argv[5].split(",")],
                                 int(sys.argv[6]))
        print(json.dumps(res))
    else:
        main()
