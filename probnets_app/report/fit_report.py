"""The fit report shared by the ``probnets`` CLI, the demo and the examples.

:func:`fit_report` evaluates a sampled posterior on the test part of a split, checks convergence where it
matters for prediction (in function space, on ``f(x_test)``), writes ``report.json`` and diagnostic
figures into a folder and returns the report as a plain dict; :func:`format_report` renders that dict as
a short text block.

Example:
    >>> split = probnets.datasets.diabetes()
    >>> post = inference.sample(model, (split.x_train, split.y_train), method="chees")
    >>> report = fit_report(model, post, split, out_dir="out")
    >>> print(format_report(report))
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from inference import diagnostics, metrics
from inference.posterior import SamplePosterior
from probnets_app import plots
from probnets.likelihoods import Gaussian
from probnets.model import ProbModel
from probnets.predictive import Predictive

__all__ = ["REPORT_FILE", "fit_report", "format_report", "rescaled_predictive"]

REPORT_FILE = "report.json"
#: Function-space ESS below this total (Vehtari et al. 2021: 100 per chain for 4 chains) is reported.
MIN_TOTAL_ESS = 400
NOISE_NAME = "noise_scale"
_NUM_WEIGHTS_SHOWN = 4
_NOTE_PARAMETER_SPACE = ("parameter-space diagnostics of network weights are expected to look poor: weights "
                         "are not identifiable (permutation and sign symmetries), so chains in different but "
                         "equivalent modes disagree on them; judge mixing by the function-space diagnostics")


def rescaled_predictive(pred: Predictive, shift: float, scale: float) -> Predictive:
    """The predictive of ``shift + scale * y`` for a Gaussian-likelihood predictive of ``y``.

    Exact for a Gaussian likelihood: every mixture component ``N(f, sigma^2)`` becomes
    ``N(shift + scale f, (scale sigma)^2)``. Used to plot and report standardised fits in original units.

    Args:
        pred: Regression predictive with a :class:`~probnets.likelihoods.Gaussian` likelihood.
        shift, scale: The affine map back to original units (``scale > 0``).

    Raises:
        NotImplementedError: For other likelihoods.
    """
    lik = pred.likelihood
    if not isinstance(lik, Gaussian):
        raise NotImplementedError(f"rescaling is exact for Gaussian likelihoods only, got {type(lik).__name__}")
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
        raise ValueError(f"need a finite shift and a positive finite scale, got {shift!r} and {scale!r}")
    f = shift + scale * pred.f
    if lik.learned:
        phi = {Gaussian.PARAM: pred.phi[Gaussian.PARAM] + math.log(scale)}
        return Predictive(f, lik, phi, pred.log_weights)
    return Predictive(f, Gaussian(noise_scale=lik.noise_scale * scale), {}, pred.log_weights)


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
        - ``warnings``: parameter-space convergence warnings (``posterior.warnings()``);
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
    x_test, y_test = split.x_test, split.y_test
    dtype = posterior.samples.dtype
    x_test = x_test.to(dtype)
    classification = model.likelihood.task == "classification"
    y_shift = 0.0 if classification else float(getattr(split, "y_mean", 0.0))
    y_scale = 1.0 if classification else float(getattr(split, "y_std", 1.0))

    pred = posterior.predictive(model, x_test)
    if classification:
        scores = metrics.evaluate(pred, y_test)
    else:
        scores = metrics.evaluate(pred, y_test.to(dtype), level=level, y_scale=y_scale)
        scores["units"] = "original" if (y_shift, y_scale) != (0.0, 1.0) else "as given"

    # Function-space diagnostics: the quantity the predictions are made of.
    f = posterior.f_draws(model, x_test)  # C x S x n x m
    if classification:
        f = torch.sigmoid(f) if f.shape[-1] == 1 else torch.softmax(f, -1)
        quantity = "p(y | x_test)"
    else:
        quantity = "f(x_test)"
    rhat, ess_b, ess_t = diagnostics.split_rhat(f), diagnostics.ess_bulk(f), diagnostics.ess_tail(f)
    wall = float(posterior.info.get("wall_time", float("nan")))
    grad_evals = posterior.info.get("grad_evals", posterior.num_grad_evals)
    min_ess_bulk = _nanmin(ess_b)
    diverging = posterior.sample_stats.get("diverging")
    num_div = posterior.num_divergences
    diag = {
        "quantity": quantity,
        "max_rhat": _nanmax(rhat),
        "min_ess_bulk": min_ess_bulk,
        "min_ess_tail": _nanmin(ess_t),
        "num_divergences": num_div,
        "divergence_rate": num_div / (posterior.num_chains * posterior.num_draws),
        "wall_time": wall,
        "grad_evals": int(grad_evals),
        "ess_per_second": min_ess_bulk / wall if wall > 0 else float("nan"),
        "num_draws": posterior.num_chains * posterior.num_draws,
    }
    # The noise scale is identifiable and enters every predictive interval: checked with f.
    predictive_draws = {quantity: f}
    lik = model.likelihood
    if isinstance(lik, Gaussian) and lik.learned:
        noise = posterior.samples[..., model.spec.slice(Gaussian.PARAM)][..., 0].exp() * y_scale
        predictive_draws[NOISE_NAME] = noise
        diag["noise_scale_rhat"] = float(diagnostics.split_rhat(noise))
        diag["noise_scale_ess_bulk"] = float(diagnostics.ess_bulk(noise))
        diag["noise_scale_ess_tail"] = float(diagnostics.ess_tail(noise))
    f_table = diagnostics.summary(predictive_draws)
    f_warnings = diagnostics.convergence_warnings(
        f_table, diverging=diverging, num_chains=posterior.num_chains,
        min_ess_per_chain=MIN_TOTAL_ESS / posterior.num_chains)

    names, draws = _summary_draws(model, posterior, y_scale)
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
        "warnings": posterior.warnings(),
        "function_space_warnings": f_warnings,
        "notes": [_NOTE_PARAMETER_SPACE] if model.spec.dim - model.likelihood.spec.dim > 1 else [],
        "figures": {},
    }
    if extra:
        report["extra"] = dict(extra)

    out_dir.mkdir(parents=True, exist_ok=True)
    if figures:
        if classification:
            plots.plot_calibration(pred, y_test, out_dir / "calibration.png")
            report["figures"]["calibration"] = "calibration.png"
        else:
            shown = _in_original_units(pred, y_shift, y_scale)
            y_orig = y_shift + y_scale * y_test.to(dtype)
            units = "original units" if shown is not pred else "standardised units"
            target = getattr(split, "target_name", None) or "y"
            plots.plot_predictions(shown, y_orig if shown is not pred else y_test.to(dtype),
                                   out_dir / "predictions.png", level=level,
                                   title=f"{target}: test set, {level:.0%} intervals ({units})")
            plots.plot_calibration(pred, y_test.to(dtype), out_dir / "calibration.png")
            report["figures"]["predictions"] = "predictions.png"
            report["figures"]["calibration"] = "calibration.png"
        plots.plot_trace(draws, out_dir / "trace.png", names=names, max_params=len(names))
        report["figures"]["trace"] = "trace.png"
    report = _jsonable(report)
    with open(out_dir / REPORT_FILE, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, allow_nan=False)
        handle.write("\n")
    return report


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable block: metrics, function-space diagnostics, a parameter summary, warnings."""
    lines = []
    s = report.get("sampler", {})
    m = report.get("model", {})
    lines.append(f"Model: {m.get('repr', '?')}")
    lines.append(f"Sampler: {s.get('method', '?')}, {s.get('num_chains', '?')} chains x {s.get('num_samples', '?')} "
                 f"draws after {s.get('num_warmup', '?')} warm-up iterations (seed {s.get('seed', '?')}, "
                 f"{s.get('dtype', '?')})")
    data = report.get("data", {})
    scores = report.get("metrics", {})
    if report.get("task") == "classification":
        lines.append(f"Test metrics (n_test = {data.get('n_test')}):")
        lines.append(f"  accuracy {_fmt(scores.get('accuracy'))}   NLL {_fmt(scores.get('nll'))}   "
                     f"ECE {_fmt(scores.get('ece'))}   Brier {_fmt(scores.get('brier'))}")
    else:
        level = report.get("level", 0.9)
        cov = scores.get(f"coverage_{level:g}")
        lines.append(f"Test metrics ({scores.get('units', 'original')} units, n_test = {data.get('n_test')}):")
        lines.append(f"  RMSE {_fmt(scores.get('rmse'))}   NLL {_fmt(scores.get('nll'))}   "
                     f"CRPS {_fmt(scores.get('crps'))}"
                     f"   {level:.0%} interval coverage {_fmt(cov)}")
    d = report.get("diagnostics", {})
    lines.append(f"Sampler diagnostics in function space ({d.get('quantity', 'f(x_test)')}):")
    lines.append(f"  max R-hat {_fmt(d.get('max_rhat'), '.3f')}   min ESS bulk {_fmt(d.get('min_ess_bulk'), '.0f')}   "
                 f"min ESS tail {_fmt(d.get('min_ess_tail'), '.0f')}   (of {d.get('num_draws')} draws)")
    if d.get("noise_scale_rhat") is not None:
        lines.append(f"  noise scale: R-hat {_fmt(d.get('noise_scale_rhat'), '.3f')}   ESS bulk "
                     f"{_fmt(d.get('noise_scale_ess_bulk'), '.0f')}   "
                     f"ESS tail {_fmt(d.get('noise_scale_ess_tail'), '.0f')}")
    lines.append(f"  divergences {d.get('num_divergences')}   wall time {_fmt(d.get('wall_time'), '.1f')} s   "
                 f"gradient evaluations {_fmt_int(d.get('grad_evals'))}   "
                 f"min bulk ESS/s {_fmt(d.get('ess_per_second'), '.2f')}")
    summ = report.get("summary")
    if summ and summ.get("rows"):
        lines.append("Posterior summary (noise scale in original units, a few weights):")
        rows = [{k: (math.nan if v is None else v) for k, v in row.items()} for row in summ["rows"]]
        table = diagnostics.SummaryTable(rows=rows, columns=summ["columns"], num_chains=summ.get("num_chains", 0),
                                         num_draws=summ.get("num_draws", 0))
        lines.extend("  " + line for line in table.to_string().splitlines())
    f_warn = report.get("function_space_warnings", [])
    lines.append("Function-space warnings:" if f_warn else "Function-space warnings: none")
    lines.extend(f"  - {w}" for w in f_warn)
    p_warn = report.get("warnings", [])
    if p_warn:
        lines.append("Parameter-space warnings:")
        lines.extend(f"  - {w}" for w in p_warn)
        lines.extend(f"  note: {n}" for n in report.get("notes", []))
    else:
        lines.append("Parameter-space warnings: none")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Helpers


