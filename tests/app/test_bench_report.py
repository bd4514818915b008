"""The bench report: means and standard errors over splits, the best value per column, the Pareto front, the
calibration, coverage and trace figures and the self-contained HTML page."""

import math

import numpy as np
import pytest
import torch

from probnets_app.bench import report, stats
from probnets_app.plots import pareto_front, plot_pareto


def _row(method, split, test_ll, wall, status="ok", coverage=0.9):
    return {"data_set": "d", "method": method, "split": split, "status": status, "task": "regression",
            "error": None if status == "ok" else "boom", "test_ll": test_ll, "rmse": 1.0, "crps": 0.5,
            "coverage_0.9": coverage, "wall_time": wall}


def test_mean_and_standard_error():
    mean, se = stats.mean_se([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert se == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2 / 3))
    assert math.isnan(stats.mean_se([3.0])[1])


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


# --------------------------------------------------------------------------------------------------
# Calibration and coverage figures, trace draws, the HTML page


def _calibration_record(method, split, observed, status="ok"):
    record = {"data_set": "d", "method": method, "split": split, "status": status, "task": "regression",
              "error": None if status == "ok" else "RuntimeError: <boom> & more", "seed": 7 + split,
              "family": "map", "budget": 40, "settings": {"num_steps": 20}, "wall_time": 1.0 + split,
              "metrics": {"test_ll": -1.0 - 0.1 * split, "rmse": 1.0, "crps": 0.5, "coverage_0.9": observed[-1]},
              "versions": {"python": "3.11", "torch": "2.x"}, "threads": 1, "load_average": [0.5 + split, 0, 0]}
    if observed is not None:
        record["calibration"] = {"levels": [0.5, 0.9], "observed": observed}
    return record


def test_regression_curves_average_the_splits_that_recorded_calibration():
    from probnets_app.bench.figures import regression_curve

    curve = regression_curve("a", [{"levels": [0.1, 0.5, 0.9], "observed": [0.2, 0.4, 0.8]},
                                   {"levels": [0.5, 0.9], "observed": [0.6, 1.0]}])
    assert curve["levels"] == [0.5, 0.9]  # only the levels every split has
    assert curve["observed"] == pytest.approx([0.5, 0.9])
    assert curve["observed_err"] == pytest.approx([0.1, 0.1])  # sd 0.1414 / sqrt(2)
    single = regression_curve("a", [{"levels": [0.5], "observed": [0.3]}])
    assert single["observed_err"] == [None]


def test_reliability_bins_of_the_splits_are_pooled_by_their_counts():
    from probnets_app.bench.figures import reliability_curve

    curve = reliability_curve("a", [{"confidence": [0.6, None], "accuracy": [0.5, None], "counts": [2, 0]},
                                    {"confidence": [0.7, 0.95], "accuracy": [1.0, 1.0], "counts": [6, 4]}])
    assert curve["counts"] == [8, 4]
    assert curve["confidence"] == pytest.approx([(2 * 0.6 + 6 * 0.7) / 8, 0.95])
    assert curve["accuracy"] == pytest.approx([(2 * 0.5 + 6 * 1.0) / 8, 1.0])


def test_the_html_report_is_self_contained_with_tables_figures_failures_and_metadata(tmp_path):
    import re

    records = [_calibration_record("a", k, [0.4 + 0.05 * k, 0.85]) for k in range(3)]
    records += [_calibration_record("b", k, [0.5, 0.9]) for k in range(2)] + [_calibration_record("b", 2, [0.5, 0.9],
                                                                                                  status="failed")]
    written = report.write_report(records, tmp_path)
    names = {p.name for p in written}
    assert {"report.html", "report.md", "pareto_d.png", "calibration_d.png", "coverage_d.png"} <= names
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)=\"(?!data:)", page) and "<script" not in page and "<link" not in page
    assert page.count('src="data:image/png;base64,') == 3
    assert '<td class="best">' in page and "&dagger;" in page
    assert "RuntimeError: &lt;boom&gt; &amp; more" in page and "<boom>" not in page  # the failed cell, escaped
    assert "seed of split 0 (split k uses seed + k): 7" in page and "torch 2.x" in page and "d / a" in page
    assert "0.50 to 2.50" in page and "{&quot;num_steps&quot;: 20}" in page
    text = (tmp_path / "report.md").read_text()
    assert "(calibration_d.png)" in text and "(coverage_d.png)" in text and "![d](pareto_d.png)" in text


