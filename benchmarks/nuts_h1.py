"""Protocol H1 like for like: probnets NUTS vs NumPyro NUTS, both 2 chains x (500 warm-up + 500 draws).

The model, data, timing and summaries are those of ``hmc_bnn.py`` (BNN 10-50-1 tanh on diabetes; every
sampler in a fresh child process; wall time includes model set-up, compilation of the model's kernel into
an empty cache, warm-up and sampling; ArviZ min bulk ESS of f(x_test)). probnets runs NUTS with its default
compiled transition (``inference.mcmc.nuts_compiled``, loaded from numba's cache: it is compiled once per
machine and dtype, not per model; ``--cold`` compiles everything in the timed run) and, with
``--torch-kernel``, also with the torch kernel (``compiled=False``). NumPyro runs its 2 chains in parallel
on 2 host devices; probnets runs single-threaded (``OMP_NUM_THREADS=1``: one core).

Pass rule (fixed before the runs): per seed, the ratio probnets / NumPyro of ESS/s measured in the same
invocation; the target of issue 14 is met when the mean ratio is >= 1 with max R-hat(f) <= 1.01 and
|NLL - NLL_NumPyro| <= 0.02 for probnets.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/nuts_h1.py                  # seeds 0,1,2
    OMP_NUM_THREADS=1 python benchmarks/nuts_h1.py --seeds 0 --torch-kernel --cold
Results: benchmarks/results/nuts_h1.json and nuts_h1.md (``--out`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import hmc_bnn  # noqa: E402
import peers  # noqa: E402

CHAINS, WARMUP, DRAWS = 2, 500, 500


def _row(label: str, result: dict, split, load_before: float) -> dict:
    row = hmc_bnn._row(label, result, split)
    steps = row["mean_steps"] * CHAINS * DRAWS  # sampling-phase integration steps, all chains
    row.update(us_per_grad=round(1e6 * float(result["wall_time"]) / int(result["grad_evals"]), 1),
               sampling_steps=int(round(steps)), load_before=round(load_before, 2),
               load_after=round(os.getloadavg()[0], 2))
    return row


def _markdown(rows: list[dict], summary: list[dict], ratios: list[dict], verdict: dict, meta: dict) -> str:
    lines = ["# Protocol H1 like for like: probnets NUTS vs NumPyro NUTS (2 chains x (500 + 500))", "",
             f"Machine: {meta['machine']}; {meta['cpus']} CPUs; load average (1 min) at start {meta['load_start']},"
             f" at end {meta['load_end']}; compiled transition cache: {meta['cache']}. NumPyro: 2 chains in "
             "parallel on 2 host devices; probnets: one thread. ESS = min bulk ESS of f(x_test) (ArviZ); wall time "
             "includes compilation, warm-up and sampling; us_per_grad = wall time / gradient evaluations (all "
             "chains, warm-up included).", "",
             "| sampler | runs | wall_time | grad_evals | us_per_grad | min_ess_f | ess_per_s | worst_rhat_f | nll |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {s['sampler']} | {s['runs']} | {s['wall_time']} | {s['grad_evals']} | {s['us_per_grad']} | "
              f"{s['min_ess_f']} | {s['ess_per_s']} | {s['worst_rhat_f']} | {s['nll']} |" for s in summary]
    lines += ["", "Ratios to NumPyro in the same invocation (ESS/s):", "",
              "| seed | sampler | ratio |", "|---|---|---|"]
    lines += [f"| {r['seed']} | {r['sampler']} | {r['ratio']} |" for r in ratios]
    lines += ["", f"**Verdict:** {json.dumps(verdict)}", "", "## All runs", "",
              "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--torch-kernel", action="store_true", help="also run probnets NUTS with compiled=False")
    parser.add_argument("--cold", action="store_true",
                        help="compile the NUTS transition in the timed run (empty NUMBA_CACHE_DIR)")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    import probnets

    split = probnets.datasets.diabetes()
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                load_start=round(os.getloadavg()[0], 2), python=platform.python_version(),
                omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                cache="cold (empty NUMBA_CACHE_DIR per run)" if args.cold else "warm (numba cache)")
    variants = [("probnets NUTS", {})] + ([("probnets NUTS, torch kernel", {"compiled": False})]
                                         if args.torch_kernel else [])
    rows, ratios = [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        load = os.getloadavg()[0]
        numpyro = _row("NumPyro NUTS", peers.run_numpyro_nuts(split, seed=seed, count_warmup=True), split, load)
        rows.append(numpyro)
        print(numpyro, flush=True)
        for label, options in variants:
            with tempfile.TemporaryDirectory(prefix="nuts_h1_numba_") as cache:
                env = {"NUMBA_CACHE_DIR": cache} if args.cold else {}
                load = os.getloadavg()[0]
                row = _row(label, hmc_bnn.run_probnets("nuts", CHAINS, WARMUP, DRAWS, seed, options, env), split,
                           load)
            rows.append(row)
            ratios.append(dict(seed=seed, sampler=label, ratio=round(row["ess_per_s"] / numpyro["ess_per_s"], 2)))
            print(row, ratios[-1], flush=True)
    meta["load_end"] = round(os.getloadavg()[0], 2)
    summary = []
    for label in ["NumPyro NUTS"] + [v[0] for v in variants]:
        rs = [r for r in rows if r["sampler"] == label]
        summary.append(dict(sampler=label, runs=len(rs), worst_rhat_f=max(r["max_rhat_f"] for r in rs),
                            **{k: round(statistics.mean(r[k] for r in rs), 4 if k == "nll" else 1)
                               for k in ("wall_time", "grad_evals", "us_per_grad", "min_ess_f", "ess_per_s", "nll")}))
    numpyro_nll = summary[0]["nll"]
    main_ratios = [r["ratio"] for r in ratios if r["sampler"] == "probnets NUTS"]
    ours = summary[1]
    verdict = dict(target="probnets NUTS ESS/s >= NumPyro NUTS ESS/s (mean of same-invocation ratios), "
                          "R-hat(f) <= 1.01, |NLL - NLL_NumPyro| <= 0.02",
                   mean_ratio=round(statistics.mean(main_ratios), 2),
                   target_met=statistics.mean(main_ratios) >= 1 and ours["worst_rhat_f"] <= 1.01
                   and abs(ours["nll"] - numpyro_nll) <= 0.02)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nuts_h1.json").write_text(json.dumps(dict(meta=meta, summary=summary, ratios=ratios, verdict=verdict,
                                                      runs=rows), indent=2))
    text = _markdown(rows, summary, ratios, verdict, meta)
    (out / "nuts_h1.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
