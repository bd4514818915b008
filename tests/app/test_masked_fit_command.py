"""``probnets fit --model masked-bnn``: a tiny run end to end (report, figures, active-node trace)."""

import json

from probnets_app import cli

TINY = ["--chains", "2", "--warmup", "10", "--samples", "12", "--thin", "3", "--widths", "8", "--mask-updates", "2",
        "--leapfrog-steps", "5", "--no-progress"]


def test_masked_fit_writes_report_and_active_node_trace(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["fit", "--model", "masked-bnn", "--data", "diabetes", "--out", str(out), *TINY]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sampler"]["method"] == "masked_gibbs" and report["sampler"]["num_chains"] == 2
    assert report["sampler"]["thin"] == 3 and report["sampler"]["num_mask_updates"] == 2
    assert report["model"]["repr"].startswith("MaskedBNN(10 -> [8] -> 1, activation='relu'")
    assert 0.0 <= report["extra"]["mean_active_fraction"]["layer_0"] <= 1.0
    assert 20 < report["metrics"]["rmse"] < 200
    for name in ("predictions.png", "calibration.png", "trace.png", "active_nodes.png"):
        assert (out / name).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "Mean active fraction" in printed and str(out / "active_nodes.png") in printed


def test_masked_fit_rejects_bad_model_settings(tmp_path, capsys):
    code = None
    try:
        code = cli.main(["fit", "--model", "masked-bnn", "--data", "diabetes", "--out", str(tmp_path / "x"),
                         "--mask-lambda", "-1", *TINY])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert "mask_lambda" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
