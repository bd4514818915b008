"""``probnets fit``: a tiny fit end to end, data validation before any output, the entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probnets_app import cli

REPO = Path(__file__).resolve().parents[2]
TINY = ["--chains", "8", "--warmup", "30", "--samples", "20", "--no-progress", "--widths", "10"]
REPORT_KEYS = {"task", "model", "data", "sampler", "level", "metrics", "diagnostics", "summary", "warnings",
               "function_space_warnings", "notes", "figures"}


def test_fit_diabetes_writes_report_and_figures(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["fit", "--model", "bnn", "--method", "chees", "--data", "diabetes", "--out", str(out), *TINY])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert set(report["metrics"]) >= {"rmse", "nll", "crps", "coverage_0.9"}
    assert set(report["diagnostics"]) >= {"max_rhat", "min_ess_bulk", "min_ess_tail", "num_divergences", "wall_time",
                                          "grad_evals", "ess_per_second"}
    assert report["sampler"]["method"] == "chees" and report["sampler"]["num_chains"] == 8
    assert report["data"]["n_test"] == 45 and report["data"]["n_train"] == 397
    assert 20 < report["metrics"]["rmse"] < 120  # original units (diabetes targets span 25..346)
    assert report["summary"]["rows"][0]["name"] == "noise_scale"
    for name in ("predictions.png", "calibration.png", "trace.png"):
        assert (out / name).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "RMSE" in printed and "R-hat" in printed and str(out / "report.json") in printed


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _csv(rows: int, *, bad=None) -> str:
    lines = ["a,b,target"]
    for i in range(rows):
        lines.append(f"{i * 0.1:.2f},{(i % 7) * 1.5:.2f},{i * 0.3 + (i % 3):.2f}")
    if bad is not None:
        row, text = bad
        lines[row] = text
    return "\n".join(lines) + "\n"


CSV_ERRORS = {
    "missing file": (None, ["--target", "target"], "does not exist"),
    "missing target": (_csv(30), ["--target", "nope"], "available columns: a, b, target"),
    "no target given": (_csv(30), [], "--target is required"),
    "non-numeric": (_csv(30, bad=(5, "0.1,abc,2.0")), ["--target", "target"],
                    "non-numeric value 'abc' in column 'b', row 5"),
    "empty cell": (_csv(30, bad=(7, "0.1,,2.0")), ["--target", "target"], "empty cell in column 'b', row 7"),
    "nan": (_csv(30, bad=(3, "nan,1.0,2.0")), ["--target", "target"], "missing value (NaN) in column 'a', row 3"),
    "ragged row": (_csv(30, bad=(4, "0.1,2.0")), ["--target", "target"], "data row 4 (line 5) has 2 cells"),
    "too few rows": (_csv(8), ["--target", "target"], "too few rows"),
    "tiny test split": (_csv(12), ["--target", "target", "--test-fraction", "0.05"], "too few rows"),
    "constant target": ("a,target\n" + "".join(f"{i},1.0\n" for i in range(30)), ["--target", "target"], "constant"),
}


@pytest.mark.parametrize("case", list(CSV_ERRORS))
def test_csv_errors_exit_2_with_one_line_and_no_output(case, tmp_path, capsys):
    text, extra, fragment = CSV_ERRORS[case]
    data = tmp_path / "data.csv"
    if text is not None:
        _write(data, text)
    out = tmp_path / "out"
    code = cli.main(["fit", "--data", str(data), "--out", str(out), *extra, *TINY])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("probnets: error:")
    assert fragment in lines[0]
    assert not out.exists()


def test_csv_fit_runs(tmp_path, capsys):
    data = _write(tmp_path / "data.csv", _csv(40))
    out = tmp_path / "out"
    code = cli.main(["fit", "--data", str(data), "--target", "target", "--out", str(out), "--method", "hmc",
                     "--chains", "2", "--warmup", "10", "--samples", "10", "--no-progress", "--widths", "5"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["target"] == "target" and report["data"]["n_features"] == 2
    assert report["data"]["n_test"] == 4


@pytest.mark.parametrize("bad", [["--method", "gibbs"], ["--chains", "0"], ["--widths", "50,-1"], ["--widths", "a"],
                                 ["--test-fraction", "1.5"], ["--dtype", "float16"],
                                 ["--activation", "swish"], ["--warmup", "-1"]])
def test_bad_options_are_argparse_errors(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "--data", "diabetes", "--out", str(tmp_path / "out"), *bad])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_is_a_file(tmp_path, capsys):
    out = _write(tmp_path / "file", "x")
    assert cli.main(["fit", "--data", "diabetes", "--out", str(out), *TINY]) == 2
    assert capsys.readouterr().err.startswith("probnets: error:")


def test_entry_point_help():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = Path(sys.executable).parent / "probnets"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "probnets_app.cli"]
    result = subprocess.run([*command, "fit", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--method" in result.stdout and "chees" in result.stdout
    result = subprocess.run([sys.executable, "-m", "probnets_app.cli", "--help"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0 and "fit" in result.stdout


@pytest.mark.parametrize("name", ["normal", "fan-in", "cauchy"])
def test_weight_prior_option_builds_the_named_prior(name):
    import torch

    from probnets_app.fit import weight_prior

    prior = weight_prior(name, 2.0)
    if name == "fan-in":  # N(0, s^2 / fan_in) on weights, N(0, s^2) on biases
        assert float(prior("w", torch.Size([50, 13])).scale) == pytest.approx(2.0 / 13 ** 0.5)
        assert float(prior("b", torch.Size([50])).scale) == pytest.approx(2.0)
    else:
        assert type(prior).__name__ == name.capitalize() and float(prior.scale) == 2.0


def test_fit_with_a_fan_in_prior_records_it(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["fit", "--data", "diabetes", "--out", str(out), "--weight-prior", "fan-in", "--prior-scale",
                     "1.5", *TINY]) == 0
    extra = json.loads((out / "report.json").read_text())["extra"]
    assert (extra["weight_prior"], extra["prior_scale"]) == ("fan-in", 1.5)


@pytest.mark.parametrize("route", [["--model", "pbnn"], ["--method", "mp-gelu"]])
def test_weight_prior_is_refused_where_the_method_sets_its_own(route, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "--data", "diabetes", "--out", str(tmp_path / "out"), *route, "--weight-prior", "normal"])
    assert exc.value.code == 2
    assert "argument --weight-prior" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