def _in_original_units(pred: Predictive, shift: float, scale: float) -> Predictive:
    if (shift, scale) == (0.0, 1.0):
        return pred
    try:
        return rescaled_predictive(pred, shift, scale)
    except NotImplementedError:
        return pred


def _summary_draws(model: ProbModel, posterior: SamplePosterior, y_scale: float) -> tuple[list[str], Tensor]:
    """Names and draws ``C x S x K`` of the summarised parameters: likelihood parameters first (the Gaussian
    noise scale constrained, in original units), then a few evenly spaced network weights."""
    spec = model.spec
    lik_dim = model.likelihood.spec.dim
    net_dim = spec.dim - lik_dim
    samples = posterior.samples
    names, columns = [], []
    lik = model.likelihood
    if isinstance(lik, Gaussian) and lik.learned:
        names.append(NOISE_NAME)
        columns.append(samples[..., spec.slice(Gaussian.PARAM)][..., 0].exp() * y_scale)
    elif lik_dim:
        for k in range(net_dim, spec.dim):
            names.append(_element_name(spec, k))
            columns.append(samples[..., k])
    count = min(_NUM_WEIGHTS_SHOWN, net_dim)
    if count:
        step = (net_dim - 1) / max(count - 1, 1)
        for k in sorted({round(i * step) for i in range(count)}):
            names.append(_element_name(spec, k))
            columns.append(samples[..., k])
    return names, torch.stack(columns, -1)


