"""A Bayesian neural network as a scikit-learn regressor: ``probnets_app.estimators.BNNRegressor`` on the diabetes data.

``BNNRegressor`` standardises inputs and targets internally, samples the posterior of a one-hidden-layer
BNN with many-chain ChEES-HMC and predicts in original units, with the predictive standard deviation
(``return_std=True``) and central intervals (``predict_interval``). It works with scikit-learn tools
(``clone``, pipelines, ``cross_val_score``) like any regressor.

Outputs in --out: ``sklearn_predictions.csv`` (test targets, predicted mean, sd and 90% interval).

Run:
    python examples/sklearn_estimator.py            # ~1-2 minutes on 2 cores
    python examples/sklearn_estimator.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import train_test_split

from inference.diagnostics import ConvergenceWarning
from probnets_app.estimators import BNNRegressor


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples_output", help="output folder (default: examples_output/)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.1, random_state=0)
    settings = {"num_chains": 8, "num_warmup": 40, "num_samples": 20} if args.quick else {}
    reg = BNNRegressor(widths=(50,), method="chees", seed=args.seed, progress=not args.quick, **settings)
    print(reg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        reg.fit(X_train, y_train)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            print(f"ConvergenceWarning: {w.message}")
    print(f"Function-space diagnostics on training inputs: {reg.diagnostics_}")

    mean, std = reg.predict(X_test, return_std=True)
    lower, upper = reg.predict_interval(X_test, level=0.9)
    rmse = float(np.sqrt(np.mean((mean - y_test) ** 2)))
    nll = float(np.mean(0.5 * np.log(2 * np.pi * std**2) + 0.5 * ((y_test - mean) / std) ** 2))
    coverage = float(np.mean((y_test >= lower) & (y_test <= upper)))
    ridge = RidgeCV().fit(X_train, y_train)
    print(f"BNN:   R^2 {reg.score(X_test, y_test):.3f}  RMSE {rmse:.2f}  Gaussian-approx. NLL {nll:.3f}  "
          f"90% interval coverage {coverage:.2f}  mean predictive sd {std.mean():.1f}")
    ridge_rmse = float(np.sqrt(np.mean((ridge.predict(X_test) - y_test) ** 2)))
    print(f"Ridge: R^2 {ridge.score(X_test, y_test):.3f}  RMSE {ridge_rmse:.2f}")
    for i in range(3):
        print(f"  x_test[{i}]: y = {y_test[i]:.0f}, predicted {mean[i]:.1f} +- {std[i]:.1f} "
              f"(90% interval [{lower[i]:.1f}, {upper[i]:.1f}])")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sklearn_predictions.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["y", "mean", "sd", "lower_90", "upper_90"])
        writer.writerows(np.column_stack([y_test, mean, std, lower, upper]).round(4).tolist())
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
