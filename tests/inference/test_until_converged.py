"""``inference.sample(..., until_converged=True)``: rounds of doubling warm-up and draws until R-hat and ESS
pass or the budget runs out, saying which happened, resumable from per-round checkpoints."""

import warnings

import pytest
import torch

import inference
from inference.diagnostics import ConvergenceWarning

SHORT = dict(method="nuts", num_chains=4, num_warmup=10, num_samples=10, progress=False)


def _normal(theta):
    return -0.5 * (theta ** 2).sum(-1)


def test_rounds_grow_until_the_thresholds_pass():
    post = inference.sample(_normal, dim=2, until_converged=True, min_ess=200, **SHORT)
    outcome = post.info["until_converged"]
    assert outcome["converged"] and outcome["reason"] == "converged"
    last = outcome["history"][-1]
    assert last["max_rhat"] <= 1.01 and min(last["min_ess_bulk"], last["min_ess_tail"]) >= 200
    assert [h["num_samples"] for h in outcome["history"]] == [10 * 2 ** r for r in range(outcome["rounds"])]
    assert post.num_draws == last["num_samples"]
    assert all(not (h["max_rhat"] <= 1.01 and min(h["min_ess_bulk"], h["min_ess_tail"]) >= 200)
               for h in outcome["history"][:-1])


def test_an_exhausted_budget_is_reported_and_warned_about():
    with pytest.warns(ConvergenceWarning, match="not converged within 2 rounds"):
        post = inference.sample(_normal, dim=2, until_converged=True, max_rounds=2, min_ess=10_000, **SHORT)
    outcome = post.info["until_converged"]
    assert not outcome["converged"] and outcome["reason"] == "max_rounds" and outcome["rounds"] == 2


def test_the_time_budget_stops_before_a_round_that_would_pass_it():
    with pytest.warns(ConvergenceWarning, match="time budget"):
        post = inference.sample(_normal, dim=2, until_converged=True, max_time=1e-6, min_ess=10_000, **SHORT)
    assert post.info["until_converged"]["reason"] == "max_time" and post.info["until_converged"]["rounds"] == 1


def test_a_rerun_with_the_same_checkpoint_restores_every_round(tmp_path):
    path = tmp_path / "run.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = inference.sample(_normal, dim=2, until_converged=True, max_rounds=3, min_ess=10_000,
                                 checkpoint=path, **SHORT)
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"run.ckpt.round{r}" for r in range(3)]
        again = inference.sample(_normal, dim=2, until_converged=True, max_rounds=3, min_ess=10_000,
                                 checkpoint=path, **SHORT)
    assert torch.equal(first.samples, again.samples)


class _TickClock:
    """``time.perf_counter`` advancing one second per call, so that where a deadline falls is deterministic."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1.0
        return self.now


def test_a_run_stops_at_its_deadline_with_the_draws_kept_so_far(monkeypatch):
    from inference import runner

    full = inference.sample(_normal, dim=2, seed=3, **SHORT)
    monkeypatch.setattr(runner, "time", _TickClock())
    with runner.stop_at(16.0):  # tick 1 starts the loop, tick 2 + i checks iteration i: stops after iteration 15
        cut = inference.sample(_normal, dim=2, seed=3, **SHORT)
    assert cut.info["stopped_at_deadline"] and cut.num_draws == 6  # iterations 10..15 of 20 kept
    assert torch.equal(cut.samples, full.samples[:, :6])
    assert "stopped_at_deadline" not in full.info


def test_a_deadline_in_warm_up_raises(monkeypatch):
    from inference import runner

    monkeypatch.setattr(runner, "time", _TickClock())
    with runner.stop_at(5.0), pytest.raises(runner.DeadlineReached, match="before the first draw"):
        inference.sample(_normal, dim=2, **SHORT)


@pytest.mark.parametrize("max_time, rounds, draws", [(40.0, 2, "some"), (12.0, 1, 10)])
def test_a_round_running_past_the_budget_stops_there(monkeypatch, max_time, rounds, draws):
    """Round 1 (20 + 20 iterations) starts, as its predicted time fits, and meets the budget: in its draws
    (some kept) or in its warm-up (dropped: round 0's posterior is returned)."""
    from inference import runner, until_converged

    clock = _TickClock()
    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(until_converged, "time", clock)
    with pytest.warns(ConvergenceWarning, match="time budget"):
        post = inference.sample(_normal, dim=2, until_converged=True, max_time=max_time, min_ess=10_000, **SHORT)
    outcome = post.info["until_converged"]
    assert outcome["reason"] == "max_time" and outcome["rounds"] == rounds
    if draws == "some":
        assert 0 < post.num_draws < 20 and outcome["history"][-1]["num_draws"] == post.num_draws
        assert post.info["stopped_at_deadline"]
    else:
        assert post.num_draws == draws and "stopped_at_deadline" not in post.info
