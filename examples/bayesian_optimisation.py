"""Bayesian optimisation of Branin with an HMC-sampled BNN surrogate against a GP, seeds side by side.

Each surrogate runs the same loop (Sobol initial design, qLogNEI, one point per iteration); the posterior
of the BNN is resampled with ChEES-HMC at every iteration, warm-started from the previous iteration's
draws. The script prints the final regret of each run and saves the regret curves.

Outputs in --out (default ``examples_output/``): ``bo_regret.png`` and ``bo_runs.json``.

Run:
    python examples/bayesian_optimisation.py           # 2 surrogates x 3 seeds x 15 iterations (~5 min)
    python examples/bayesian_optimisation.py --quick   # a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from probnets_app.regret_plot import plot_regret
from surrogates import run_bo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
    parser.add_argument("--out", default="examples_output")
    args = parser.parse_args()

    seeds, iterations = ((0,), 2) if args.quick else ((0, 1, 2), 15)
    hmc_options = ({"widths": (16,), "num_chains": 4, "num_warmup": 30, "num_samples": 8, "pretrain_steps": 30}
                   if args.quick else {})
    results = []
    for surrogate, options in (("gp", None), ("hmc-bnn", hmc_options)):
        for seed in seeds:
            result = run_bo("branin", surrogate, n_init=8, iterations=iterations, seed=seed,
                            surrogate_options=options, progress=not args.quick)
            results.append(result)
            print(f"{surrogate:8s} seed {seed}: best {result.best[-1]:.4f}, regret {result.regret[-1]:.4f}, "
                  f"mean fit {sum(result.fit_time) / len(result.fit_time):.2f} s/iteration")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bo_runs.json").write_text(json.dumps([r.to_dict() for r in results]))
    print(f"wrote {plot_regret(results, out / 'bo_regret.png')}")


if __name__ == "__main__":
    main()
