"""The figures of a fit report: predictions with intervals (regression), calibration and traces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from probnets.predictive import Predictive
from probnets_app import plots
from probnets_app.report.rescale import in_original_units


def write_figures(pred: Predictive, y_test: Tensor, draws: Tensor, names: Sequence[str], out_dir: Path, *,
                  level: float, y_shift: float, y_scale: float, target: str | None) -> dict[str, str]:
    """Write the report's PNG figures into ``out_dir``; returns their file names by figure.

    Regression: ``predictions.png`` (predicted vs observed with central ``level`` intervals, in original
    units where the likelihood allows it exactly) and ``calibration.png`` (coverage curve); classification:
    ``calibration.png`` (reliability diagram). Always ``trace.png`` of the summarised parameters.

    Args:
        pred: Predictive over the ``n`` test points (standardised units for regression).
        y_test: Test targets, ``n`` (or ``n x m``) in the predictive's units, or class labels ``n``.
        draws: Draws ``C x S x K`` of the summarised parameters.
        names: Their ``K`` names.
        out_dir: An existing folder.
        level: Probability of the central intervals.
        y_shift, y_scale: The map from standardised to original units of the targets.
        target: Name of the target, for the title.
    """
    figures = {}
    if pred.is_classification:
        plots.plot_calibration(pred, y_test, out_dir / "calibration.png")
        figures["calibration"] = "calibration.png"
    else:
        shown = in_original_units(pred, y_shift, y_scale)
        units = "original units" if shown is not pred else "standardised units"
        plots.plot_predictions(shown, y_shift + y_scale * y_test if shown is not pred else y_test,
                               out_dir / "predictions.png", level=level,
                               title=f"{target or 'y'}: test set, {level:.0%} intervals ({units})")
        plots.plot_calibration(pred, y_test, out_dir / "calibration.png")
        figures["predictions"] = "predictions.png"
        figures["calibration"] = "calibration.png"
    plots.plot_trace(draws, out_dir / "trace.png", names=names, max_params=len(names))
    figures["trace"] = "trace.png"
    return figures
