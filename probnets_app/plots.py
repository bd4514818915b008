"""Diagnostic figures of predictives and MCMC draws, saved as PNG files.

Figures are built on ``matplotlib.figure.Figure`` with the Agg renderer directly rather than through
``pyplot``: nothing is shown, no global backend is switched and no figure stays registered in memory.
Every function returns the path it wrote.

Example:
    >>> plot_predictions(pred, y_test, "out/predictions.png", x=x_test[:, 0])
    PosixPath('out/predictions.png')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inference import metrics
from probnets.predictive import Predictive
from probnets.validation import as_tensor, check_positive_int

__all__ = ["pareto_front", "plot_calibration", "plot_calibration_curves", "plot_coverage", "plot_losses", "plot_pareto",
           "plot_predictions", "plot_reliability_curves", "plot_trace"]

COVERED_COLOR, MISSED_COLOR, BAND_COLOR = "tab:blue", "tab:red", "tab:blue"


def _new_figure(rows: int, cols: int, *, width: float = 4.5, height: float = 3.5) -> tuple[Figure, np.ndarray]:
    """A figure with a ``rows x cols`` array of axes."""
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.asarray(fig.subplots(rows, cols, squeeze=False))


def _save(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


# --------------------------------------------------------------------------------------------------
# Predictions


def plot_predictions(pred: Predictive, y, path: str | os.PathLike, *, level: float = 0.9,
                     title: str | None = None, x=None) -> Path:
    """Regression predictions with their central predictive intervals, one panel per output.

    With ``x``: the predictive mean over sorted ``x`` as a line, the central interval as a shaded band and
    the observations as points. Without: predicted mean against observed value with the interval as error
    bars and the diagonal ``y = x``; points are colored by whether their interval covers them.

    Args:
        pred: Regression predictive over ``n`` points with ``m`` outputs.
        y: Observed targets, ``n`` or ``n x m``.
        path: Where to write the PNG.
        level: Probability of the central interval, in ``(0, 1)``.
        title: Figure title.
        x: Optional 1-D inputs, ``n`` (or ``n x 1``).

    Returns:
        ``path`` as a ``Path``.
    """
    metrics._require_task(pred, "regression", "plot_predictions")
    metrics._check_level(level, "level")
    y = metrics._regression_targets(pred, y)
    x = None if x is None else _inputs_1d(x, y.shape[0])
    lower, upper = pred.interval(level)
    mean = pred.mean
    fig, axes = _new_figure(1, y.shape[1])
    for j, ax in enumerate(axes[0]):
        panel = [_numpy(t[:, j]) for t in (mean, lower, upper, y)]
        if x is None:
            _draw_predicted_vs_observed(ax, *panel, level)
        else:
            _draw_band(ax, _numpy(x), *panel, level)
        if y.shape[1] > 1:
            ax.set_title(f"output {j}")
    fig.suptitle(title or f"Predictions with {level:.0%} central intervals")
    return _save(fig, path)


def _inputs_1d(x, n: int) -> torch.Tensor:
    x = as_tensor(x, "x")
    if x.dim() == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 1 or x.shape[0] != n:
        raise ValueError(f"x must be 1-D inputs of shape ({n},), got {tuple(x.shape)}")
    return x


def _draw_band(ax: Axes, x: np.ndarray, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray,
               y: np.ndarray, level: float) -> None:
    order = np.argsort(x, kind="stable")
    ax.fill_between(x[order], lower[order], upper[order], color=BAND_COLOR, alpha=0.25,
                    label=f"{level:.0%} interval")
    ax.plot(x[order], mean[order], color=BAND_COLOR, lw=1.5, label="predictive mean")
    ax.scatter(x, y, s=10, color="black", zorder=3, label="observed")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="best", fontsize="small")


def _draw_predicted_vs_observed(ax: Axes, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                                y: np.ndarray, level: float) -> None:
    covered = (y >= lower) & (y <= upper)
    for mask, color, label in ((covered, COVERED_COLOR, "covered"), (~covered, MISSED_COLOR, "not covered")):
        if not mask.any():
            continue
        err = np.stack([mean[mask] - lower[mask], upper[mask] - mean[mask]])
        ax.errorbar(y[mask], mean[mask], yerr=err, fmt="o", ms=3, color=color, ecolor=color, alpha=0.7,
                    elinewidth=0.8, label=f"{label} ({int(mask.sum())})")
    lo, hi = float(min(y.min(), lower.min())), float(max(y.max(), upper.max()))
    ax.plot([lo, hi], [lo, hi], ls="--", color="gray", lw=1, label="y = x")
    ax.set_xlabel("observed")
    ax.set_ylabel(f"predicted mean and {level:.0%} interval")
    ax.legend(loc="best", fontsize="small")


# --------------------------------------------------------------------------------------------------
# Calibration


def plot_calibration(pred: Predictive, y, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Calibration of a predictive: coverage curve (regression) or reliability diagram (classification).

    Regression: observed coverage of the central intervals against their nominal level (0.05 to 0.95),
    with the diagonal of perfect calibration. Classification: accuracy against top-label confidence in 15
    equal-width bins, with the ECE in the title (see :func:`inference.metrics.ece`).

    Args:
        pred: Predictive over ``n`` points.
        y: Targets (``n`` or ``n x m``) or class labels (``n``).
        path: Where to write the PNG.
        title: Figure title (the ECE is appended for classifiers).

    Returns:
        ``path`` as a ``Path``.
    """
    metrics._require_predictive(pred)
    fig, axes = _new_figure(1, 1, width=4.5, height=4.5)
    ax = axes[0, 0]
    if pred.is_classification:
        conf, acc, counts = metrics.calibration_curve(pred, y)
        _draw_reliability(ax, _numpy(conf), _numpy(acc), _numpy(counts))
        ax.set_title(f"{title or 'Reliability diagram'} (ECE = {metrics.ece(pred, y):.3f})")
    else:
        levels, observed = metrics.calibration_curve(pred, y)
        _draw_coverage_curve(ax, _numpy(levels), _numpy(observed))
        ax.set_title(title or "Calibration of central intervals")
    return _save(fig, path)


