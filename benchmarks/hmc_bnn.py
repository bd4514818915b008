"""Protocol H1: BNN 10-50-1 (tanh) on scikit-learn's diabetes data, probnets against NumPyro NUTS, BlackJAX ChEES-HMC
and Pyro NUTS, like for like and each at its best configuration.

Model (identical for every sampler): N(0, 1) priors on all weights and biases, Gaussian likelihood with
noise scale sigma ~ LogNormal(-1, 1), x and y standardised with training statistics of the fixed 90/10
split (seed 0). Every sampler gets the same configuration grid (``NUTS_CONFIGS`` for the NUTS samplers,
``CHEES_CONFIGS`` for the ChEES samplers: chains, warm-up, draws), so each one's best configuration is chosen by
the same search: NumPyro NUTS (chains in parallel on forced host devices, target acceptance 0.8) and probnets NUTS
on ``NUTS_CONFIGS``; BlackJAX ChEES (its unit and its diagonal metric) and probnets ChEES on ``CHEES_CONFIGS``
(``benchmarks/peers.py``); Pyro NUTS once at 2 x (500 + 500).

Every sampler runs in a fresh child process; its wall time covers model set-up, compilation (JAX's JIT;
numba's kernel compilation into an empty kernel cache for probnets), warm-up and sampling, and excludes
interpreter start-up, imports and post-processing. All runs are summarised by the same code
(``peers.summarise``: ArviZ bulk ESS and rank R-hat of f(x_test), RMSE and mixture NLL in standardised units).

Targets (issue 14; a probnets row counts when its worst R-hat(f) <= 1.01 and its NLL is within 0.02 of NumPyro's):
NUTS like for like at 2 x (500 + 500): probnets ESS/s >= NumPyro's; ChEES at the same chains and draws: probnets
>= 1.5x BlackJAX's (its better metric); best probnets configuration >= 3x the best NumPyro configuration.

Usage:
    python benchmarks/hmc_bnn.py                # every sampler and configuration over 3 seeds, Pyro once
    python benchmarks/hmc_bnn.py --no-pyro --seeds 0
    python benchmarks/hmc_bnn.py --quick        # tiny settings, to check the script runs
Results: benchmarks/results/hmc_bnn.json and hmc_bnn.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import peers  # noqa: E402

#: The configuration grids every sampler of a kind is run on: (chains, warm-up, draws). The first is the like-for-like one.
NUTS_CONFIGS = [(2, 500, 500), (4, 500, 500)]
CHEES_CONFIGS = [(16, 300, 1000), (32, 300, 600)]
QUICK_NUTS, QUICK_CHEES = [(2, 20, 20)], [(4, 20, 20)]


def sampler_runs(quick: bool) -> list[tuple[str, str, tuple[int, int, int]]]:
    """Every (label, kind, configuration) of one seed: kinds ``numpyro``, ``probnets-nuts``, ``blackjax``,
    ``blackjax-diag``, ``probnets-chees``."""
    nuts, chees = (QUICK_NUTS, QUICK_CHEES) if quick else (NUTS_CONFIGS, CHEES_CONFIGS)
    runs = [("NumPyro NUTS", "numpyro", c) for c in nuts] + [("probnets NUTS", "probnets-nuts", c) for c in nuts]
    runs += [("BlackJAX ChEES-HMC", "blackjax", c) for c in chees]
    runs += [("BlackJAX ChEES-HMC (diagonal metric)", "blackjax-diag", c) for c in chees]
    return runs + [("probnets ChEES-HMC", "probnets-chees", c) for c in chees]


def run_sampler(kind: str, config: tuple[int, int, int], split, seed: int) -> dict:
    chains, warmup, draws = config
    if kind == "numpyro":
        return peers.run_numpyro_nuts(split, num_chains=chains, num_warmup=warmup, num_samples=draws, seed=seed)
    if kind.startswith("blackjax"):
        return peers.run_blackjax_chees(split, num_chains=chains, num_warmup=warmup, num_samples=draws, seed=seed,
                                        mass_matrix="diagonal" if kind.endswith("diag") else None)
    return run_probnets(kind.removeprefix("probnets-"), chains, warmup, draws, seed)


def run_probnets(method: str, num_chains: int, num_warmup: int, num_samples: int, seed: int,
                 options: dict | None = None, env: dict | None = None) -> dict:
    """One probnets run in a child process with an empty numba kernel cache (compilation included);
    ``options`` go to ``inference.sample``, ``env`` adds environment variables for the child."""
    with tempfile.TemporaryDirectory(prefix="h1_probnets_") as tmp:
        out = os.path.join(tmp, "out.npz")
        env = {**os.environ, "PROBNETS_KERNEL_DIR": os.path.join(tmp, "kernels"), "PYTHONPATH": str(HERE.parent),
               **(env or {})}
        cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", method, str(num_chains), str(num_warmup),
               str(num_samples), str(seed), out, json.dumps(options or {})]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"probnets worker failed:\n{proc.stderr[-3000:]}")
        with np.load(out, allow_pickle=False) as z:
            result = {k: z[k] for k in z.files if k != "meta"}
            result.update(json.loads(str(z["meta"])))
    return result


def _worker(method: str, num_chains: int, num_warmup: int, num_samples: int, seed: int, out: str,
            options: dict) -> None:
    import torch

    import inference
    import probnets
    from probnets import BNN

    split = probnets.datasets.diabetes(dtype=torch.float32)
    start = time.perf_counter()
    model = BNN(10, [50], activation="tanh")  # N(0, 1) priors, sigma ~ LogNormal(-1, 1): protocol H1
    post = inference.sample(model, (split.x_train, split.y_train), method=method, num_chains=num_chains,
                            num_warmup=num_warmup, num_samples=num_samples, seed=seed, progress=False,
                            print_summary=False, check_convergence=False, **options)
    wall = time.perf_counter() - start
    f_test = post.f_draws(model, split.x_test)[..., 0].double().numpy()
    sigma = post.params()["likelihood.log_noise_scale"].exp().double().numpy()
    stats = post.sample_stats
    meta = dict(
        peer="probnets", method=method, wall_time=wall, grad_evals=int(post.info["grad_evals"]),
        num_divergences=post.num_divergences, step_size=float(stats["step_size"].float().mean()),
        mean_steps_per_draw=float(stats["n_steps"].float().mean()),
        mean_accept_prob=float(stats["acceptance_rate"].float().mean()),
        settings=dict(num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples, seed=seed, options=options,
                      dtype="float32", torch_threads=torch.get_num_threads(),
                      fused_kernel=type(model.logdensity((split.x_train, split.y_train))).__name__),
        library_version=probnets.__version__,
    )
    np.savez(out, f_test=f_test, sigma=sigma, meta=np.array(json.dumps(meta)))


def _row(label: str, result: dict, split) -> dict:
    s = peers.summarise(result, split)
    settings = result.get("settings", {})
    return dict(
        sampler=label, seed=settings.get("seed"), chains=settings.get("num_chains"),
        warmup=settings.get("num_warmup"), draws=settings.get("num_samples"),
        wall_time=round(float(result["wall_time"]), 2), grad_evals=int(result["grad_evals"]),
        min_ess_f=round(s["min_ess_f"], 1), ess_per_s=round(s["min_ess_f"] / float(result["wall_time"]), 1),
        max_rhat_f=round(s["max_rhat_f"], 4), rhat_sigma=round(s["rhat_sigma"], 4),
        rmse=round(s["rmse"], 4), nll=round(s["nll"], 4), divergences=int(result["num_divergences"]),
        mean_steps=round(float(result["mean_steps_per_draw"]), 1),
    )


def _aggregate(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["sampler"], r["chains"], r["warmup"], r["draws"]), []).append(r)
    out = []
    for (sampler, chains, warmup, draws), rs in groups.items():
        out.append(dict(
            sampler=sampler, chains=chains, warmup=warmup, draws=draws, runs=len(rs),
            **{k: round(statistics.mean(r[k] for r in rs), 4 if k in ("max_rhat_f", "rhat_sigma", "nll", "rmse") else 1)
               for k in ("wall_time", "grad_evals", "min_ess_f", "ess_per_s", "max_rhat_f", "rhat_sigma", "rmse", "nll")},
            worst_rhat_f=max(r["max_rhat_f"] for r in rs), min_ess_per_s=min(r["ess_per_s"] for r in rs),
        ))
    return out


def _verdict(summary: list[dict]) -> list[dict]:
    """The issue's three targets on the per-configuration means over seeds."""
    numpyro = [s for s in summary if s["sampler"] == "NumPyro NUTS"]
    if not numpyro:
        return [{"target": "all", "pass": None, "note": "NumPyro was not run"}]
    nll = numpyro[0]["nll"]

    def ok(s):
        return s["worst_rhat_f"] <= 1.01 and abs(s["nll"] - nll) <= 0.02

    def find(sampler, config):
        return next((s for s in summary if s["sampler"] == sampler and (s["chains"], s["warmup"], s["draws"]) == config),
                    None)

    out = []
    like = tuple(numpyro[0][k] for k in ("chains", "warmup", "draws"))
    ours = find("probnets NUTS", like)
    if ours:
        ratio = ours["ess_per_s"] / numpyro[0]["ess_per_s"]
        out.append({"target": f"NUTS {like}: probnets ESS/s >= NumPyro's", "value": round(ratio, 2),
                    "pass": ok(ours) and ratio >= 1.0})
    for s in (s for s in summary if s["sampler"] == "probnets ChEES-HMC"):
        config = (s["chains"], s["warmup"], s["draws"])
        rivals = [r for r in (find("BlackJAX ChEES-HMC", config), find("BlackJAX ChEES-HMC (diagonal metric)", config))
                  if r]
        if rivals:
            ratio = s["ess_per_s"] / max(r["ess_per_s"] for r in rivals)
            out.append({"target": f"ChEES {config}: probnets >= 1.5x BlackJAX's ESS/s", "value": round(ratio, 2),
                        "pass": ok(s) and ratio >= 1.5})
    eligible = [s for s in summary if s["sampler"].startswith("probnets") and ok(s)]
    if eligible:
        best, peer = max(eligible, key=lambda s: s["ess_per_s"]), max(numpyro, key=lambda s: s["ess_per_s"])
        ratio = best["ess_per_s"] / peer["ess_per_s"]
        out.append({"target": "best probnets >= 3x best NumPyro ESS/s", "value": round(ratio, 2), "pass": ratio >= 3.0,
                    "best_probnets": f"{best['sampler']} {best['chains']} x ({best['warmup']} + {best['draws']})",
                    "best_numpyro": f"{peer['chains']} x ({peer['warmup']} + {peer['draws']})"})
    return out


