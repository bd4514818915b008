"""The BO benchmark's run log: a rerun with the same settings reuses finished runs; other settings run again."""

import importlib.util
import json
from pathlib import Path

_BO_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bo.py"


def _load_bo():
    spec = importlib.util.spec_from_file_location("benchmarks_bo_under_test", _BO_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rerun_reuses_logged_runs(tmp_path):
    bo = _load_bo()
    argv = ["--quick", "--problems", "branin", "--surrogates", "gp", "--skip-timing", "--out", str(tmp_path)]
    log = tmp_path / "bo_quick_runs.jsonl"

    assert bo.main(argv) == 0
    first = json.loads((tmp_path / "bo_quick.json").read_text())["runs"]
    assert len(log.read_text().splitlines()) == 1
    assert first[0]["evaluations"] == 11

    assert bo.main(argv) == 0
    again = json.loads((tmp_path / "bo_quick.json").read_text())["runs"]
    assert len(log.read_text().splitlines()) == 1
    assert again == first

    assert bo.main(argv + ["--iterations", "2"]) == 0
    longer = json.loads((tmp_path / "bo_quick.json").read_text())["runs"]
    assert len(log.read_text().splitlines()) == 2
    assert longer[0]["evaluations"] == 12
    assert not list((tmp_path / "checkpoints").glob("*.pt"))
