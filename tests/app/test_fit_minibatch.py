"""``probnets fit`` with SG-MCMC: ``--batch-size``, ``--epochs`` and ``--thin`` (tiny runs), the start message
counting the draws actually kept, and parser errors for full-batch methods and conflicting options."""

import json

import pytest

from probnets_app import cli

TINY = ["--chains", "2", "--warmup", "10", "--no-progress", "--widths", "5"]


@pytest.mark.parametrize("method", ["sgld", "psgld", "sghmc", "structured-sghmc"])
def test_minibatch_methods_run_on_diabetes_with_epochs(method, tmp_path, capsys):
    """397 training rows in batches of 100: 4 batches per epoch, 5 epochs = 20 iterations, thinned by 2."""
    out = tmp_path / "run"
    code = cli.main(["fit", "--method", method, "--data", "diabetes", "--out", str(out), "--batch-size", "100",
                     "--epochs", "5", "--thin", "2", *TINY])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sampler"]["method"] == method and report["sampler"]["batch_size"] == 100
    assert report["sampler"]["num_samples"] == 20 and report["sampler"]["thin"] == 2
    start = capsys.readouterr().err
    assert "10 warm-up + 20 iterations thinned by 2:" in start and "(5 epochs), batches of 100" in start
    assert ": 10 draws" in start


def test_cyclical_start_message_says_at_most_and_a_run_shorter_than_a_cycle_is_an_error(tmp_path, capsys):
    """Cyclical samplers keep draws only in each cycle's sampling phase (default cycles of 1000 iterations)."""
    code = cli.main(["fit", "--method", "csgld", "--data", "diabetes", "--out", str(tmp_path / "o"), "--samples",
                     "20", "--thin", "2", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "20 iterations thinned by 2: at most 10 draws" in err
    assert "no iteration after warm-up is in the sampler's sampling phase" in err


def test_sgld_on_a_csv_with_samples_and_thin(tmp_path, capsys):
    lines = ["a,b,target"] + [f"{i * 0.1:.2f},{(i % 7) * 1.5:.2f},{i * 0.3 + (i % 3):.2f}" for i in range(40)]
    data = tmp_path / "data.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = cli.main(["fit", "--method", "sgld", "--data", str(data), "--target", "target", "--out", str(out),
                     "--batch-size", "8", "--samples", "30", "--thin", "3", *TINY])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sampler"]["batch_size"] == 8 and report["sampler"]["num_samples"] == 30
    assert "10 warm-up + 30 iterations thinned by 3: 10 draws" in capsys.readouterr().err


def test_start_message_counts_kept_draws_with_the_default_thinning(tmp_path, capsys):
    """sghmc keeps every 5th iteration by default: 20 iterations are 4 draws, not 20."""
    code = cli.main(["fit", "--method", "sghmc", "--data", "diabetes", "--out", str(tmp_path / "o"), "--samples",
                     "20", *TINY])
    assert code == 0
    assert "10 warm-up + 20 iterations thinned by 5: 4 draws" in capsys.readouterr().err


@pytest.mark.parametrize("bad, message", [
    (["--method", "nuts", "--batch-size", "32"], "argument --batch-size: only for minibatch methods"),
    (["--method", "chees", "--epochs", "2"], "argument --epochs: only for minibatch methods"),
    (["--method", "hmc", "--thin", "2"], "argument --thin: only for minibatch methods"),
    (["--method", "sgld", "--epochs", "2", "--samples", "10"], "argument --epochs: not allowed with"),
    (["--method", "sgld", "--samples", "10", "--thin", "20"], "argument --thin: 20 exceeds the 10"),
    (["--method", "sgld", "--batch-size", "0"], "argument --batch-size"),
    (["--method", "sgld", "--epochs", "-1"], "argument --epochs")])
def test_minibatch_options_are_parser_errors_where_they_do_not_apply(bad, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "--data", "diabetes", "--out", str(tmp_path / "out"), *bad, *TINY])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err
    assert not (tmp_path / "out").exists()
