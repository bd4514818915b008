"""``probnets fit --model pbnn``: open-horizon SMC and SGSMC-HMC end to end with the usual report and figures."""

import json

import pytest

from inference.smc.partial_posterior import PartialPosterior
from probnets_app import cli

TINY = ["--particles", "32", "--epochs", "2", "--batch-size", "100", "--no-progress"]


@pytest.mark.parametrize("method, extra", [("ohsmc", ["--move", "ou"]),
                                           ("sgsmc", ["--batch-size", "2", "--particles", "8", "--epochs", "1",
                                                      "--mh-steps", "1", "--chains", "2", "--warmup", "10",
                                                      "--samples", "10", "--hmc-steps", "3"])])
def test_fit_pbnn_writes_report_figures_and_posterior(tmp_path, capsys, method, extra):
    out = tmp_path / method
    code = cli.main(["fit", "--model", "pbnn", "--method", method, "--data", "diabetes", "--out", str(out), *TINY,
                     *extra, "--save-posterior"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sampler"]["method"] in (method, "sgsmc-hmc") and report["model"]["num_parameters"] == 105
    assert 20 < report["metrics"]["rmse"] < 120  # original units
    for name in ("predictions.png", "calibration.png", "trace.png"):
        assert (out / name).stat().st_size > 1000
    posterior = PartialPosterior.load(out / "posterior.pt")
    assert posterior.psi and "RMSE" in capsys.readouterr().out


def test_method_and_model_must_match(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--model", "bnn", "--method", "ohsmc", "--data", "diabetes", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit):
        cli.main(["fit", "--model", "pbnn", "--method", "nuts", "--data", "diabetes", "--out", str(tmp_path / "b")])
