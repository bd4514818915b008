"""Tests of probnets_app.plots: every figure is written as a non-empty PNG without pyplot."""

import pytest
import torch

from probnets_app.plots import (_evenly_spaced, plot_calibration, plot_calibration_curves, plot_coverage,
                                plot_predictions, plot_reliability_curves, plot_trace)
from probnets import BNN, Bernoulli, Categorical

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DT = torch.float64


def assert_png(path, expected):
    assert path == expected
    data = expected.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE


@pytest.fixture(scope="module")
def regression():
    g = torch.Generator().manual_seed(0)
    model = BNN(1, [8])
    theta = model.init_theta(16, generator=g, dtype=DT)
    x = torch.linspace(-2, 2, 40, dtype=DT)[:, None]
    pred = model.predictive(theta, x)
    return pred, torch.sin(2 * x[:, 0]), x[:, 0]


@pytest.fixture(scope="module", params=[2, 3], ids=["bernoulli", "categorical"])
def classification(request):
    g = torch.Generator().manual_seed(1)
    num_classes = request.param
    lik = Bernoulli() if num_classes == 2 else Categorical(num_classes)
    model = BNN(2, [8], num_classes, likelihood=lik)
    theta = 2.0 * model.init_theta(8, generator=g, dtype=DT)
    pred = model.predictive(theta, torch.randn(200, 2, generator=g, dtype=DT))
    return pred, torch.randint(0, num_classes, (200,), generator=g)


def test_plot_predictions_with_inputs_draws_band(regression, tmp_path):
    pred, y, x = regression
    out = tmp_path / "band.png"
    assert_png(plot_predictions(pred, y, str(out), x=x, title="band"), out)


def test_plot_predictions_without_inputs_draws_predicted_vs_observed(regression, tmp_path):
    pred, y, _ = regression
    out = tmp_path / "nested" / "scatter.png"  # parent folders are created
    assert_png(plot_predictions(pred, y.numpy(), out, level=0.5), out)


def test_plot_predictions_multi_output(tmp_path):
    g = torch.Generator().manual_seed(2)
    model = BNN(2, [4], 2)
    pred = model.predictive(model.init_theta(4, generator=g, dtype=DT), torch.randn(12, 2, generator=g, dtype=DT))
    out = tmp_path / "two_outputs.png"
    assert_png(plot_predictions(pred, torch.randn(12, 2, generator=g, dtype=DT), out), out)


def test_plot_predictions_rejects_bad_input(regression, classification, tmp_path):
    pred, y, x = regression
    with pytest.raises(ValueError, match=r"\bx\b"):
        plot_predictions(pred, y, tmp_path / "bad.png", x=x[:-1])
    with pytest.raises(ValueError, match=r"\by\b"):
        plot_predictions(pred, y[:-1], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="regression"):
        plot_predictions(*classification, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_calibration_regression(regression, tmp_path):
    pred, y, _ = regression
    out = tmp_path / "coverage.png"
    assert_png(plot_calibration(pred, y, out), out)


def test_plot_calibration_classification(classification, tmp_path):
    out = tmp_path / "reliability.png"
    assert_png(plot_calibration(*classification, out, title="reliability"), out)


@pytest.mark.parametrize("ranks", [False, True], ids=["histograms", "ranks"])
@pytest.mark.parametrize("shape", [(2, 50, 10), (50, 3)], ids=["chains", "single-chain"])
def test_plot_trace(shape, ranks, tmp_path):
    draws = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    draws[..., 0, 0] = float("nan")  # a diverged value must not break the histograms
    names = [f"p{k}" for k in range(shape[-1])]
    out = tmp_path / "trace.png"
    assert_png(plot_trace(draws, out, names=names, max_params=4, ranks=ranks), out)


def test_plot_trace_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="draws"):
        plot_trace(torch.zeros(5), tmp_path / "t.png")
    with pytest.raises(ValueError, match="names"):
        plot_trace(torch.zeros(1, 5, 3), tmp_path / "t.png", names=["a"])
    with pytest.raises(ValueError, match="max_params"):
        plot_trace(torch.zeros(1, 5, 3), tmp_path / "t.png", max_params=0)


def test_evenly_spaced_includes_both_ends():
    assert _evenly_spaced(3, 6) == [0, 1, 2]
    assert _evenly_spaced(100, 4) == [0, 33, 66, 99]
    assert _evenly_spaced(7, 1) == [0]


def test_bench_calibration_reliability_and_coverage_figures(tmp_path):
    curves = [{"label": "a", "levels": [0.1, 0.5, 0.9], "observed": [0.1, 0.4, 0.8],
               "observed_err": [0.01, None, 0.02]},
              {"label": "b", "levels": [0.1, 0.5, 0.9], "observed": [0.2, 0.6, 0.95]}]
    assert_png(plot_calibration_curves(curves, tmp_path / "c.png"), tmp_path / "c.png")
    bins = [{"label": "a", "confidence": [0.55, None, 0.9], "accuracy": [0.5, None, 0.85], "counts": [10, 0, 30]}]
    assert_png(plot_reliability_curves(bins, tmp_path / "r.png"), tmp_path / "r.png")
    coverage = [{"label": "a", "coverage": {0.5: (0.45, 0.02), 0.9: (0.88, None)}},
                {"label": "b", "coverage": {0.9: (1.0, 0.0)}}]
    assert_png(plot_coverage(coverage, tmp_path / "v.png"), tmp_path / "v.png")
    for plot in (plot_calibration_curves, plot_reliability_curves, plot_coverage):
        with pytest.raises(ValueError, match="at least one"):
            plot([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()
