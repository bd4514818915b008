"""``probnets fit --method mp-gelu|gelu-mp|relu-mp``: deterministic VI end to end with its report."""

import json

import pytest

from inference.moment_posterior import MomentPosterior
from probnets_app import cli

TINY = ["--steps", "60", "--widths", "8", "--no-progress"]


@pytest.mark.parametrize("method, extra", [("mp-gelu", []), ("gelu-mp", []), ("relu-mp", ["--covariance", "full"])])
def test_fit_writes_report_and_figures(tmp_path, capsys, method, extra):
    out = tmp_path / "run"
    code = cli.main(["fit", "--method", method, "--data", "diabetes", "--out", str(out), "--save-posterior", *TINY,
                     *extra])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert {"task", "model", "data", "training", "level", "metrics", "warnings", "figures"} <= set(report)
    assert set(report["metrics"]) >= {"rmse", "nll", "crps", "coverage_0.9"}
    assert report["training"]["num_steps"] == 60 and report["training"]["skipped_steps"] == 0
    assert report["training"]["method"] == (method if method != "relu-mp" else "relu-mp-full")
    assert report["data"]["n_test"] == 45 and 20 < report["metrics"]["rmse"] < 150  # original units
    for name in ("predictions.png", "calibration.png", "loss.png"):
        assert (out / name).stat().st_size > 1000
    loaded = MomentPosterior.load(out / "posterior.pt")
    assert loaded.network.method == report["training"]["method"]
    printed = capsys.readouterr().out
    assert "RMSE" in printed and "deterministic" not in printed and str(out / "report.json") in printed


@pytest.mark.parametrize("method", ["mp-gelu", "gelu-mp"])
def test_gelu_has_no_full_covariance(tmp_path, capsys, method):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "--method", method, "--covariance", "full", "--data", "diabetes", "--out",
                  str(tmp_path / "x"), *TINY])
    assert exc.value.code == 2
    assert "--covariance" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
