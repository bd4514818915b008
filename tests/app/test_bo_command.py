"""``probnets bo``: a tiny run writes bo.json and the regret figure; bad options fail before any output."""

import json

import pytest

from probnets_app.cli import main


def test_cli_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["bo", "--problem", "branin", "--surrogate", "gp", "--iterations", "2", "--n-init", "4",
                 "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "bo.json").read_text())
    assert len(record["best"]) == 3 and len(record["X"]) == 6
    assert (out / "regret.png").stat().st_size > 0
    assert "regret" in capsys.readouterr().out


def test_cli_rejects_bad_options_without_output(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["bo", "--problem", "branin", "--q", "0", "--out", str(out)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["bo", "--problem", "branincurrin", "--acquisition", "qucb", "--out", str(out)])
    assert not out.exists()


def test_surrogate_options_reach_the_fit_and_the_record(tmp_path):
    out = tmp_path / "run"
    assert main(["bo", "--problem", "branin", "--surrogate", "mp-gelu-bnn", "--surrogate-option",
                 "activation=exact-gelu", "--surrogate-option", "widths=(8,)", "--surrogate-option", "num_steps=20",
                 "--iterations", "1", "--n-init", "4", "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "bo.json").read_text())
    assert record["surrogate_options"] == {"activation": "exact-gelu", "widths": [8], "num_steps": 20}


@pytest.mark.parametrize("option, message", [("not_an_option=1", "does not take the option(s) ['not_an_option']"),
                                             ("widths", "expected NAME=VALUE"),
                                             ("num_steps=1 --surrogate-option num_steps=2", "at most once")])
def test_bad_surrogate_options_fail_before_any_evaluation(tmp_path, capsys, option, message):
    out = tmp_path / "run"
    extra = [part for pair in option.split(" --surrogate-option ") for part in ("--surrogate-option", pair)]
    with pytest.raises(SystemExit) as exc:
        main(["bo", "--problem", "branin", "--surrogate", "mp-gelu-bnn", *extra, "--out", str(out)])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_run_bo_checks_options_before_the_design():
    from surrogates import run_bo

    with pytest.raises(ValueError, match="'gp' does not take the option"):
        run_bo("branin", "gp", surrogate_options={"widths": (8,)}, iterations=0)


def test_bo_help_imports_neither_torch_nor_botorch_and_lists_every_name():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from probnets_app import cli; p = cli.build_parser(['bo']); "
            "print([m for m in ('torch', 'botorch', 'surrogates') if m in sys.modules]); "
            "acts = {x.dest: x for x in p._subparsers._group_actions[0].choices['bo']._actions}; "
            "print(';'.join(','.join(acts[d].choices) for d in ('problem', 'surrogate', 'acquisition')))")
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo,
                         env={"PYTHONPATH": str(repo), "PATH": ""}).stdout.splitlines()
    from surrogates import KINDS, PROBLEMS
    from surrogates.names import MULTI_OBJECTIVE, SINGLE_OBJECTIVE

    assert out[0] == "[]"
    problems, kinds, acquisitions = (part.split(",") for part in out[1].split(";"))
    assert problems == list(PROBLEMS) and sorted(kinds) == sorted(KINDS)
    assert acquisitions == list(SINGLE_OBJECTIVE + MULTI_OBJECTIVE)
