"""The fit report of a deterministic-VI (moment-propagation) fit: the ``probnets fit --method mp-gelu`` report.

A moment posterior has no draws, so where the sampling report (:mod:`probnets_app.report.fit_report`) has
function-space R-hat/ESS and traces, this one has the training record (loss curve, skipped steps, wall time) and
the time of one predictive pass. Metrics and the prediction and calibration figures are the same.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from inference import metrics
from inference.moment_posterior import MomentPosterior
from probnets_app import plots
from probnets_app.report.fit_report import REPORT_FILE
from probnets_app.report.jsonable import jsonable
from probnets_app.report.rescale import rescaled_predictive


def moment_report(posterior: MomentPosterior, split, *, out_dir: str | os.PathLike, level: float = 0.9,
                  figures: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a moment posterior on the test part of a regression split, write ``report.json`` and figures.

    Returns:
        A JSON-serialisable dict with keys ``task`` (``"regression"``), ``model`` (``repr``,
        ``num_parameters``: the variational means), ``data``, ``training`` (method, settings, ``num_steps``,
        ``skipped_steps``, ``final_loss``, ``wall_time``, ``predict_time``), ``level``, ``metrics`` (``rmse``,
        ``nll``, ``crps``, ``coverage_<level>`` in original units), ``warnings``, ``figures`` (``predictions.png``,
        ``calibration.png``, ``loss.png``) and ``extra`` when given.
    """
    if not isinstance(posterior, MomentPosterior):
        raise TypeError(f"posterior must be a MomentPosterior, got {type(posterior).__name__}")
    metrics._check_level(level, "level")
    out_dir = Path(out_dir)
    dtype = posterior.network.dtype
    x_test, y_test = split.x_test.to(dtype), split.y_test.to(dtype)
    y_shift, y_scale = float(getattr(split, "y_mean", 0.0)), float(getattr(split, "y_std", 1.0))
    start = time.perf_counter()
    pred = posterior.predictive(x_test)
    predict_time = time.perf_counter() - start
    scores = metrics.evaluate(pred, y_test, level=level, y_scale=y_scale)
    scores["units"] = "original" if (y_shift, y_scale) != (0.0, 1.0) else "as given"
    info = posterior.info
    losses = info.get("losses", torch.zeros(0))
    finite = losses[torch.isfinite(losses)]
    training = {k: info[k] for k in ("method", "num_steps", "batch_size", "lr", "kl_weight", "prior_concentration",
                                     "prior_rate", "seed", "skipped_steps", "resumed_from", "wall_time") if k in info}
    training.update({"widths": list(posterior.network.widths), "dtype": str(dtype).removeprefix("torch."),
                     "final_loss": float(finite[-1]) if finite.numel() else None, "predict_time": predict_time})
    warnings = []
    if info.get("skipped_steps"):
        warnings.append(f"{info['skipped_steps']} of {info.get('num_steps')} steps had a non-finite loss or "
                        "gradient and were skipped")
    report: dict[str, Any] = {
        "task": "regression",
        "model": {"repr": f"MomentNetwork({posterior.network.method}, widths={list(posterior.network.widths)})",
                  "num_parameters": int(posterior.spec.dim)},
        "data": {"n_train": int(split.x_train.shape[0]) if hasattr(split, "x_train") else None,
                 "n_test": int(x_test.shape[0]), "n_features": int(x_test.shape[1]),
                 "target": getattr(split, "target_name", None), "y_mean": y_shift, "y_std": y_scale},
        "training": training,
        "level": level,
        "metrics": scores,
        "warnings": warnings,
        "figures": {},
    }
    if extra:
        report["extra"] = dict(extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    if figures:
        target = getattr(split, "target_name", None) or "y"
        shown = rescaled_predictive(pred, y_shift, y_scale)
        plots.plot_predictions(shown, y_shift + y_scale * y_test, out_dir / "predictions.png", level=level,
                               title=f"{target}: test set, {level:.0%} intervals (original units)")
        plots.plot_calibration(pred, y_test, out_dir / "calibration.png")
        plots.plot_losses(losses, out_dir / "loss.png",
                          title=f"{training.get('method', '')} loss (negative ELBO per datum)")
        report["figures"] = {"predictions": "predictions.png", "calibration": "calibration.png", "loss": "loss.png"}
    report = jsonable(report)
    with open(out_dir / REPORT_FILE, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, allow_nan=False)
        handle.write("\n")
    return report


def format_moment_report(report: dict[str, Any]) -> str:
    """A short text block: model, training, test metrics, warnings."""
    t, scores, data = report.get("training", {}), report.get("metrics", {}), report.get("data", {})
    level = report.get("level", 0.9)
    lines = [f"Model: {report.get('model', {}).get('repr', '?')}",
             f"Training: {t.get('method', '?')}, {t.get('num_steps', '?')} steps of batch {t.get('batch_size', '?')} "
             f"(lr {t.get('lr', '?')}, KL weight {t.get('kl_weight', '?')}, seed {t.get('seed', '?')}, "
             f"{t.get('dtype', '?')}); final loss {_fmt(t.get('final_loss'))}, skipped steps "
             f"{t.get('skipped_steps', 0)}, wall time {_fmt(t.get('wall_time'), '.1f')} s, one predictive pass "
             f"{_fmt(t.get('predict_time'), '.3g')} s",
             f"Test metrics ({scores.get('units', 'original')} units, n_test = {data.get('n_test')}):",
             f"  RMSE {_fmt(scores.get('rmse'))}   NLL {_fmt(scores.get('nll'))}   CRPS {_fmt(scores.get('crps'))}"
             f"   {level:.0%} interval coverage {_fmt(scores.get(f'coverage_{level:g}'))}"]
    warnings = report.get("warnings", [])
    lines.append("Warnings:" if warnings else "Warnings: none")
    lines.extend(f"  - {w}" for w in warnings)
    return "\n".join(lines)


def _fmt(value, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)
