"""Why structured SGHMC misses H2's ESS/s target: cost per step, IAT per step and NLL of structured SGHMC's
variants on H2's model and data (``benchmarks/sgmcmc.py``: digits, MLP 64-128-10, batch 64, 50 epochs of which
20 burn-in, one chain, seed 0, one thread).

Every configuration keeps EVERY step after burn-in (``thin=1``) so that the integrated autocorrelation time of the
test predictive can be measured per step: ``iat_steps`` = median over test images of draws / bulk ESS of
``p(y_true | x, theta_s)`` over every second step (times 2). The H2 figures are computed from one draw per epoch
as in H2: ``ess_epoch`` (median bulk ESS), ``iat_epochs`` = draws / ``ess_epoch``, NLL and accuracy of the mixture
predictive. Cost: wall and process CPU seconds per epoch (CPU time is what a loaded machine distorts least);
``ess_per_cpu_s`` = ``ess_epoch`` / CPU seconds of the run.

Usage:
    python benchmarks/sgmcmc_structured.py                     # every configuration, seed 0
    python benchmarks/sgmcmc_structured.py --epochs 6 --burnin 1 --only "SGHMC 1e-2 (H2)" --out /tmp/s  # smoke
Results: benchmarks/results/sgmcmc_structured.json and .md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (label, method, options); ``num_groups=9610`` puts every scalar of the MLP in its own group; ``init="map"``
#: starts the chain (and the structured history) at the MAP of H2's plain-torch SGD run (50 epochs, as Alexos et
#: al. start from a MAP), so that the run measures stationary mixing rather than the drift away from the start.
CONFIGS = [
    ("SGHMC 1e-2 (H2)", "sghmc", {"step_size": 1e-2}),
    ("structured default: permuted K=4, history 1000 (H2)", "structured-sghmc", {"step_size": 1e-2}),
    ("structured layer groups (K=2)", "structured-sghmc", {"step_size": 1e-2, "groups": "layer"}),
    ("structured permuted K=2", "structured-sghmc", {"step_size": 1e-2, "num_groups": 2}),
    ("structured neuron groups", "structured-sghmc", {"step_size": 1e-2, "groups": "neuron"}),
    ("structured dropout p=0.5 L=1", "structured-sghmc", {"step_size": 1e-2, "live_probability": 0.5,
                                                          "num_passes": 1}),
    ("structured dropout p=0.5 L=4", "structured-sghmc", {"step_size": 1e-2, "live_probability": 0.5,
                                                          "num_passes": 4}),
    ("structured history 100", "structured-sghmc", {"step_size": 1e-2, "history_length": 100}),
    ("paper: every scalar a group, p=0.1 L=16", "structured-sghmc", {"step_size": 1e-2, "num_groups": 9610,
                                                                      "live_probability": 0.1, "num_passes": 16}),
    ("every scalar a group, p=0.1 L=4", "structured-sghmc", {"step_size": 1e-2, "num_groups": 9610,
                                                             "live_probability": 0.1, "num_passes": 4}),
    ("every scalar a group, p=0.5 L=1", "structured-sghmc", {"step_size": 1e-2, "num_groups": 9610,
                                                             "live_probability": 0.5, "num_passes": 1}),
    ("SGHMC 3e-2", "sghmc", {"step_size": 3e-2}),
    ("structured default, step 3e-2", "structured-sghmc", {"step_size": 3e-2}),
    ("structured layer groups, step 3e-2", "structured-sghmc", {"step_size": 3e-2, "groups": "layer"}),
    ("SGHMC 1e-2, MAP start", "sghmc", {"step_size": 1e-2, "init": "map"}),
    ("structured default, MAP start", "structured-sghmc", {"step_size": 1e-2, "init": "map"}),
    ("structured layer groups, MAP start", "structured-sghmc", {"step_size": 1e-2, "groups": "layer", "init": "map"}),
    ("structured dropout p=0.5 L=1, MAP start", "structured-sghmc", {"step_size": 1e-2, "live_probability": 0.5,
                                                                     "num_passes": 1, "init": "map"}),
]
COLUMNS = ("label", "num_groups", "wall_per_epoch", "cpu_per_epoch", "nll", "accuracy", "ess_epoch", "iat_epochs",
           "iat_steps", "ess_per_cpu_s")


def _h2():
    spec = importlib.util.spec_from_file_location("benchmarks_sgmcmc_h2", HERE / "sgmcmc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(label: str, method: str, options: dict, seed: int, epochs: int, burnin: int) -> dict:
    """One configuration (in the calling process): sample with ``thin=1`` and measure (module docstring)."""
    import torch

    import inference
    from inference import diagnostics, metrics

    h2 = _h2()
    x, y, x_test, y_test = h2.digits_split(torch.float32)
    model = h2._model()
    steps = -(-x.shape[0] // h2.BATCH_SIZE)
    options = dict(options)
    if options.pop("init", None) == "map":
        sgd = next(c for c in h2.CONFIGS if c["label"] == "torch SGD")
        options["init"] = h2._run_torch(sgd, seed, 50, 0, x, y)[0].reshape(1, -1)
    cpu = time.process_time()
    post = inference.sample(model, (x, y), method=method, batch_size=h2.BATCH_SIZE, num_chains=1,
                            num_warmup=burnin * steps, num_samples=(epochs - burnin) * steps, thin=1, seed=seed,
                            progress=False, print_summary=False, check_convergence=False, **options)
    cpu = time.process_time() - cpu
    samples, wall = post.samples[0], post.info["wall_time"]

    def p_true(theta):
        f = model.predict_f(theta, x_test)
        return torch.softmax(f.double(), -1).gather(-1, y_test[None, :, None].expand(f.shape[0], -1, 1))[..., 0]

    per_epoch = samples[steps - 1::steps]
    ess_epoch = float(diagnostics.ess_bulk(p_true(per_epoch)[None]).nanmedian())
    every_second = p_true(samples[::2])
    iat_steps = 2 * float((every_second.shape[0] / diagnostics.ess_bulk(every_second[None])).nanmedian())
    pred = model.predictive(per_epoch, x_test)
    return dict(label=label, method=method, options={k: v for k, v in options.items() if k != "init"}, seed=seed,
                epochs=epochs, burnin=burnin,
                num_groups=post.info.get("num_groups", 1), wall_per_epoch=wall / epochs, cpu_per_epoch=cpu / epochs,
                nll=metrics.nll(pred, y_test), accuracy=metrics.accuracy(pred, y_test), ess_epoch=ess_epoch,
                iat_epochs=per_epoch.shape[0] / ess_epoch, iat_steps=iat_steps, ess_per_cpu_s=ess_epoch / cpu)


def run(config, seed: int, epochs: int, burnin: int) -> dict:
    """One configuration in a child process with one thread."""
    with tempfile.TemporaryDirectory(prefix="h2s_") as tmp:
        out = os.path.join(tmp, "out.json")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", json.dumps(config), str(seed), str(epochs),
               str(burnin), out]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{config[0]} failed:\n{proc.stderr[-3000:]}")
        return json.loads(Path(out).read_text())


def _fmt(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict], loadavg: tuple) -> str:
    lines = ["# Structured SGHMC on H2 (digits MLP): cost, IAT per step and NLL per configuration", "",
             f"One chain, seed {rows[0]['seed']}, {rows[0]['epochs']} epochs ({rows[0]['burnin']} burn-in), batch 64, "
             f"one thread; load average during the runs {loadavg} (wall times are inflated by other load; CPU "
             "times less so). ess_epoch/iat_epochs: H2's ESS (one draw per epoch, 30 draws); iat_steps: IAT in "
             "steps from every second step (23 steps per epoch); ess_per_cpu_s: ess_epoch per CPU second.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--burnin", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="semicolon-separated labels (default: all)")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    configs = [c for c in CONFIGS if args.only is None or c[0] in args.only.split(";")]
    start = os.getloadavg()
    rows = []
    for config in configs:
        rows.append(run(config, args.seed, args.epochs, args.burnin))
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loadavg = (start, os.getloadavg())
    (out / "sgmcmc_structured.json").write_text(json.dumps(dict(loadavg=loadavg, runs=rows), indent=2))
    text = markdown(rows, loadavg)
    (out / "sgmcmc_structured.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        label, method, options = json.loads(sys.argv[2])
        result = measure(label, method, options, *map(int, sys.argv[3:6]))
        Path(sys.argv[6]).write_text(json.dumps(result))
    else:
        sys.exit(main())
