"""``probnets fit --method mfvi|ssvi``: the variational fits end to end through the report, and their options."""

import json

import pytest

from inference.gaussian_posterior import GaussianPosterior
from probnets_app import cli

TINY = ["--steps", "40", "--samples", "30", "--no-progress", "--widths", "5", "--batch-size", "64"]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("method,extra", [("mfvi", []), ("ssvi", ["--density", "0.5"])])
def test_variational_fit_writes_report_and_posterior(tmp_path, capsys, method, extra):
    out = tmp_path / method
    code = cli.main(["fit", "--method", method, "--data", "diabetes", "--out", str(out), "--save-posterior",
                     *TINY, *extra])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sampler"]["method"] == method and report["sampler"]["num_samples"] == 30
    assert set(report["metrics"]) >= {"rmse", "nll", "crps", "coverage_0.9"}
    posterior = GaussianPosterior.load(out / "posterior.pt")
    assert posterior.info["method"] == method and posterior.info["num_steps"] == 40
    if method == "ssvi":
        assert posterior.mask is not None and posterior.info["density"] == 0.5
    assert "RMSE" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["--method", "mfvi", "--warmup", "10"], "--warmup"),
    (["--method", "ssvi", "--chains", "2"], "--chains"),
    (["--method", "mfvi", "--lr", "-1"], "--lr"),
    (["--method", "ssvi", "--density", "1.5"], "--density"),
])
def test_options_that_do_not_apply_are_usage_errors(tmp_path, capsys, argv, match):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "--data", "diabetes", "--out", str(tmp_path / "x"), *argv])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