def test_cells_written_before_calibration_and_traces_are_reported_without_those_figures(tmp_path):
    records = [_calibration_record("a", k, [0.5, 0.9]) for k in range(2)]
    for record in records:
        del record["calibration"]
    records[0]["trace"] = {"file": "split0.trace.npz", "labels": ["f"], "rhat": [1.0]}  # its draws file is gone
    written = {p.name for p in report.write_report(records, tmp_path)}
    assert "pareto_d.png" in written and "report.html" in written
    assert not {"calibration_d.png", "coverage_d.png"} & written and not (tmp_path / "traces").exists()


class _Posterior:
    """The parts of a sampled posterior that ``trace_draws`` reads."""

    def __init__(self, f, dim, log_weights=None):
        self.f, self.log_weights = f, log_weights
        self.num_chains = f.shape[0]
        self.samples = torch.zeros(*f.shape[:2], dim, dtype=f.dtype)

    def f_draws(self, model, x):
        return self.f[:, :, : x.shape[0]]


def test_trace_draws_keep_the_test_outputs_of_largest_rhat():
    from probnets import BNN, Categorical
    from probnets_app.bench.methods import trace_draws

    g = torch.Generator().manual_seed(0)
    model = BNN(2, (3,), 1)
    f = torch.randn(4, 50, 10, 1, generator=g, dtype=torch.float64)
    f[0, :, 7] += 5.0   # chain 0 far from the others at point 7: the largest R-hat
    f[1, :, 3] += 1.0   # a smaller shift at point 3: the second largest
    x = torch.zeros(10, 2, dtype=torch.float64)
    trace = trace_draws(model, _Posterior(f, model.spec.dim), x)
    assert trace["points"][:2] == [7, 3] and trace["outputs"] == [0, 0, 0]
    assert trace["labels"][:2] == ["f(x_test[7])", "f(x_test[3])"]
    assert trace["draws"].shape == (4, 50, 3)
    assert trace["rhat"][0] > trace["rhat"][1] > trace["rhat"][2] > 1.0
    np.testing.assert_array_equal(trace["draws"][:, :, 0], f[:, :, 7, 0].to(torch.float32).numpy())
    assert trace_draws(model, _Posterior(f[:1], model.spec.dim), x) is None  # one chain: no R-hat
    assert trace_draws(model, _Posterior(f, model.spec.dim, log_weights=torch.zeros(4, 50)), x) is None

    classifier = BNN(2, (3,), 3, likelihood=Categorical(3))
    logits = torch.randn(4, 50, 10, 3, generator=g, dtype=torch.float64)
    logits[2, :, 5, 1] += 6.0  # chain 2 puts class 1 of point 5 far apart
    trace = trace_draws(classifier, _Posterior(logits, classifier.spec.dim), x)
    assert trace["labels"][0] == "p(y=1 | x_test[5])"


# --------------------------------------------------------------------------------------------------
# CPU time, the trace plots shown, the literature check


def test_cpu_time_is_a_column_of_every_table_and_n_a_for_cells_without_it():
    rows = [{**_row("new", k, -1.0, 1.0), "cpu_time": 2.0 + k} for k in range(2)]
    rows += [_row("old", k, -1.2, 1.0) for k in range(2)]  # written before cells recorded CPU time
    table = report.tables(report.summarise(rows), rows)[0]
    column = table["columns"].index("cpu_time")
    cells = {row["method"]: row["cells"][column][0] for row in table["rows"]}
    assert cells == {"new": "2.5 +- 0.5", "old": "n/a"}
    old_only = report.tables(report.summarise(rows[2:]), rows[2:])[0]
    assert "cpu_time" in old_only["columns"]