def _element_name(spec, index: int) -> str:
    """``name[i,j]`` of flat index ``index`` into ``theta`` (row-major, as ``ParamSpec.unflatten``)."""
    for name, shape, offset in zip(spec.names, spec.shapes, spec.offsets):
        size = math.prod(shape)
        if index < offset + size:
            if len(shape) == 0:
                return name
            rest, idx = index - offset, []
            for dim in reversed(shape):
                idx.append(rest % dim)
                rest //= dim
            return f"{name}[{','.join(str(i) for i in reversed(idx))}]"
    raise IndexError(index)


_SETTING_KEYS = ("method", "num_chains", "num_warmup", "num_samples", "seed", "dtype", "thin", "dim", "max_tree_depth",
                 "num_steps", "trajectory_length", "dense_mass", "target_accept", "temperature")


def _settings(posterior: SamplePosterior) -> dict[str, Any]:
    info = posterior.info
    out = {k: info[k] for k in _SETTING_KEYS if k in info}
    out.update({k: v for k, v in info.items() if k not in out and k not in ("wall_time", "grad_evals")
                and isinstance(v, (int, float, str, bool, type(None)))})
    return out


def _nanmax(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.max()) if t.numel() else float("nan")


def _nanmin(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.min()) if t.numel() else float("nan")


def _jsonable(value):
    """Plain JSON types; non-finite floats become None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return str(value)
    return as_float if math.isfinite(as_float) else None


def _fmt(value, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _fmt_int(value) -> str:
    return "n/a" if value is None else f"{int(value):,}"
