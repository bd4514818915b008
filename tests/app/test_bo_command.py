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
