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
