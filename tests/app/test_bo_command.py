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