def _mcmc_record(method, split, rhat, out):
    from probnets_app.bench.cell import cell_path, trace_path

    record = {**_calibration_record(method, split, [0.5, 0.9]), "diagnostics": {"max_rhat": rhat},
              "trace": {"file": f"split{split}.trace.npz", "labels": ["f(x_test[0])"], "rhat": [rhat]}}
    path = trace_path(cell_path(out, "d", method, split))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, draws=np.random.default_rng(split).normal(size=(2, 20, 1)).astype(np.float32))
    return record


def test_the_reports_show_the_traces_of_the_checked_samplers_and_of_the_cells_of_largest_rhat(tmp_path):
    nan = float("nan")
    rhats = {("a", 0): 1.01, ("a", 1): 1.5, ("b", 0): nan, ("b", 1): 1.2, ("c", 0): 1.3, ("e", 0): nan,
             ("nuts", 0): 1.05, ("nuts", 1): 1.02}
    records = [_mcmc_record(m, k, rhat, tmp_path) for (m, k), rhat in rhats.items()]
    records.append(_calibration_record("map", 0, [0.5, 0.9]))  # no draws
    records.append({**_calibration_record("chees", 0, [0.5, 0.9]), "trace": {"file": "gone"}})  # its draws are gone
    assert report.worst_traces(records, tmp_path, count=3) == [("d", "nuts", 0), ("d", "a", 1), ("d", "c", 0)]
    assert report.worst_traces(records, tmp_path, count=9)[3:] == [("d", "b", 1), ("d", "e", 0)]  # NaN R-hat last
    report.write_report(records, tmp_path)
    shown = sorted(p.name for p in (tmp_path / "traces").glob("*.png"))
    assert shown == ["trace_d_a_1.png", "trace_d_b_1.png", "trace_d_c_0.png", "trace_d_nuts_0.png"]
    assert report.TRACE_CELLS == len(shown)
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3 + report.TRACE_CELLS  # Pareto, calibration, coverage
    text = (tmp_path / "report.md").read_text()
    assert text.count("](traces/") == report.TRACE_CELLS and "(traces/trace_d_nuts_0.png)" in text


def _reference(test_ll, se, confirmed=True, target=True, data_set="d"):
    from probnets_app.bench.references import Reference

    return Reference(data_set, "HMC", test_ll, se, "a paper", "d-50-1", "20 splits", confirmed, target)


def test_the_literature_check_passes_within_one_standard_error_of_the_difference():
    from probnets_app.bench import references

    ref = _reference(-2.50, 0.03)  # with ours' se 0.04 the tolerance is 0.05
    summary = [{"data_set": "d", "method": "nuts", "test_ll": -2.50 + 0.049, "test_ll_se": 0.04},
               {"data_set": "d", "method": "chees", "test_ll": -2.50 - 0.051, "test_ll_se": 0.04},
               {"data_set": "d", "method": "far", "test_ll": -2.50 + 0.2, "test_ll_se": 0.04},  # better is no match
               {"data_set": "d", "method": "one", "test_ll": -2.5, "test_ll_se": float("nan")}]  # one split
    checks = references.check(summary, (ref,), ("nuts", "chees", "far", "one", "absent"))
    assert [c["verdict"] for c in checks] == ["PASS", "FAIL", "FAIL", "n/a", "n/a"]
    assert checks[0]["tolerance"] == pytest.approx(0.05) and checks[1]["difference"] == pytest.approx(-0.051)
    assert references.target_status(checks[:1]).endswith(": PASS.")
    assert references.target_status(checks[:2]).endswith(": FAIL.")
    context = references.check(summary, (_reference(-2.5, 0.03, confirmed=False), _reference(-2.5, 0.03,
                                                                                               target=False)))
    assert "NOT CHECKED" in references.target_status(context)  # only unconfirmed or context references
    text = references.markdown(checks)
    assert "| d | HMC | yes | -2.50 +- 0.03 | nuts | -2.451 +- 0.040 | +0.049 | 0.050 | PASS |" in text
    assert "Searched for an HMC table" in text


def test_the_reports_state_the_literature_check(tmp_path):
    from probnets_app.bench import references

    records = [{**_calibration_record("nuts", k, [0.5, 0.9]), "data_set": "boston"} for k in range(2)]
    report.write_report(records, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## Literature reference check" in text and references.target_status(references.check([])) in text
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Literature reference check</h2>" in page and "| boston |" in text
