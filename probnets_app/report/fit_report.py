"""The fit report shared by the ``probnets fit`` command, the demo and the examples.

:func:`fit_report` evaluates a sampled posterior on the test part of a split, checks convergence where it
matters for prediction (in function space, on ``f(x_test)``), writes ``report.json`` and diagnostic
figures into a folder and returns the report as a plain dict; :func:`~probnets_app.report.text.format_report`
renders that dict as a short text block.

Example:
    >>> split = probnets.datasets.diabetes()
    >>> post = inference.sample(model, (split.x_train, split.y_train), method="chees")
    >>> report = fit_report(model, post, split, out_dir="out")
    >>> print(format_report(report))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from inference import diagnostics, metrics
from inference.function_space import NOTE_PARAMETER_SPACE
from inference.posterior import SamplePosterior
from probnets.model import ProbModel
from probnets_app.report.figures import write_figures
from probnets_app.report.function_space import function_space_diagnostics
from probnets_app.report.jsonable import jsonable
from probnets_app.report.parameter_summary import summary_draws

REPORT_FILE = "report.json"


def fit_report(model: ProbModel, posterior: SamplePosterior, split, *, out_dir: str | os.PathLike,
               level: float = 0.9, figures: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a posterior on a test set, write ``report.json`` and figures, return the report.

    Regression (``split`` a :class:`~probnets.datasets.RegressionSplit` or anything with ``x_test``,
    ``y_test``, ``y_mean``, ``y_std``): RMSE, NLL of the mixture, CRPS and coverage of the central
    ``level`` interval on the test set, all in the original units of y (``y = y_mean + y_std * y_std_units``).
    Classification (``x_test`` and integer ``y_test``): accuracy, NLL, ECE and Brier score.

    Sampler diagnostics are computed in function space: over the draws of ``f(x_test)`` (class
    probabilities for classifiers), the worst split R-hat and the lowest bulk/tail ESS over test points,
    with ESS per second of wall time (and separately for the learned noise scale). Parameter-space
    warnings (``posterior.warnings()``) are reported too, but for BNN weights they are expected (see
    ``notes``).

    Files written to ``out_dir`` (created if needed): ``report.json`` and, with ``figures``,
    ``predictions.png`` (regression: predicted vs observed with central intervals, original units),
    ``calibration.png`` (coverage curve or reliability diagram) and ``trace.png`` (the parameters of the
    summary).

    Args:
        model: The sampled model.
        posterior: Its posterior draws.
        split: The data (test part used for evaluation; training size read when present).
        out_dir: Folder for the report and figures.
        level: Probability of the central predictive interval whose coverage is reported.
        figures: Whether to write the PNG figures.
        extra: Additional JSON-serialisable entries stored under ``"extra"`` (e.g. the data source).

    Returns:
        A JSON-serialisable dict (non-finite numbers become ``None``) with keys

        - ``task``: ``"regression"`` or ``"classification"``;
        - ``model``: ``{"repr", "num_parameters", "likelihood"}``;
        - ``data``: ``{"n_train", "n_test", "n_features", "target", "y_mean", "y_std"}``;
        - ``sampler``: ``{"method", "num_chains", "num_warmup", "num_samples", "seed", "dtype", ...}``
          (the run's settings from ``posterior.info``);
        - ``metrics``: regression ``{"rmse", "nll", "crps", "coverage_0.9", "units"}``, classification
          ``{"accuracy", "nll", "ece", "brier"}``;
        - ``diagnostics``: ``{"quantity", "max_rhat", "min_ess_bulk", "min_ess_tail", "num_divergences",
          "divergence_rate", "wall_time", "grad_evals", "ess_per_second", "num_draws"}``, plus
          ``noise_scale_rhat``/``noise_scale_ess_bulk``/``noise_scale_ess_tail`` for a learned Gaussian noise;
        - ``summary``: ArviZ-like rows (``columns``, ``rows``) of the noise scale (original units) and a
          few network weights;
        - ``warnings``: parameter-space convergence warnings (``posterior.warnings()`` less those already
          among the function-space warnings);
        - ``function_space_warnings``: divergences, R-hat > 1.01 or total ESS < 400 of ``f(x_test)`` and of
          the Gaussian noise scale (which is identifiable and part of every predictive interval);
        - ``notes``: remarks on reading the diagnostics;
        - ``figures``: file names of the figures written (relative to ``out_dir``);
        - ``level``; ``extra`` when given.
    """
    if not isinstance(posterior, SamplePosterior):
        raise TypeError(f"posterior must be a SamplePosterior, got {type(posterior).__name__}")
    metrics._check_level(level, "level")
    out_dir = Path(out_dir)
    dtype = posterior.samples.dtype
    x_test = split.x_test.to(dtype)
    classification = model.likelihood.task == "classification"
    y_test = split.y_test if classification else split.y_test.to(dtype)
    y_shift = 0.0 if classification else float(getattr(split, "y_mean", 0.0))
    y_scale = 1.0 if classification else float(getattr(split, "y_std", 1.0))

    pred = posterior.predictive(model, x_test)
    if classification:
        scores = metrics.evaluate(pred, y_test)
    else:
        scores = metrics.evaluate(pred, y_test, level=level, y_scale=y_scale)
        scores["nll_se"] = metrics.nll_standard_error(pred, y_test)
        scores["units"] = "original" if (y_shift, y_scale) != (0.0, 1.0) else "as given"
    diag, f_warnings = function_space_diagnostics(model, posterior, x_test, y_scale)
    names, draws = summary_draws(model, posterior, y_scale)
    table = diagnostics.summary(dict(zip(names, draws.unbind(-1))))
    report: dict[str, Any] = {
        "task": "classification" if classification else "regression",
        "model": {"repr": repr(model), "num_parameters": int(model.spec.dim),
                  "likelihood": type(model.likelihood).__name__},
        "data": {
            "n_train": int(split.x_train.shape[0]) if hasattr(split, "x_train") else None,
            "n_test": int(x_test.shape[0]),
            "n_features": int(x_test.shape[1]) if x_test.dim() > 1 else 1,
            "target": getattr(split, "target_name", None),
            "y_mean": None if classification else y_shift,
            "y_std": None if classification else y_scale,
        },
        "sampler": _settings(posterior),
        "level": level,
        "metrics": scores,
        "diagnostics": diag,
        "summary": {"columns": list(table.columns), "rows": table.rows,
                    "num_chains": table.num_chains, "num_draws": table.num_draws},
        "warnings": [w for w in posterior.warnings() if w not in f_warnings],
        "function_space_warnings": f_warnings,
        "notes": [NOTE_PARAMETER_SPACE] if model.spec.dim - model.likelihood.spec.dim > 1 else [],
        "figures": {},
    }
    if extra:
        report["extra"] = dict(extra)

    out_dir.mkdir(parents=True, exist_ok=True)
    if figures:
        report["figures"] = write_figures(pred, y_test, draws, names, out_dir, level=level, y_shift=y_shift,
                                          y_scale=y_scale, target=getattr(split, "target_name", None))
    report = jsonable(report)
    with open(out_dir / REPORT_FILE, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, allow_nan=False)
        handle.write("\n")
    return report


_SETTING_KEYS = ("method", "num_chains", "num_warmup", "num_samples", "seed", "dtype", "thin", "dim", "max_tree_depth",
                 "num_steps", "trajectory_length", "dense_mass", "target_accept", "temperature")


def _settings(posterior: SamplePosterior) -> dict[str, Any]:
    info = posterior.info
    out = {k: info[k] for k in _SETTING_KEYS if k in info}
    out.update({k: v for k, v in info.items() if k not in out and k not in ("wall_time", "grad_evals")
                and isinstance(v, (int, float, str, bool, type(None)))})
    return out
