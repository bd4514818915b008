"""BO benchmark: every surrogate kind on Branin, Hartmann-6, Ackley-10 and a high-dimensional non-stationary
problem (a draw from a random tanh network), several seeds, in one run.

Reports final log10 regret (or best value where the optimum is unknown), mean fit and acquisition time per
iteration, and saves regret curves (one PNG per problem), JSON and a markdown table to
``benchmarks/results/bo.{json,md}`` and ``benchmarks/results/bo_<problem>.png``.

A second section times one HMC-BNN BO iteration (fit + acquisition) at 25, 50 and 100 observations on
Hartmann-6, for the target "an HMC-BNN iteration takes at most 10 s on 2 cores at up to 100 observations".

Usage:
    python benchmarks/bo.py                      # full: 5 seeds, study iteration counts (long)
    python benchmarks/bo.py --seeds 0,1 --iterations 10 --surrogates gp,ibnn,hmc-bnn
    python benchmarks/bo.py --quick              # tiny, to check the script runs
    # the variational surrogates (issue "Variational engines"), committed as bo_vi.md with their own log,
    # results/bo_vi_runs.jsonl.gz (unzip it into --out as bo_runs.jsonl to re-summarise without rerunning)
    python benchmarks/bo.py --surrogates mfvi-bnn,mp-gelu-bnn,gelu-mp-bnn --skip-timing --report bo_vi
    python benchmarks/bo.py --problems bnn-draw --seeds 0-19 --surrogates gp,ibnn --report bo_bnn_draw
    # the study's BnnDraw budget (400-D, 100 initial points, q = 10, 50 iterations): minutes per GP run, tens of
    # minutes per I-BNN run (its 400-D NNGP kernel in qLogNEI dominates)
    python benchmarks/bo.py --problems bnn-draw --dim 400 --n-init 100 --q 10 --iterations 50 --surrogates gp,ibnn

Finished runs are logged to ``<out>/bo_runs.jsonl`` and the run in progress checkpoints every iteration: rerunning
the same command after an interruption continues where it stopped, and a run over a subset of problems (e.g. two
processes side by side with ``OMP_NUM_THREADS=1``) can be summarised afterwards by a run over all of them.
The log behind the committed reports is ``results/bo_runs.jsonl.gz``: unzip it into ``--out`` to re-summarise
or extend them without rerunning.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from botorch.optim import optimize_acqf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from surrogates import KINDS, fit_surrogate, get_problem, run_bo  # noqa: E402
from probnets_app.regret_plot import plot_regret  # noqa: E402
from surrogates.bo import BOResult, make_acquisition  # noqa: E402

#: (problem, n_init, q, iterations, dim) following the BNN-surrogate study (q reduced to 1-4 for CPU time).
PROBLEMS = [("branin", 10, 1, 20, None), ("hartmann6", 10, 2, 20, None), ("ackley10", 10, 2, 20, None),
            ("bnn-draw", 20, 2, 15, 50)]


def bo_section(args, stem: str, report: str) -> list[dict]:
    """Every (problem, surrogate, seed) run; each finished run is appended to ``<stem>_runs.jsonl`` and a run in
    progress checkpoints every iteration, so a killed benchmark continues where it stopped when rerun with the
    same settings (runs logged with other settings are run again)."""
    out = Path(args.out)
    log = out / f"{stem}_runs.jsonl"
    logged = _logged_runs(log)
    rows, results = [], {}
    for name, n_init, q, iterations, dim in PROBLEMS:
        if name not in args.problems:
            continue
        problem = get_problem(name, dim=args.dim or dim, seed=0)
        iterations, n_init, q = args.iterations or iterations, args.n_init or n_init, args.q or q
        for surrogate in args.surrogates:
            kind, options = _kind_and_options(surrogate, args.quick, args.options)
            for seed in args.seeds:
                settings = json.loads(json.dumps(dict(n_init=n_init, q=q, iterations=iterations, options=options)))
                entry = logged.get((problem.name, surrogate, seed))
                if entry is None or entry["settings"] != settings:
                    checkpoint = out / "checkpoints" / f"{problem.name}_{surrogate}_{seed}.pt"
                    start = time.perf_counter()
                    result = run_bo(problem, kind, q=q, n_init=n_init, iterations=iterations, seed=seed,
                                    progress=False, surrogate_options=options, checkpoint=checkpoint)
                    result.surrogate = surrogate
                    entry = dict(result=result.to_dict(), settings=settings, wall_time=time.perf_counter() - start)
                    with log.open("a") as f:
                        f.write(json.dumps(entry) + "\n")
                    checkpoint.unlink(missing_ok=True)
                result = BOResult(**{k: torch.tensor(v, dtype=torch.float64) if k in ("X", "Y") else v
                                     for k, v in entry["result"].items()})
                results.setdefault(problem.name, []).append(result)
                rows.append(dict(
                    problem=problem.name, surrogate=surrogate, seed=seed, evaluations=int(result.X.shape[0]),
                    best=result.best[-1],
                    log10_regret=None if result.regret is None else math.log10(max(result.regret[-1], 1e-12)),
                    fit_time=statistics.mean(result.fit_time) if result.fit_time else 0.0,
                    acq_time=statistics.mean(result.acq_time) if result.acq_time else 0.0,
                    wall_time=entry["wall_time"], curve=result.regret if result.regret is not None else result.best))
                print({k: v for k, v in rows[-1].items() if k != "curve"}, flush=True)
    for name, runs in results.items():
        plot_regret(runs, out / f"{report}_{name}.png", title=f"{name}: median and range over seeds")
    return rows


def _logged_runs(log: Path) -> dict:
    if not log.exists():
        return {}
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {(e["result"]["problem"], e["result"]["surrogate"], e["result"]["seed"]): e for e in entries}


def hmc_iteration_section(args) -> list[dict]:
    """Fit + acquisition time of one HMC-BNN BO iteration on Hartmann-6 at growing data sizes."""
    problem = get_problem("hartmann6")
    rows = []
    for n in (25, 50, 100) if not args.quick else (10,):
        g = torch.Generator().manual_seed(n)
        X = problem.bounds[0] + torch.rand(n, problem.dim, generator=g, dtype=torch.float64) * (
            problem.bounds[1] - problem.bounds[0])
        Y = problem(X)
        _, options = _kind_and_options("hmc-bnn", args.quick)
        for phase, warm in (("cold start (MAP pre-training)", None), ("warm start (previous draws)", "warm")):
            warm_start = None
            if warm:
                warm_start = fit_surrogate(X, Y, "hmc-bnn", bounds=problem.bounds, seed=1, **options).warm_start
            with torch.random.fork_rng():
                torch.manual_seed(0)
                start = time.perf_counter()
                model = fit_surrogate(X, Y, "hmc-bnn", bounds=problem.bounds, seed=0, warm_start=warm_start,
                                      **options)
                fit_done = time.perf_counter()
                acquisition = make_acquisition("qlognei", model, X, problem)
                optimize_acqf(acquisition, problem.bounds, q=1, num_restarts=4, raw_samples=64)
                done = time.perf_counter()
            rows.append(dict(n=n, phase=phase, fit_time=fit_done - start, acq_time=done - fit_done,
                             iteration_time=done - start))
            print(rows[-1], flush=True)
    return rows


#: Variants of a kind run side by side with it: label -> (kind, options).
VARIANTS = {"gp-dsp": ("gp", {"prior": "dimension-scaled"}), "ibnn-fitted": ("ibnn", {"fit_variances": True}),
            "relu-mp-bnn": ("mp-gelu-bnn", {"activation": "relu"}),
            "gelu-mp-bnn": ("mp-gelu-bnn", {"activation": "exact-gelu"})}


def _kind_and_options(surrogate: str, quick: bool, overrides: dict | None = None) -> tuple[str, dict]:
    """The kind a surrogate label (a kind or a ``VARIANTS`` label) runs and its fit options."""
    kind, options = VARIANTS.get(surrogate, (surrogate, {}))
    if overrides and surrogate in overrides:
        return kind, overrides[surrogate]
    if quick:
        options = {**options, **{"hmc-bnn": {"widths": (16,), "num_chains": 4, "num_warmup": 30, "num_samples": 8,
                                             "pretrain_steps": 30},
                                 "ensemble": {"widths": (16,), "num_members": 3, "steps": 50},
                                 "dkl": {"widths": (16, 8), "steps": 30},
                                 "mfvi-bnn": {"widths": (16,), "num_steps": 30, "num_draws": 8},
                                 "mp-gelu-bnn": {"widths": (16,), "num_steps": 30}}.get(kind, {})}
    return kind, options


#: Fully stochastic BNN surrogates, for the study's direction "HMC is the strongest of them".
STOCHASTIC_BNNS = ("hmc-bnn", "sghmc-bnn")
#: Infinite-width and BNN surrogates, for "one of them beats the GP on the high-dimensional non-stationary problem".
NETWORK_SURROGATES = ("ibnn", "ibnn-fitted", "student-t", "hmc-bnn", "sghmc-bnn", "ensemble", "mfvi-bnn",
                      "mp-gelu-bnn", "relu-mp-bnn", "gelu-mp-bnn")
#: The GPs those are compared with: the study's (BoTorch's former defaults) and BoTorch's current defaults.
GPS = ("gp", "gp-dsp")


def _directions(bo_rows: list[dict]) -> list[str]:
    """The study's directions, checked on the median final score over seeds (seeds share the initial design,
    so per-seed wins are paired)."""
    score: dict[str, dict[str, dict[int, float]]] = {}
    for r in bo_rows:
        value = -r["log10_regret"] if r["log10_regret"] is not None else r["best"]   # higher is better
        score.setdefault(r["problem"], {}).setdefault(r["surrogate"], {})[r["seed"]] = value
    lines = ["", "## The study's directions (higher score is better: minus log10 regret, or best value)", ""]

    def compare(problem, a, b):
        sa, sb = score[problem][a], score[problem][b]
        seeds = sorted(set(sa) & set(sb))
        wins = sum(sa[s] > sb[s] for s in seeds)
        ma, mb = statistics.median(sa.values()), statistics.median(sb.values())
        text = f"{a} {ma:.3f} vs {b} {mb:.3f} (median), {a} better on {wins}/{len(seeds)} seeds"
        if len(seeds) > 1:
            diff = [sa[s] - sb[s] for s in seeds]
            text += (f"; mean paired difference {statistics.mean(diff):+.3f} "
                     f"(SE {statistics.stdev(diff) / math.sqrt(len(diff)):.3f})")
        return ma > mb, text

    for problem, kinds in score.items():
        present = [k for k in STOCHASTIC_BNNS if k in kinds]
        if "hmc-bnn" in present and len(present) > 1:
            for other in present[1:]:
                holds, text = compare(problem, "hmc-bnn", other)
                lines.append(f"- {problem}: HMC strongest fully stochastic BNN: {'holds' if holds else 'fails'}; {text}")
        rivals = [k for k in NETWORK_SURROGATES if k in kinds]
        if problem.startswith("bnn-draw") and rivals:
            best = max(rivals, key=lambda k: statistics.median(score[problem][k].values()))
            for gp in (g for g in GPS if g in kinds):
                holds, text = compare(problem, best, gp)
                lines.append(f"- {problem}: an infinite-width or BNN surrogate beats {gp}: "
                             f"{'holds' if holds else 'fails'}; best of them {text}")
    return lines


def _markdown(bo_rows: list[dict], hmc_rows: list[dict], meta: dict) -> str:
    lines = ["# BO benchmark", "", f"Machine: {meta['cpus']} CPUs; torch {meta['torch']}; seeds {meta['seeds']}; "
             f"iterations override {meta['iterations']}; surrogate options {meta['options']}; load average at "
             f"start {meta['loadavg_start']}.",
             "", "## Final log10 regret (median over seeds; best value where the optimum is unknown)", "",
             "| problem | surrogate | runs | evaluations | median final | worst final | fit s/iter | acq s/iter |",
             "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in bo_rows:
        groups.setdefault((r["problem"], r["surrogate"]), []).append(r)
    for (problem, surrogate), rs in groups.items():
        key = "log10_regret" if rs[0]["log10_regret"] is not None else "best"
        values = [r[key] for r in rs]
        worst = max(values) if key == "log10_regret" else min(values)
        lines.append(f"| {problem} | {surrogate} | {len(rs)} | {rs[0]['evaluations']} | "
                     f"{statistics.median(values):.3f} ({key}) | {worst:.3f} | "
                     f"{statistics.mean(r['fit_time'] for r in rs):.2f} | {statistics.mean(r['acq_time'] for r in rs):.2f} |")
    lines += _directions(bo_rows)
    if not hmc_rows:
        return "\n".join(lines) + "\n"
    lines += ["", "## One HMC-BNN iteration on Hartmann-6 (target: <= 10 s at up to 100 observations)", "",
              "| observations | start | fit s | acquisition s | iteration s |", "|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['phase']} | {r['fit_time']:.2f} | {r['acq_time']:.2f} | {r['iteration_time']:.2f} |"
              for r in hmc_rows]
    return "\n".join(lines) + "\n"


def _seed_range(part: str) -> range:
    """``"3"`` -> 3; ``"5-9"`` -> 5..9."""
    first, _, last = part.partition("-")
    return range(int(first), int(last or first) + 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4", help="comma-separated seeds or ranges, e.g. 0-4,7")
    parser.add_argument("--surrogates", default=",".join(KINDS),
                        help=f"comma-separated subset of {list(KINDS)} and the variants {list(VARIANTS)}")
    parser.add_argument("--iterations", type=int, help="override every problem's iteration count")
    parser.add_argument("--n-init", type=int, help="override every problem's initial design size")
    parser.add_argument("--q", type=int, help="override every problem's batch size")
    parser.add_argument("--dim", type=int, help="dimension of the problems that have one (bnn-draw)")
    parser.add_argument("--quick", action="store_true", help="tiny settings to smoke-test the script")
    parser.add_argument("--options", type=json.loads, default=None,
                        help='per-surrogate fit options as JSON, e.g. \'{"ensemble": {"steps": 300}}\'')
    parser.add_argument("--problems", default=",".join(p[0] for p in PROBLEMS), help="comma-separated subset")
    parser.add_argument("--skip-bo", action="store_true", help="only time HMC-BNN iterations")
    parser.add_argument("--skip-timing", action="store_true", help="skip the HMC-BNN iteration timing")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--report", help="name of the report files (default bo); runs are logged to bo_runs.jsonl")
    args = parser.parse_args(argv)
    args.seeds = [seed for part in args.seeds.split(",") for seed in _seed_range(part)]
    args.surrogates = args.surrogates.split(",")
    args.problems = args.problems.split(",")
    unknown = [s for s in args.surrogates if s not in KINDS and s not in VARIANTS]
    if unknown:
        parser.error(f"unknown surrogates {unknown}; choose from {list(KINDS) + list(VARIANTS)}")
    if args.quick:
        args.seeds, args.iterations = args.seeds[:1], args.iterations or 1
    Path(args.out).mkdir(parents=True, exist_ok=True)
    meta = dict(cpus=os.cpu_count(), torch=torch.__version__, seeds=args.seeds, surrogates=args.surrogates,
                iterations=args.iterations, options=args.options, loadavg_start=os.getloadavg())
    stem = "bo_quick" if args.quick else ("bo_timing" if args.skip_bo else "bo")
    hmc_rows = [] if args.skip_timing else hmc_iteration_section(args)
    report = args.report or stem
    bo_rows = [] if args.skip_bo else bo_section(args, stem, report)
    (Path(args.out) / f"{report}.json").write_text(json.dumps(dict(meta=meta, hmc_iteration=hmc_rows, runs=bo_rows),
                                                            indent=1))
    markdown = _markdown(bo_rows, hmc_rows, meta)
    (Path(args.out) / f"{report}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
