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


def test_blackjax_log_density_is_h1s_model(peers, split):
    """Differences of the JAX log joint between random points equal those of an independent scipy evaluation
    of the same model (N(0, 1) weights, LogNormal(-1, 1) noise scale with its log Jacobian, Gaussian likelihood)."""
    pytest.importorskip("jax")
    from scipy import stats

    x, y = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (split.x_train, split.y_train))
    logdensity, unflatten, dim = peers._jax_log_density(x, y[:, 0])
    rng = np.random.default_rng(0)
    thetas = rng.normal(scale=0.3, size=(3, dim)).astype(np.float32)

    def reference(theta):
        p = {k: np.asarray(v, dtype=np.float64) for k, v in unflatten(theta).items()}
        f = np.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        sigma = np.exp(p["log_sigma"])
        weights = np.concatenate([np.ravel(p[k]) for k in ("w1", "b1", "w2", "b2")])
        return (stats.norm.logpdf(weights).sum() + stats.lognorm.logpdf(sigma, s=1.0, scale=np.exp(-1.0))
                + p["log_sigma"] + stats.norm.logpdf(y[:, 0], f, sigma).sum())

    got = np.array([float(logdensity(t)) for t in thetas])
    want = np.array([reference(t) for t in thetas])
    np.testing.assert_allclose(got - got[0], want - want[0], rtol=1e-4, atol=1e-2)


def test_blackjax_chees_peer_smoke(peers, split):
    pytest.importorskip("blackjax")
    res = peers.run_blackjax_chees(split, num_chains=4, num_warmup=10, num_samples=5, seed=1)
    _check_common(res, split, chains=4, draws=5)
    assert res["peer"] == "blackjax_chees"
    summary = peers.summarise(res, split)
    assert np.isfinite(summary["rmse"]) and np.isfinite(summary["nll"])
