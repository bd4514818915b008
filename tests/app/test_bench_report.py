"""The bench report: means and standard errors over splits, the best value per column, the Pareto front."""

import math

import pytest

from probnets_app.bench import report
from probnets_app.plots import pareto_front, plot_pareto


def _row(method, split, test_ll, wall, status="ok", coverage=0.9):
    return {"data_set": "d", "method": method, "split": split, "status": status, "task": "regression",
            "error": None if status == "ok" else "boom", "test_ll": test_ll, "rmse": 1.0, "crps": 0.5,
            "coverage_0.9": coverage, "wall_time": wall}


def test_mean_and_standard_error():
    mean, se = report.mean_se([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert se == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2 / 3))
    assert math.isnan(report.mean_se([3.0])[1])


def test_summary_counts_failures_and_averages_finished_splits_only():
    rows = [_row("a", 0, -1.0, 2.0), _row("a", 1, -3.0, 4.0), _row("a", 2, None, None, status="failed"),
            _row("b", 0, -0.5, 10.0, coverage=0.5), _row("b", 1, -0.5, 10.0, coverage=0.5)]
    summary = {s["method"]: s for s in report.summarise(rows)}
    assert summary["a"]["splits"] == 2 and summary["a"]["failed"] == 1 and summary["a"]["error"] == "boom"
    assert summary["a"]["test_ll"] == -2.0 and summary["a"]["test_ll_se"] == pytest.approx(1.0)
    text = report.markdown(list(summary.values()))
    line_a = next(line for line in text.splitlines() if line.startswith("| a |"))
    line_b = next(line for line in text.splitlines() if line.startswith("| b |"))
    assert "**-0.5 +- 0**" in line_b and "**-2 +- 1**" not in line_a  # higher log-likelihood is better
    assert "**0.9 +- 0**" in line_a and "**3 +- 1**" in line_a      # coverage closest to 0.9; least wall time
    assert "Failures: a: boom" in text


def test_pareto_front():
    points = [(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.0, 3.0), (0.5, 9.0)]
    assert pareto_front(points) == [0, 1, 3, 4, 5]  # (3, 4) is dominated by (2, 3); equal points both stay


def test_pareto_plot(tmp_path):
    path = plot_pareto([{"label": "a", "x": 1.0, "y": 2.0, "y_err": 0.1}, {"label": "b", "x": 5.0, "y": 1.0},
                        {"label": "nan", "x": 1.0, "y": math.nan}], tmp_path / "p.png")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="at least one point"):
        plot_pareto([{"label": "nan", "x": 0.0, "y": 1.0}], tmp_path / "q.png")


def test_values_not_significantly_worse_than_the_best_get_a_dagger():
    from scipy import stats

    best = [-1.0, -1.2, -0.9, -1.1, -1.0]
    close = [-1.05, -1.1, -1.0, -1.1, -1.02]      # paired differences straddle 0
    worse = [v - 0.5 - 0.01 * k for k, v in enumerate(best)]
    rows = [_row(m, k, v, 1.0) for m, values in (("best", best), ("close", close), ("worse", worse))
            for k, v in enumerate(values)]
    assert stats.ttest_rel(close, best).pvalue >= report.SIGNIFICANCE > stats.ttest_rel(worse, best).pvalue
    assert report.not_worse(rows, "d", "test_ll", "max", "close", "best")
    assert not report.not_worse(rows, "d", "test_ll", "max", "worse", "best")
    assert not report.not_worse(rows[:1] + rows[5:6], "d", "test_ll", "max", "close", "best")  # one common split
    text = report.markdown(report.summarise(rows), rows)
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    test_ll = lambda name: lines[name].split("|")[4]  # noqa: E731
    assert "**" in test_ll("best") and "\u2020" in test_ll("close") and "\u2020" not in test_ll("worse")
