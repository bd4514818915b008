"""``probnets fit``/``bo`` on a user's own data and folders: checkpoints of another run are refused, output
paths are checked before any work and cleared of an earlier run's files, sampler options reach the sampler,
CSV columns can be chosen and a row index is warned about."""

import json
from pathlib import Path

import pytest

from probnets_app import cli

TINY = ["--method", "hmc", "--chains", "2", "--warmup", "6", "--samples", "6", "--no-progress", "--widths", "3"]


def _csv(path: Path, rows: int = 30, index: str | None = None) -> Path:
    header = ([index] if index else []) + ["a", "b", "target"]
    lines = [",".join(header)]
    for i in range(rows):
        cells = ([str(i + 1)] if index else []) + [f"{(i * 7) % 11 * 0.1:.2f}", f"{(i % 7) * 1.5:.2f}",
                                                     f"{((i * 7) % 11) * 0.3 + (i % 3):.2f}"]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit(tmp_path, *extra, out="out", data="diabetes"):
    return cli.main(["fit", "--data", data, "--out", str(tmp_path / out), *TINY, *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("probnets: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.mark.parametrize("change,named", [(["--activation", "relu"], "activation"),
                                          (["--split-seed", "1"], "split_seed")])
def test_a_checkpoint_of_another_run_is_refused(change, named, tmp_path, capsys):
    ckpt = tmp_path / "run.ckpt"
    assert _fit(tmp_path, "--checkpoint", str(ckpt)) == 0
    capsys.readouterr()
    assert _fit(tmp_path, "--checkpoint", str(ckpt), *change, out="out2") == 2
    line = _one_error_line(capsys)
    assert "different run configuration" in line and named in line
    assert not (tmp_path / "out2").exists()


def test_out_under_a_file_fails_before_sampling(tmp_path, capsys):
    blocker = tmp_path / "results.csv"
    blocker.write_text("x\n")
    assert _fit(tmp_path, out="results.csv/run") == 2
    line = _one_error_line(capsys)
    assert "is a file, not a directory" in line
    assert "hmc with" not in capsys.readouterr().err  # the sampling banner never came


def test_checkpoint_under_a_file_fails_before_sampling(tmp_path, capsys):
    (tmp_path / "f").write_text("x\n")
    assert _fit(tmp_path, "--checkpoint", str(tmp_path / "f" / "run.ckpt")) == 2
    assert "--checkpoint" in _one_error_line(capsys)


def test_bo_out_that_is_a_file_fails_before_the_loop(tmp_path, capsys):
    out = tmp_path / "bo.txt"
    out.write_text("x\n")
    code = cli.main(["bo", "--problem", "branin", "--iterations", "1", "--n-init", "2", "--no-progress",
                     "--out", str(out)])
    assert code == 2
    assert "exists and is not a directory" in _one_error_line(capsys)


def test_a_reused_out_folder_keeps_no_file_of_the_earlier_run(tmp_path):
    out = tmp_path / "out"
    assert _fit(tmp_path, "--save-posterior") == 0
    (out / "notes.txt").write_text("mine\n")
    assert (out / "posterior.pt").exists()
    assert _fit(tmp_path) == 0
    assert not (out / "posterior.pt").exists()  # not this run's: removed
    assert (out / "notes.txt").read_text() == "mine\n"  # not ours: kept
    assert (out / "report.json").exists()


def test_sampler_options_reach_the_sampler_and_saturated_trees_are_reported(tmp_path):
    assert _fit(tmp_path, "--method", "nuts", "--max-tree-depth", "1", "--target-accept", "0.95") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["sampler"]["max_tree_depth"] == 1 and report["sampler"]["target_accept"] == 0.95
    assert any("maximum tree depth (1)" in w for w in report["function_space_warnings"])


@pytest.mark.parametrize("option,value", [("--max-tree-depth", "5"), ("--target-accept", "0.9")])
def test_a_sampler_option_the_method_lacks_is_a_usage_error(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _fit(tmp_path, "--method", "sgld", option, value)
    assert exit_info.value.code == 2
    assert "has no" in capsys.readouterr().err


def test_a_row_index_column_is_warned_about_and_can_be_dropped(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", index="rownames")
    assert _fit(tmp_path, "--target", "target", data=str(data)) == 0
    err = capsys.readouterr().err
    assert "column 'rownames' looks like a row index" in err and "--drop rownames" in err
    assert json.loads((tmp_path / "out" / "report.json").read_text())["data"]["n_features"] == 3
    assert _fit(tmp_path, "--target", "target", "--drop", "rownames", data=str(data)) == 0
    assert "row index" not in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "report.json").read_text())["data"]["n_features"] == 2


def test_features_select_columns_and_unknown_names_are_errors(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", index="id")
    assert _fit(tmp_path, "--target", "target", "--features", "b", data=str(data)) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["data"]["n_features"] == 1
    capsys.readouterr()
    assert _fit(tmp_path, "--target", "target", "--features", "a,nope", data=str(data)) == 2
    assert "--features names no column 'nope'" in _one_error_line(capsys)
    assert _fit(tmp_path, "--target", "target", "--drop", "a,b,id", data=str(data)) == 2
    assert "no feature columns left" in _one_error_line(capsys)


def test_a_non_numeric_column_that_is_dropped_is_not_read(tmp_path):
    data = tmp_path / "d.csv"
    _csv(data)
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[0] + ",name"] + [f"{line},row{i}" for i, line in enumerate(lines[1:])]) + "\n")
    assert _fit(tmp_path, "--target", "target", "--drop", "name", data=str(data)) == 0


def test_fit_help_imports_no_torch_and_lists_every_registered_sampler():
    import subprocess
    import sys

    code = ("import sys; from probnets_app import cli; p = cli.build_parser(['fit']); "
            "print([m for m in ('torch', 'inference') if m in sys.modules]); "
            "a = [x for x in p._subparsers._group_actions[0].choices['fit']._actions if x.dest == 'method'][0]; "
            "print(','.join(a.choices))")
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo,
                         env={"PYTHONPATH": str(repo), "PATH": ""}).stdout.splitlines()
    from inference import registry
    from inference.vi import VI_METHODS

    assert out[0] == "[]"
    choices = out[1].split(",")
    assert choices[:len(registry.SAMPLERS)] == list(registry.SAMPLERS)
    assert set(VI_METHODS) <= set(choices)


def test_until_converged_reports_which_happened(tmp_path, capsys):
    assert _fit(tmp_path, "--until-converged", "--max-time", "0.001") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    outcome = report["extra"]["until_converged"]
    assert outcome["reason"] == "max_time" and outcome["rounds"] == 1 and not outcome["converged"]
    assert "--until-converged: NOT converged after 1 round(s) (max_time" in capsys.readouterr().err


def test_max_time_needs_until_converged(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _fit(tmp_path, "--max-time", "10")
    assert "applies with --until-converged only" in capsys.readouterr().err
