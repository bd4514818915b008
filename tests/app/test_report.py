"""The fit report beyond the ``probnets fit`` regression run (covered in test_fit.py): classifiers."""

import pytest


@pytest.mark.filterwarnings("ignore::inference.diagnostics.ConvergenceWarning")
def test_fit_report_classification(tmp_path):
    """The report module also handles classifiers (accuracy, NLL, ECE, Brier, reliability diagram)."""
    from types import SimpleNamespace

    import torch

    import inference
    from probnets_app.report import fit_report, format_report
    from probnets import BNN, Bernoulli

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).to(torch.float64)
    model = BNN(2, [5], likelihood=Bernoulli())
    post = inference.sample(model, (x[:40], y[:40]), method="chees", num_chains=4, num_warmup=20, num_samples=10,
                            progress=False)
    split = SimpleNamespace(x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    report = fit_report(model, post, split, out_dir=tmp_path)
    assert report["task"] == "classification"
    assert set(report["metrics"]) == {"accuracy", "nll", "ece", "brier"}
    assert (tmp_path / "calibration.png").stat().st_size > 1000 and (tmp_path / "report.json").exists()
    assert "accuracy" in format_report(report)