def _draw_diagonal(ax: Axes) -> None:
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect calibration")
    ax.set_xlim(-0.02, 1.02)  # keep markers at 0 and 1 whole
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")


def _draw_coverage_curve(ax: Axes, levels: np.ndarray, observed: np.ndarray) -> None:
    _draw_diagonal(ax)
    ax.plot(levels, observed, "o-", color=COVERED_COLOR, ms=4, label="observed")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.legend(loc="upper left", fontsize="small")


def _draw_reliability(ax: Axes, conf: np.ndarray, acc: np.ndarray, counts: np.ndarray) -> None:
    num_bins = len(counts)
    width = 1.0 / num_bins
    centers = (np.arange(num_bins) + 0.5) * width
    filled = counts > 0
    ax.bar(centers[filled], acc[filled], width=width, color=COVERED_COLOR, alpha=0.7, edgecolor="black",
           lw=0.5, label="accuracy")
    ax.bar(centers[filled], (conf - acc)[filled], bottom=acc[filled], width=width, color=MISSED_COLOR,
           alpha=0.3, edgecolor=MISSED_COLOR, lw=0.5, label="gap to confidence")
    _draw_diagonal(ax)
    ax.set_xlabel("top-label confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize="small")


# --------------------------------------------------------------------------------------------------
# MCMC traces


def plot_trace(draws, path: str | os.PathLike, *, names: Sequence[str] | None = None,
               max_params: int = 6, ranks: bool = False, dpi: int = 100) -> Path:
    """Per-chain trace and histogram of up to ``max_params`` parameters, one row per parameter.

    When there are more than ``max_params`` parameters, evenly spaced ones are shown (always including
    the first and the last, which for probnets models is a likelihood parameter when there is one).

    Args:
        draws: MCMC draws, ``chains x draws x K`` (or ``draws x K`` for a single chain).
        path: Where to write the PNG.
        names: Names of all ``K`` parameters; default ``theta[k]``.
        max_params: Largest number of parameters to show.
        ranks: Add a third column of rank plots (Vehtari et al. 2021): per chain, the histogram of the ranks of
            its draws among all chains' draws; mixed chains give flat histograms at the dashed uniform level.
        dpi: Resolution of the PNG (dots per inch).

    Returns:
        ``path`` as a ``Path``.
    """
    draws = as_tensor(draws, "draws")
    if draws.dim() == 2:
        draws = draws.unsqueeze(0)
    if draws.dim() != 3 or 0 in draws.shape:
        raise ValueError(f"draws must have shape (chains, draws, K) with no empty dimension, got "
                         f"{tuple(draws.shape)}")
    num_params = draws.shape[-1]
    names = _parameter_names(names, num_params)
    shown = _evenly_spaced(num_params, check_positive_int(max_params, "max_params"))
    values = _numpy(draws)
    fig, axes = _new_figure(len(shown), 3 if ranks else 2, width=4.5, height=2.0)
    for row, k in enumerate(shown):
        _draw_chains(axes[row, 0], axes[row, 1], values[:, :, k], names[k])
        if ranks:
            _draw_rank_histograms(axes[row, 2], values[:, :, k])
    if draws.shape[0] <= 8:
        axes[0, 0].legend(loc="upper right", fontsize="x-small", ncols=min(4, draws.shape[0]))
    axes[-1, 0].set_xlabel("iteration")
    axes[-1, 1].set_xlabel("value")
    if ranks:
        axes[-1, 2].set_xlabel("rank among all draws")
    return _save(fig, path, check_positive_int(dpi, "dpi"))


def _parameter_names(names: Sequence[str] | None, num_params: int) -> list[str]:
    if names is None:
        return [f"theta[{k}]" for k in range(num_params)]
    names = [str(name) for name in names]
    if len(names) != num_params:
        raise ValueError(f"names must name all {num_params} parameters, got {len(names)}")
    return names


def _evenly_spaced(num: int, max_count: int) -> list[int]:
    """Up to ``max_count`` evenly spaced indices into ``range(num)``, including both ends."""
    if num <= max_count:
        return list(range(num))
    if max_count == 1:
        return [0]
    return sorted({round(i * (num - 1) / (max_count - 1)) for i in range(max_count)})


def _draw_chains(trace_ax: Axes, hist_ax: Axes, values: np.ndarray, name: str) -> None:
    """Traces and step histograms of one parameter; ``values`` is ``chains x draws``. The chains share their bins
    (over the finite draws of all chains), so a stuck chain is one spike on the common scale."""
    pooled = values[np.isfinite(values)]  # a diverged chain must not break the histograms
    edges = np.histogram_bin_edges(pooled, bins=30) if pooled.size else None
    for chain, chain_values in enumerate(values):
        color = f"C{chain % 10}"
        trace_ax.plot(chain_values, lw=0.6, alpha=0.8, color=color, label=f"chain {chain}")
        finite = chain_values[np.isfinite(chain_values)]
        if finite.size:
            hist_ax.hist(finite, bins=edges, density=True, histtype="step", color=color)
    trace_ax.set_ylabel(name)
    hist_ax.set_yticks([])


def _draw_rank_histograms(ax: Axes, values: np.ndarray, bins: int = 20) -> None:
    """Step histograms of every chain's ranks among the pooled draws (``values``: ``chains x draws``; NaN draws,
    ranked last, are left out)."""
    flat = values.reshape(-1)
    ranks = np.empty(flat.size)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    ranks = ranks.reshape(values.shape)
    edges = np.linspace(0, flat.size, bins + 1)
    for chain, (chain_ranks, chain_values) in enumerate(zip(ranks, values)):
        ax.hist(chain_ranks[np.isfinite(chain_values)], bins=edges, histtype="step", color=f"C{chain % 10}")
    ax.axhline(values.shape[1] / bins, ls="--", color="gray", lw=1)
    ax.set_yticks([])


def plot_losses(losses: torch.Tensor, path: str | os.PathLike, *, title: str = "training loss") -> Path:
    """The loss of every optimisation step (skipped, non-finite steps leave gaps)."""
    fig, axes = _new_figure(1, 1)
    ax = axes[0, 0]
    ax.plot(_numpy(losses))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# Benchmarks


def plot_pareto(points: Sequence[dict], path: str | os.PathLike, *, title: str | None = None,
                x_label: str = "wall time per cell (s)", y_label: str = "test NLL") -> Path:
    """Cost against error of benchmarked methods, with the Pareto front (no other point is both cheaper and better).

    Args:
        points: One dict per method: ``label``, ``x`` (cost, > 0, drawn on a log axis), ``y`` (lower is better)
            and optionally ``x_err`` and ``y_err`` (standard errors, drawn as error bars).
        path: PNG file to write.
    """
    points = [p for p in points if np.isfinite(p["x"]) and np.isfinite(p["y"]) and p["x"] > 0]
    if not points:
        raise ValueError("plot_pareto needs at least one point with a finite y and a positive finite x")
    fig, axes = _new_figure(1, 1, width=7.5, height=5.0)
    ax = axes[0, 0]
    front = pareto_front([(p["x"], p["y"]) for p in points])
    top = _robust_top([p["y"] for p in points])
    for i, p in enumerate(points):
        color = "tab:red" if i in front else "tab:blue"
        label = p["label"]
        if p["y"] > top:  # far worse than the rest: drawn at the top edge, its value in the label
            ax.plot(p["x"], top, "^", color=color, ms=6)
            ax.annotate(f"{label} ({p['y']:.3g})", (p["x"], top), textcoords="offset points", xytext=(4, -9),
                        fontsize=7)
            continue
        ax.errorbar(p["x"], p["y"], xerr=p.get("x_err") or None, yerr=p.get("y_err") or None, fmt="o", color=color,
                    ms=5, capsize=2, lw=1)
        ax.annotate(label, (p["x"], p["y"]), textcoords="offset points", xytext=(4, 3 if i % 2 else -9), fontsize=7)
    ordered = [i for i in sorted(front, key=lambda i: points[i]["x"]) if points[i]["y"] <= top]
    ax.step([points[i]["x"] for i in ordered], [points[i]["y"] for i in ordered], where="post", color="tab:red",
            lw=1, alpha=0.6, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _robust_top(values: Sequence[float]) -> float:
    """The largest value drawn to scale: at most the median plus 10 times the median's distance to the best value."""
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    return min(ordered[-1], median + 10 * max(median - ordered[0], 1e-3 * (abs(median) + 1e-12)))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(cost, error)`` that no other point dominates (at most as costly and at most as
    large an error, one of them strictly), in input order."""
    return [i for i, (x, y) in enumerate(points)
            if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for x2, y2 in points)]


def plot_calibration_curves(curves: Sequence[dict], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Calibration of several regression methods: observed coverage of the central intervals against the nominal
    level, one line per method, with the diagonal of perfect calibration.

    Args:
        curves: One dict per method: ``label``, ``levels`` and ``observed`` (each ``L``, in ``[0, 1]``), optionally
            ``observed_err`` (``L`` standard errors, drawn as a band).
        path: PNG file to write.
    """
    if not curves:
        raise ValueError("plot_calibration_curves needs at least one curve")
    fig, axes = _new_figure(1, 1, width=5.5, height=5.5)
    ax = axes[0, 0]
    _draw_diagonal(ax)
    for i, curve in enumerate(curves):
        levels, observed = np.asarray(curve["levels"], float), np.asarray(curve["observed"], float)
        color = f"C{i % 10}"
        ax.plot(levels, observed, "o-", color=color, ms=3, lw=1.2, label=curve["label"])
        if curve.get("observed_err") is not None:
            err = np.nan_to_num(np.asarray(curve["observed_err"], float))
            ax.fill_between(levels, observed - err, observed + err, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("nominal coverage of the central interval")
    ax.set_ylabel("observed coverage")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title or "Calibration of central intervals")
    return _save(fig, path)


def plot_reliability_curves(curves: Sequence[dict], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Reliability diagram of several classifiers: accuracy against mean top-label confidence per confidence bin,
    one line per method (bins without points left out), with the diagonal of perfect calibration.

    Args:
        curves: One dict per method: ``label``, ``confidence``, ``accuracy`` and ``counts`` (each one value per bin;
            ``None``/NaN for empty bins).
        path: PNG file to write.
    """
    if not curves:
        raise ValueError("plot_reliability_curves needs at least one curve")
    fig, axes = _new_figure(1, 1, width=5.5, height=5.5)
    ax = axes[0, 0]
    _draw_diagonal(ax)
    for i, curve in enumerate(curves):
        conf, acc, counts = (np.asarray(curve[k], dtype=float) for k in ("confidence", "accuracy", "counts"))
        filled = (counts > 0) & np.isfinite(conf) & np.isfinite(acc)
        ax.plot(conf[filled], acc[filled], "o-", color=f"C{i % 10}", ms=3, lw=1.2, label=curve["label"])
    ax.set_xlabel("top-label confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title or "Reliability diagram")
    return _save(fig, path)


def plot_coverage(points: Sequence[dict], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Observed coverage of central intervals per method (a dot with its standard error per level), with the
    nominal levels as dashed lines.

    Args:
        points: One dict per method: ``label`` and ``coverage``, a mapping of nominal level to ``(mean, se)``
            (``se`` may be ``None``).
        path: PNG file to write.
    """
    if not points:
        raise ValueError("plot_coverage needs at least one method")
    levels = sorted({level for p in points for level in p["coverage"]})
    fig, axes = _new_figure(1, 1, width=6.5, height=1.2 + 0.35 * len(points))
    ax = axes[0, 0]
    offsets = np.linspace(-0.15, 0.15, len(levels)) if len(levels) > 1 else np.zeros(1)
    for j, level in enumerate(levels):
        color = f"C{j % 10}"
        ax.axvline(level, ls="--", color=color, lw=1, alpha=0.7)
        for i, p in enumerate(points):
            if level not in p["coverage"]:
                continue
            mean, se = p["coverage"][level]
            ax.errorbar(mean, i + offsets[j], xerr=se if se is not None and np.isfinite(se) else None, fmt="o",
                        color=color, ms=4, capsize=2, lw=1, label=f"{level:.0%} interval" if i == 0 else None)
    ax.set_yticks(range(len(points)), [p["label"] for p in points], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("observed coverage (dashed: nominal)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax.set_title(title or "Coverage of central intervals")
    return _save(fig, path)
