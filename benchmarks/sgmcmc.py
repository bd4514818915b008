"""Protocol H2: minibatch SG-MCMC on scikit-learn's digits, probnets vs the ``posteriors`` library and plain torch.

Model (identical for every run): MLP 64-128-10 with ReLU, N(0, 1) priors on all weights and biases, categorical
likelihood; pixels scaled to [0, 1]; fixed 80/20 split (seed 0: 1437 training, 360 test images). Every run
starts from the same weights (``BNN.init_theta`` with the run's seed), takes minibatches of 64 for 50 epochs
and keeps one draw per epoch after 20 burn-in epochs (30 draws; the cyclical sampler keeps only the draws in
its cycles' sampling phase), 1 chain per run, 3 seeds.

Configurations:
  * probnets SGLD, pSGLD, SGHMC, cSGHMC and structured SGHMC (``structured-sghmc``, when registered),
    through ``inference.sample(..., batch_size=64)``.
  * posteriors (``posteriors.sgmcmc``) SGLD and SGHMC on the same model written as a ``torch.func`` function of
    a parameter dict. Like-for-like: the full-data log posterior estimate ``log p + (N / B) sum log p(y | x)``,
    temperature 1, the step of probnets SGLD (SGLD) and, for SGHMC, ``lr = sqrt(h)`` with friction
    ``alpha = 0.05 / lr`` (5% momentum decay per step, probnets SGHMC's default), non-inplace updates (the
    library default). Best: the library's recommended set-up (a per-datum log posterior ``log p / N`` with
    temperature ``1 / N`` and ``lr`` scaled by ``N``: the same dynamics) with in-place updates, and SGHMC's
    momenta starting at rest (its default N(0, 1) momenta are N times too hot at temperature ``1 / N``).
  * plain torch: an ``nn.Sequential`` trained by a hand-written loop, SGD (the MAP; its predictive is the
    final network, ESS not applicable) and SGLD (same step and noise as probnets SGLD).

Reported per configuration (means over seeds): wall time per epoch (the sampling loop only: minibatching,
gradients, updates and storing draws; not the test-set evaluation) and the process's CPU time per epoch (for
probnets it includes ``inference.sample``'s set-up; it is what a loaded machine distorts least), test
accuracy, NLL and ECE (15 bins) of the mixture predictive over the draws, and ESS/s of the test predictive:
the median over test images of the bulk ESS of ``p(y_true | x, theta_s)`` over the draws, divided by the wall
time of the run. Every configuration runs in its own process with ``OMP_NUM_THREADS`` (default 1) threads.

Targets of the issue (printed with pass/fail): probnets SGLD and SGHMC time per epoch at most 1.15x the plain-torch
SGLD loop's and at least 4x faster than posteriors' (like-for-like); probnets NLL and ECE at least as good as
posteriors' on the same budget; structured SGHMC's ESS/s at least 1.5x plain SGHMC's at equal or better NLL.

Step sizes (``CONFIGS``; SGLD ``h = 5e-5``, pSGLD ``1e-3``, SGHMC ``1e-2``, cSGHMC ``2e-2``) were set from the
samplers' defaults and a 4-epoch smoke run, not tuned on the full protocol.

Usage:
    python benchmarks/sgmcmc.py                       # full protocol (3 seeds x 50 epochs)
    python benchmarks/sgmcmc.py --epochs 4 --burnin 2 --seeds 0 --out /tmp/h2   # smoke size
Results: benchmarks/results/sgmcmc.json and sgmcmc.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

BATCH_SIZE = 64
WIDTH = 128
PRIOR_SCALE = 1.0
#: Step sizes in probnets' convention (``inference.sgmcmc.langevin``); posteriors and plain torch use the same.
SGLD_STEP = 5e-5
CONFIGS = [
    dict(label="probnets SGLD", runner="probnets", method="sgld", options=dict(step_size=SGLD_STEP)),
    dict(label="probnets pSGLD", runner="probnets", method="psgld", options=dict(step_size=1e-3)),
    dict(label="probnets SGHMC", runner="probnets", method="sghmc", options=dict(step_size=1e-2)),
    dict(label="probnets cSGHMC", runner="probnets", method="csghmc", options=dict(step_size=2e-2), cyclical=True),
    dict(label="probnets structured SGHMC", runner="probnets", method="structured-sghmc", options={}),
    dict(label="posteriors SGLD (like-for-like)", runner="posteriors", method="sgld", options=dict(best=False)),
    dict(label="posteriors SGLD (best)", runner="posteriors", method="sgld", options=dict(best=True)),
    dict(label="posteriors SGHMC (like-for-like)", runner="posteriors", method="sghmc", options=dict(best=False)),
    dict(label="posteriors SGHMC (best)", runner="posteriors", method="sghmc", options=dict(best=True)),
    dict(label="torch SGD", runner="torch", method="sgd", options={}),
    dict(label="torch SGLD", runner="torch", method="sgld", options={}),
]


def digits_split(dtype):
    """Digits scaled to [0, 1], 80/20 split with seed 0: ``(x_train, y_train, x_test, y_test)``."""
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.data / 16.0, dtype=dtype)
    y = torch.as_tensor(data.target, dtype=torch.long)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    test = order[: round(0.2 * x.shape[0])]
    train = order[round(0.2 * x.shape[0]):]
    return x[train], y[train], x[test], y[test]


def _model():
    import pyro.distributions as dist

    from probnets import BNN, Categorical

    return BNN(64, [WIDTH], 10, activation="relu", prior=dist.Normal(0.0, PRIOR_SCALE), likelihood=Categorical(10))


# ----------------------------------------------------------------------------------------------------------------
# Runners (one per process): each returns the kept draws (S x D, probnets' flat layout) and the loop's wall time.

def _run_probnets(config, seed, epochs, burnin, x, y):
    import inference

    model = _model()
    steps = -(-x.shape[0] // BATCH_SIZE)
    options = dict(config["options"])
    cpu = time.process_time()
    post = inference.sample(model, (x, y), method=config["method"], batch_size=BATCH_SIZE, num_chains=1,
                            num_warmup=burnin * steps, num_samples=(epochs - burnin) * steps, thin=steps, seed=seed,
                            progress=False, print_summary=False, check_convergence=False,
                            **({"cycle_length": _cycle_epochs(epochs, burnin) * steps, "exploration": 0.5}
                               if config.get("cyclical") else {}),
                            **options)
    return post.samples[0], post.info["wall_time"], time.process_time() - cpu, post.num_divergences


def _cycle_epochs(epochs: int, burnin: int) -> int:
    """Epochs per cycle of the cyclical sampler: the largest divisor of ``epochs`` up to 10 (and up to the
    sampling epochs), so that the run ends with a whole cycle (10 in the protocol: 2 burn-in, 3 sampling cycles)."""
    return max(d for d in range(1, 11) if epochs % d == 0 and d <= max(1, epochs - burnin))


def _functional(model, x_dtype):
    """The MLP and its log posterior as functions of a parameter dict (probnets' layout and names)."""
    import torch

    def forward(params, x):
        h = torch.relu(x @ params["layers.0.weight"].T + params["layers.0.bias"])
        return h @ params["layers.1.weight"].T + params["layers.1.bias"]

    def log_prior(params):
        return sum(-0.5 * (p / PRIOR_SCALE).square().sum() for p in params.values()) \
            - 0.5 * math.log(2 * math.pi * PRIOR_SCALE**2) * sum(p.numel() for p in params.values())

    def log_lik(params, batch):
        xb, yb = batch
        return torch.log_softmax(forward(params, xb), -1).gather(-1, yb[:, None]).sum()

    return forward, log_prior, log_lik


def _batches(x, y, seed):
    """Shuffled minibatches of ``BATCH_SIZE``, epoch after epoch (the peers' own data loop)."""
    import torch

    generator = torch.Generator().manual_seed(seed + 0x5EED)
    while True:
        order = torch.randperm(x.shape[0], generator=generator)
        for rows in order.split(BATCH_SIZE):
            yield x[rows], y[rows]


def _run_posteriors(config, seed, epochs, burnin, x, y):
    import posteriors
    import torch

    model = _model()
    torch.manual_seed(seed)  # posteriors draws its noise from torch's global generator
    theta = model.init_theta(1, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)[0]
    params = {k: v.clone() for k, v in model.spec.unflatten(theta).items()}
    _, log_prior, log_lik = _functional(model, x.dtype)
    n, best = x.shape[0], config["options"]["best"]
    scale = 1.0 / n if best else 1.0  # best: per-datum log posterior with temperature 1 / N

    def log_posterior(p, batch):
        value = (log_prior(p) + n / batch[0].shape[0] * log_lik(p, batch)) * scale
        return value, torch.tensor([])

    if config["method"] == "sgld":
        transform = posteriors.sgmcmc.sgld.build(log_posterior, lr=SGLD_STEP / scale, temperature=scale)
    else:
        lr = math.sqrt(SGLD_STEP)
        transform = posteriors.sgmcmc.sghmc.build(log_posterior, lr=lr / math.sqrt(scale), alpha=0.05 / lr
                                                  * math.sqrt(scale), temperature=scale)
    # With the per-datum scaling, posteriors' SGHMC with lr' = lr / sqrt(s) and alpha' = alpha sqrt(s) has the
    # same position dynamics as lr, alpha on the full-data scale (momenta rescaled by sqrt(s)).
    # posteriors' SGHMC draws initial momenta from N(0, 1), the stationary law at temperature 1 only: with the
    # per-datum scaling (temperature 1 / N) they are N times too hot, so the best set-up starts at rest.
    state = transform.init(params, momenta=0.0) if config["method"] == "sghmc" and best else transform.init(params)
    steps = -(-n // BATCH_SIZE)
    draws = []
    batches = _batches(x, y, seed)
    start, cpu = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        for _ in range(steps):
            if best:
                state, _ = transform.update(state, next(batches), inplace=True)
            else:
                state, _ = transform.update(state, next(batches))
        if epoch >= burnin:
            draws.append(model.spec.flatten({k: v.detach().clone() for k, v in state.params.items()}))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    samples = torch.stack(draws)
    return samples, wall, cpu, int((~torch.isfinite(samples)).any(-1).sum())


def _run_torch(config, seed, epochs, burnin, x, y):
    import torch
    from torch import nn

    model = _model()
    theta = model.init_theta(1, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)[0]
    named = model.spec.unflatten(theta)
    net = nn.Sequential(nn.Linear(64, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10)).to(x.dtype)
    with torch.no_grad():
        for (name, p), key in zip(net.named_parameters(), named):
            p.copy_(named[key])
    params = list(net.parameters())
    n, h, noise = x.shape[0], SGLD_STEP, config["method"] == "sgld"
    generator = torch.Generator().manual_seed(seed)
    steps = -(-n // BATCH_SIZE)
    draws = []
    batches = _batches(x, y, seed)
    start, cpu = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        for _ in range(steps):
            xb, yb = next(batches)
            log_lik = -nn.functional.cross_entropy(net(xb), yb, reduction="sum")
            log_post = n / xb.shape[0] * log_lik - 0.5 * sum(p.square().sum() for p in params) / PRIOR_SCALE**2
            grads = torch.autograd.grad(log_post, params)
            with torch.no_grad():
                torch._foreach_add_(params, grads, alpha=h)
                if noise:
                    kicks = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
                    torch._foreach_add_(params, kicks, alpha=math.sqrt(2 * h))
        if epoch >= burnin and (noise or epoch == epochs - 1):
            draws.append(torch.cat([p.detach().reshape(-1) for p in params]))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return torch.stack(draws), wall, cpu, 0


RUNNERS = {"probnets": _run_probnets, "posteriors": _run_posteriors, "torch": _run_torch}


def _worker(config_json: str, seed: int, epochs: int, burnin: int, out: str) -> None:
    import torch

    from inference import diagnostics, metrics

    config = json.loads(config_json)
    x, y, x_test, y_test = digits_split(torch.float32)
    samples, wall, cpu, divergences = RUNNERS[config["runner"]](config, seed, epochs, burnin, x, y)
    model = _model()
    samples = samples.reshape(-1, model.spec.dim)
    finite = torch.isfinite(samples).all(-1)
    result = dict(label=config["label"], seed=seed, epochs=epochs, burnin=burnin, draws=int(samples.shape[0]),
                  wall_time=wall, time_per_epoch=wall / epochs, cpu_per_epoch=cpu / epochs, divergences=divergences,
                  threads=torch.get_num_threads())
    if not bool(finite.all()):
        result.update(accuracy=None, nll=None, ece=None, ess=None, ess_per_s=None, note="non-finite draws")
    else:
        pred = model.predictive(samples, x_test)
        f = model.predict_f(samples, x_test)  # S x n x 10
        p_true = torch.softmax(f.double(), -1).gather(-1, y_test[None, :, None].expand(f.shape[0], -1, 1))[..., 0]
        ess = (float(diagnostics.ess_bulk(p_true[None]).nanmedian()) if samples.shape[0] >= 4 else None)
        result.update(accuracy=metrics.accuracy(pred, y_test), nll=metrics.nll(pred, y_test),
                      ece=metrics.ece(pred, y_test), ess=ess, ess_per_s=None if ess is None else ess / wall)
    Path(out).write_text(json.dumps(result))


def run(config: dict, seed: int, epochs: int, burnin: int, threads: int) -> dict:
    """One configuration and seed in a child process with ``OMP_NUM_THREADS=threads``."""
    with tempfile.TemporaryDirectory(prefix="h2_") as tmp:
        out = os.path.join(tmp, "out.json")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", json.dumps(config), str(seed), str(epochs),
               str(burnin), out]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{config['label']} (seed {seed}) failed:\n{proc.stderr[-3000:]}")
        return json.loads(Path(out).read_text())


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


METRICS = ("time_per_epoch", "cpu_per_epoch", "accuracy", "nll", "ece", "ess", "ess_per_s")


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
    return [dict(label=label, runs=len(rs), draws=rs[0]["draws"],
                 **{k: _mean(r[k] for r in rs) for k in METRICS},
                 divergences=sum(r["divergences"] for r in rs))
            for label, rs in groups.items()]


def targets(summary: list[dict]) -> list[dict]:
    """The issue's targets, each with the values compared and pass/fail (``None`` when a row is missing)."""
    by = {s["label"]: s for s in summary}

    def check(name, rows, test):
        if any(r not in by or any(by[r][k] is None for k in ("time_per_epoch", "nll", "ece")) for r in rows):
            return dict(target=name, passed=None, note="a configuration is missing")
        return dict(target=name, **test(*(by[r] for r in rows)))

    out = []
    for sampler in ("SGLD", "SGHMC"):
        ours, peer = f"probnets {sampler}", f"posteriors {sampler} (like-for-like)"
        out.append(check(f"{ours} time/epoch <= 1.15x torch SGLD", [ours, "torch SGLD"], lambda a, b: dict(
            ratio=round(a["time_per_epoch"] / b["time_per_epoch"], 3),
            passed=a["time_per_epoch"] <= 1.15 * b["time_per_epoch"])))
        out.append(check(f"{ours} >= 4x faster than posteriors", [ours, peer], lambda a, b: dict(
            speedup=round(b["time_per_epoch"] / a["time_per_epoch"], 2),
            passed=b["time_per_epoch"] >= 4 * a["time_per_epoch"])))
        out.append(check(f"{ours} NLL and ECE <= posteriors'", [ours, peer], lambda a, b: dict(
            nll=(round(a["nll"], 4), round(b["nll"], 4)), ece=(round(a["ece"], 4), round(b["ece"], 4)),
            passed=a["nll"] <= b["nll"] and a["ece"] <= b["ece"])))
    structured, plain = "probnets structured SGHMC", "probnets SGHMC"
    if structured in by and by[structured]["ess_per_s"] is not None and by[plain]["ess_per_s"]:
        a, b = by[structured], by[plain]
        out.append(dict(target="structured SGHMC ESS/s >= 1.5x SGHMC at equal or better NLL",
                        ratio=round(a["ess_per_s"] / b["ess_per_s"], 2), nll=(round(a["nll"], 4), round(b["nll"], 4)),
                        passed=a["ess_per_s"] >= 1.5 * b["ess_per_s"] and a["nll"] <= b["nll"]))
    else:
        out.append(dict(target="structured SGHMC ESS/s >= 1.5x SGHMC at equal or better NLL", passed=None,
                        note="structured-sghmc is not registered (or has no ESS)"))
    return out


def _fmt(value, digits=4):
    return "" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def markdown(meta: dict, summary: list[dict], checks: list[dict], rows: list[dict]) -> str:
    cols = ["label", "runs", "draws", *METRICS, "divergences"]
    lines = ["# Protocol H2: SG-MCMC on digits (MLP 64-128-10 ReLU), probnets vs posteriors and plain torch", "",
             f"Machine: {meta['machine']}; {meta['cpus']} CPUs; {meta['threads']} thread(s) per run; load average at "
             f"start {meta['loadavg_start']}, at end {meta['loadavg_end']}. {meta['epochs']} epochs, {meta['burnin']} "
             f"burn-in, batch {BATCH_SIZE}, seeds {meta['seeds']}; means over seeds. time_per_epoch in seconds (the "
             "sampling loop; cpu_per_epoch: the process's CPU time, less sensitive to other load); ESS = median over "
             "test images of the bulk ESS of p(y_true | x); ESS/s over the run's wall time.", ""]
    lines += [f"Notes: {note}" for note in meta["notes"]]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(s.get(c)) for c in cols) + " |" for s in summary]
    lines += ["", "## Targets", "", "| target | values | result |", "|---|---|---|"]
    for c in checks:
        values = {k: v for k, v in c.items() if k not in ("target", "passed")}
        result = "n/a" if c["passed"] is None else "PASS" if c["passed"] else "FAIL"
        lines.append(f"| {c['target']} | {json.dumps(values)} | {result} |")
    lines += ["", "## All runs", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(_fmt(v) for v in r.values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--burnin", type=int, default=20, help="burn-in epochs (default 20)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every run (default 1)")
    parser.add_argument("--only", help="comma-separated labels to run (default: all)")
    parser.add_argument("--out", default=str(HERE / "results"), help="directory for sgmcmc.json/.md")
    args = parser.parse_args(argv)
    if not 0 <= args.burnin < args.epochs:
        parser.error("--burnin must be in [0, --epochs)")
    from inference import registry

    seeds = [int(s) for s in args.seeds.split(",")]
    notes = []
    configs = [c for c in CONFIGS if args.only is None or c["label"] in args.only.split(",")]
    if "structured-sghmc" not in registry.SAMPLERS:
        configs = [c for c in configs if c["method"] != "structured-sghmc"]
        notes.append("structured-sghmc is not registered in this checkout: its row is skipped")
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), threads=args.threads,
                epochs=args.epochs, burnin=args.burnin, seeds=seeds, loadavg_start=os.getloadavg(),
                python=platform.python_version(), notes=notes)
    rows = []
    for seed in seeds:
        for config in configs:
            try:
                rows.append(run(config, seed, args.epochs, args.burnin, args.threads))
            except RuntimeError as exc:  # one failed configuration must not lose the others' results
                notes.append(f"{config['label']} (seed {seed}) failed: {str(exc).strip().splitlines()[-1]}")
                print(notes[-1], flush=True)
                continue
            print(json.dumps(rows[-1]), flush=True)
    meta["loadavg_end"] = os.getloadavg()
    summary = summarise(rows)
    checks = targets(summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sgmcmc.json").write_text(json.dumps(dict(meta=meta, summary=summary, targets=checks, runs=rows), indent=2))
    text = markdown(meta, summary, checks, rows)
    (out / "sgmcmc.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _worker(sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6])
    else:
        sys.exit(main())
