"""A run killed with SIGKILL and resumed with the same seed gives draws identical to an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import checkpoint_worker as worker
from inference import checkpoint as ckpt
from inference import registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("method", list(registry.SAMPLERS))
def test_resume_after_sigkill_is_bit_identical(method, tmp_path):
    path = tmp_path / "run.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)])}
    proc = subprocess.Popen([sys.executable, str(Path(worker.__file__)), method, str(path), "0.002"], env=env)
    killed_at = None
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if path.exists():
                try:
                    iteration = ckpt.load(path)["iteration"]
                except Exception:  # noqa: BLE001 - the file may be replaced while we read it
                    iteration = 0
                if iteration >= 70:  # past warm-up, into sampling
                    os.kill(proc.pid, signal.SIGKILL)
                    killed_at = iteration
                    break
            time.sleep(0.01)
    finally:
        proc.wait(timeout=30)
    assert killed_at is not None, "the worker finished or stalled before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    total = worker.SETTINGS["num_warmup"] + worker.SETTINGS["num_samples"]
    assert ckpt.load(path)["iteration"] < total

    resumed = worker.run(method, path)
    uninterrupted = worker.run(method, None)
    assert torch.equal(resumed.samples, uninterrupted.samples)
    for name, value in uninterrupted.sample_stats.items():
        assert torch.equal(resumed.sample_stats[name], value), name
    for name, value in uninterrupted.warmup_stats.items():
        assert torch.equal(resumed.warmup_stats[name], value), name


def test_checkpoint_from_another_configuration_is_refused(tmp_path):
    path = tmp_path / "run.ckpt"
    worker.run("nuts", path)
    with pytest.raises(ValueError, match="different run configuration"):
        worker.run("chees", path)


def test_completed_checkpoint_returns_the_same_posterior(tmp_path):
    path = tmp_path / "run.ckpt"
    first = worker.run("nuts", path)
    again = worker.run("nuts", path)  # nothing left to run: restored from the file
    assert torch.equal(first.samples, again.samples)
