"""A Pyro model through ``inference.from_pyro`` against NumPyro on the same model: Bayesian logistic regression.

Model: ``b ~ N(0, I_d)``, ``c ~ N(0, 1)``, ``y_i ~ Bernoulli(logits = x_i . b + c)`` on scikit-learn's breast
cancer data (569 x 30, inputs standardised), written once in Pyro and once in NumPyro. Samplers, each in a process
of its own with one thread (``OMP_NUM_THREADS=1``; XLA single-threaded), wall time including set-up and JIT
compilation, ``--chains`` chains of ``--warmup`` + ``--samples`` iterations, NUTS with target acceptance 0.8:

* ``probnets NUTS (plate)``: ``inference.sample(from_pyro(model), method="nuts")``, every chain in one plated
  run of the model (``posterior.info["batching"]``);
* ``probnets NUTS (plate, compiled)``: the same with ``compile=True`` (the plated log density traced into one
  ATen graph, Pyro's handlers gone, and compiled by inductor; compile time included);
* ``probnets NUTS (loop)``: the plated run with the chain-by-chain evaluation forced (the path of models that do not
  broadcast), to show what the vectorisation buys;
* ``NumPyro NUTS (vectorized)``: ``chain_method="vectorized"`` (all chains in one call, like for like) and
  ``NumPyro NUTS (sequential)``: chains one after the other (NumPyro's usual single-device setting).

Reported: wall time, the minimum bulk ESS over the 31 parameters, ESS/s, maximum R-hat, and the largest z-score of
a posterior mean against NumPyro's vectorized run (``|mean_a - mean_b| / sqrt(mcse_a^2 + mcse_b^2)``; a check
that both sample the same posterior). Target (issue "Fast for every model"; fixed before the first run): probnets
NUTS (plate) ESS/s at least NumPyro's best.

Usage::

    python benchmarks/pyro_logistic.py [--chains 4] [--warmup 1000] [--samples 1000] [--seed 0]
                                       [--out benchmarks/results]

Writes ``pyro_logistic.json`` and ``pyro_logistic.md`` into ``--out`` and prints the markdown.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

RUNNERS = ("probnets NUTS (plate, compiled)", "probnets NUTS (plate)", "probnets NUTS (loop)",
           "NumPyro NUTS (vectorized)", "NumPyro NUTS (sequential)")


def load_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return (x - x.mean(0)) / x.std(0), y.astype(np.float64)


def _probnets(x, y, cfg: dict, loop: bool, compile: bool) -> tuple[np.ndarray, dict]:
    import pyro
    import pyro.distributions as dist
    import torch

    import inference

    def model(x, y):
        b = pyro.sample("b", dist.Normal(torch.zeros(x.shape[1], dtype=x.dtype), 1.0).to_event(1))
        c = pyro.sample("c", dist.Normal(torch.tensor(0.0, dtype=x.dtype), 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Bernoulli(logits=(x * b).sum(-1) + c), obs=y)

    target = inference.from_pyro(model, torch.as_tensor(x), torch.as_tensor(y))
    if loop:
        target.batching, target._batched = "loop", None
    post = inference.sample(target, method="nuts", num_chains=cfg["chains"], num_warmup=cfg["warmup"],
                            num_samples=cfg["samples"], seed=cfg["seed"], progress=False, print_summary=False,
                            check_convergence=False, compile=compile)
    return post.samples.numpy(), {"batching": post.info.get("batching"), "divergences": post.num_divergences,
                                  "compile_seconds": post.info.get("compile_seconds")}


def _numpyro(x, y, cfg: dict, chain_method: str) -> tuple[np.ndarray, dict]:
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    jax.config.update("jax_enable_x64", True)

    def model(x, y):
        b = numpyro.sample("b", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
        c = numpyro.sample("c", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=x @ b + c), obs=y)

    mcmc = MCMC(NUTS(model, target_accept_prob=0.8), num_warmup=cfg["warmup"], num_samples=cfg["samples"],
                num_chains=cfg["chains"], chain_method=chain_method, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(cfg["seed"]), jnp.asarray(x), jnp.asarray(y), extra_fields=("diverging",))
    draws = mcmc.get_samples(group_by_chain=True)
    samples = np.concatenate([np.asarray(draws["b"]), np.asarray(draws["c"])[..., None]], -1)
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return samples, {"divergences": divergences, "numpyro": numpyro.__version__, "jax": jax.__version__}


def _worker(label: str, cfg_json: str, out: str) -> None:
    cfg = json.loads(cfg_json)
    x, y = load_data()
    start = time.perf_counter()
    if label.startswith("probnets"):
        samples, extra = _probnets(x, y, cfg, loop="loop" in label, compile="compiled" in label)
    else:
        samples, extra = _numpyro(x, y, cfg, "vectorized" if "vectorized" in label else "sequential")
    wall = time.perf_counter() - start
    np.save(out, samples)
    Path(out + ".json").write_text(json.dumps({"wall_time": wall, **extra}))


def run(label: str, cfg: dict) -> tuple[np.ndarray, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "draws.npy")
        done = subprocess.run([sys.executable, __file__, "_worker", label, json.dumps(cfg), out], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{label} failed: {done.stderr.strip()[-1500:]}")
        return np.load(out), json.loads(Path(out + ".json").read_text())


def summarise(label: str, samples: np.ndarray, info: dict, reference: np.ndarray | None) -> dict:
    import torch

    from inference import diagnostics

    draws = torch.as_tensor(samples)
    ess = diagnostics.ess_bulk(draws).tolist()
    rhat = diagnostics.split_rhat(draws).tolist()
    row = dict(label=label, wall_time=info["wall_time"], min_ess_bulk=min(ess),
               ess_per_s=min(ess) / info["wall_time"], max_rhat=max(rhat), divergences=info["divergences"],
               batching=info.get("batching"), compile_seconds=info.get("compile_seconds"))
    if reference is not None:
        ref = torch.as_tensor(reference)
        z = ((draws.mean((0, 1)) - ref.mean((0, 1))).abs()
             / (diagnostics.mcse_mean(draws) ** 2 + diagnostics.mcse_mean(ref) ** 2).sqrt())
        row["max_mean_z_vs_numpyro"] = float(z.max())
    return row


def markdown(meta: dict, rows: list[dict], check: dict) -> str:
    cols = ["label", "wall_time", "compile_seconds", "min_ess_bulk", "ess_per_s", "max_rhat", "divergences",
            "batching", "max_mean_z_vs_numpyro"]
    fmt = lambda v: "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["# Bayesian logistic regression (breast cancer, 31 parameters): Pyro model via from_pyro vs NumPyro", "",
             f"Machine: {meta['machine']}; {meta['cpus']} CPUs; one thread per sampler process; load average at start "
             f"{meta['loadavg_start']}, at end {meta['loadavg_end']}. NUTS, {meta['chains']} chains x "
             f"({meta['warmup']} warm-up + {meta['samples']}), seed {meta['seed']}; wall time includes set-up and "
             "compilation; ESS: minimum bulk ESS over the parameters.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    lines += ["", "## Target", "", "| target | value | result |", "|---|---|---|",
              f"| {check['target']} | {check['value']} | {'PASS' if check['passed'] else 'FAIL'} |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    cfg = dict(chains=args.chains, warmup=args.warmup, samples=args.samples, seed=args.seed)
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                loadavg_start=os.getloadavg(), python=platform.python_version(), **cfg)
    results = {label: run(label, cfg) for label in RUNNERS}
    reference = results["NumPyro NUTS (vectorized)"][0]
    rows = [summarise(label, samples, info, reference) for label, (samples, info) in results.items()]
    meta["loadavg_end"] = os.getloadavg()
    by = {r["label"]: r for r in rows}
    best_numpyro = max(by["NumPyro NUTS (vectorized)"]["ess_per_s"], by["NumPyro NUTS (sequential)"]["ess_per_s"])
    best = max(("probnets NUTS (plate)", "probnets NUTS (plate, compiled)"), key=lambda k: by[k]["ess_per_s"])
    ours = by[best]["ess_per_s"]
    check = dict(target="probnets NUTS's best (plated, eager or compiled) ESS/s >= NumPyro NUTS's best",
                 value=f"{best}: {ours:.3g} vs {best_numpyro:.3g} ({ours / best_numpyro:.2f}x)",
                 passed=ours >= best_numpyro)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pyro_logistic.json").write_text(json.dumps(dict(meta=meta, runs=rows, target=check), indent=2))
    text = markdown(meta, rows, check)
    (out / "pyro_logistic.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _worker(*sys.argv[2:5])
    else:
        sys.exit(main())
