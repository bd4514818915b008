"""BO figures, saved as PNG with the Agg renderer (no pyplot state), like ``probnets_app.plots``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from surrogates.bo import BOResult


def plot_regret(results: Sequence[BOResult], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Log regret (or, where the optimum is unknown, the best value) against the number of evaluations.

    Runs with the same surrogate are drawn in one colour: their median as a line, the range as a band.
    Returns the path written.
    """
    if not results:
        raise ValueError("results must contain at least one BOResult")
    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    use_regret = all(r.regret is not None for r in results)
    for surrogate in dict.fromkeys(r.surrogate for r in results):
        runs = [r for r in results if r.surrogate == surrogate]
        curves = np.array([r.regret if use_regret else r.best for r in runs], dtype=float)
        if use_regret:
            curves = np.log10(np.maximum(curves, 1e-12))
        evals = runs[0].n_init + runs[0].q * np.arange(curves.shape[1])
        line, = ax.plot(evals, np.median(curves, 0), drawstyle="steps-post", label=f"{surrogate} ({len(runs)} runs)")
        if len(runs) > 1:
            ax.fill_between(evals, curves.min(0), curves.max(0), step="post", color=line.get_color(), alpha=0.2)
    ax.set_xlabel("function evaluations")
    ax.set_ylabel("log10 regret" if use_regret else "best value found")
    ax.set_title(title or results[0].problem)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path

