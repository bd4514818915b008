"""Smoke tests of the protocol-H1 peer runners in benchmarks/peers.py (tiny settings: shapes, finiteness,
bookkeeping).  Each peer runs in its own subprocess, so these take a few seconds to tens of seconds."""

import numpy as np
import pytest

from probnets.datasets import diabetes
from tests_support import load_script


def _load_peers():
    return load_script("benchmarks/peers.py")


@pytest.fixture(scope="module")
def peers():
    return _load_peers()


@pytest.fixture(scope="module")
def split():
    return diabetes()


def _check_common(res, split, chains, draws):
    n_test = split.x_test.shape[0]
    assert res["f_test"].shape == (chains, draws, n_test)
    assert res["f_test"].dtype == np.float64
    assert np.isfinite(res["f_test"]).all()
    assert res["sigma"].shape == (chains, draws)
    assert np.isfinite(res["sigma"]).all() and (res["sigma"] > 0).all()
    assert res["num_steps"].shape == (chains, draws) and (res["num_steps"] >= 1).all()
    assert res["step_size"].shape == (chains,) and (res["step_size"] > 0).all()
    assert res["wall_time"] > 0 and res["cpu_time"] > 0
    assert res["grad_evals_sampling"] == int(res["num_steps"].sum())
    assert res["grad_evals_warmup"] > 0
    assert res["grad_evals"] == res["grad_evals_warmup"] + res["grad_evals_sampling"]
    assert 0 <= res["num_divergences"] <= chains * draws
    assert len(res["num_divergences_per_chain"]) == chains
    assert 1 <= res["mean_tree_depth"] <= 10
    assert res["mean_steps_per_draw"] == pytest.approx(res["num_steps"].mean())
    assert 0 <= res["mean_accept_prob"] <= 1
    s = res["settings"]
    assert (s["num_chains"], s["num_samples"], s["dtype"]) == (chains, draws, "float32")
    assert isinstance(res["library_version"], str) and res["library_version"]


def test_numpyro_peer_smoke(peers, split):
    pytest.importorskip("numpyro")
    pytest.importorskip("jax")
    res = peers.run_numpyro_nuts(split, num_chains=2, num_warmup=10, num_samples=10, seed=1)
    _check_common(res, split, chains=2, draws=10)
    assert res["peer"] == "numpyro_nuts"
    assert res["settings"]["chain_method"] == "parallel"
    # the untimed counting run must reproduce the timed run exactly (same seed, same program)
    assert res["grad_evals_warmup_exact"] is True
    summary = peers.summarise(res, split)
    assert all(np.isfinite(v) for v in summary.values())


def test_pyro_peer_smoke(peers, split):
    pytest.importorskip("pyro")
    res = peers.run_pyro_nuts(split, num_chains=2, num_warmup=5, num_samples=5, seed=1)
    _check_common(res, split, chains=2, draws=5)
    assert res["peer"] == "pyro_nuts"
    assert res["grad_evals_all"] >= res["grad_evals"]
    summary = peers.summarise(res, split)
    assert np.isfinite(summary["rmse"]) and np.isfinite(summary["nll"])