def _markdown(rows: list[dict], summary: list[dict], verdict: dict, meta: dict) -> str:
    cols = ["sampler", "chains", "warmup", "draws", "runs", "wall_time", "grad_evals", "min_ess_f", "ess_per_s",
            "min_ess_per_s", "max_rhat_f", "worst_rhat_f", "rhat_sigma", "rmse", "nll"]
    lines = ["# Protocol H1: BNN 10-50-1 on diabetes, probnets vs NumPyro NUTS, BlackJAX ChEES and Pyro NUTS", "",
             f"Machine: {meta['machine']}; {meta['cpus']} CPUs; load average at start {meta['loadavg_start']}, "
             f"at end {meta['loadavg_end']}. Means over seeds; ESS = min bulk ESS of f(x_test) over the 45 test "
             "points (ArviZ); wall time includes compilation, warm-up and sampling; NLL and RMSE in standardised "
             "units.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(s.get(c, "")) for c in cols) + " |" for s in summary]
    lines += ["", "## Targets", "", "| target | value | pass |", "|---|---|---|"]
    lines += [f"| {v['target']} | {v.get('value', '')} | {v['pass']} |" for v in verdict]
    lines += ["", "## All runs", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds for NumPyro and probnets")
    parser.add_argument("--no-pyro", action="store_true", help="skip Pyro NUTS (slow: ~10+ minutes)")
    parser.add_argument("--quick", action="store_true", help="tiny settings to smoke-test the script")
    parser.add_argument("--out", default=str(HERE / "results"), help="directory for hmc_bnn.json/.md")
    args = parser.parse_args(argv)
    import probnets

    split = probnets.datasets.diabetes()
    seeds = [int(s) for s in args.seeds.split(",")]
    peer_kwargs = dict(num_warmup=20, num_samples=20) if args.quick else {}  # Pyro's
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                loadavg_start=os.getloadavg(), python=platform.python_version())
    rows = []
    for seed in seeds:
        for label, kind, config in sampler_runs(args.quick):
            rows.append(_row(label, run_sampler(kind, config, split, seed), split))
            print(rows[-1], flush=True)
    if not args.no_pyro:
        rows.append(_row("Pyro NUTS", peers.run_pyro_nuts(split, seed=seeds[0], **peer_kwargs), split))
        print(rows[-1], flush=True)
    meta["loadavg_end"] = os.getloadavg()
    summary = _aggregate(rows)
    verdict = _verdict(summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "hmc_bnn_quick" if args.quick else "hmc_bnn"
    (out / f"{stem}.json").write_text(json.dumps(dict(meta=meta, summary=summary, verdict=verdict, runs=rows), indent=2))
    (out / f"{stem}.md").write_text(_markdown(rows, summary, verdict, meta))
    print(_markdown(rows, summary, verdict, meta))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _worker(sys.argv[2], *map(int, sys.argv[3:7]), sys.argv[7], json.loads(sys.argv[8]))
    else:
        sys.exit(main())
