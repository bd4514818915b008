"""``probnets fit --distributed``: the documented torchrun launch end to end, and a clear error without torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probnets_app import cli

REPO = Path(__file__).resolve().parents[2]
TINY = ["--chains", "2", "--warmup", "20", "--samples", "20", "--no-progress", "--widths", "10"]


def test_distributed_without_torchrun_is_a_usage_error(monkeypatch, capsys, tmp_path):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", "--method", "sgld", "--data", "diabetes", "--distributed", "data",
                  "--out", str(tmp_path / "run"), *TINY])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "torchrun" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_torchrun_data_parallel_fit_writes_one_report(tmp_path):
    script = Path(sys.executable).parent / "probnets"
    if not script.exists():
        pytest.skip("the probnets console script is not installed next to this interpreter")
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
               str(script), "fit", "--method", "sghmc", "--data", "diabetes", "--distributed", "data",
               "--out", str(out), *TINY]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["sampler"]["method"] == "sghmc" and report["sampler"]["num_chains"] == 2
    assert report["data"]["n_train"] == 397  # the report describes the whole training set, not a shard
    assert done.stdout.count("Output files:") == 1
