"""SamplePosterior: predictive, save/load round trip, ArviZ export with ArviZ-named statistics."""

import arviz as az
import numpy as np
import pytest
import torch

import inference
from inference import diagnostics
from inference.posterior import SamplePosterior
from probnets import BNN
from tests_support import make_regression


@pytest.fixture(scope="module")
def fitted():
    x, y = make_regression(30, 2)
    model = BNN(2, [4])
    post = inference.sample(model, (x, y), method="nuts", num_chains=2, num_warmup=40, num_samples=25, seed=0,
                            progress=False)
    return model, x, y, post


def test_shapes_and_stats(fitted):
    model, x, y, post = fitted
    assert post.samples.shape == (2, 25, model.spec.dim)
    for name in ("lp", "acceptance_rate", "step_size", "n_steps", "tree_depth", "diverging", "energy"):
        assert post.sample_stats[name].shape == (2, 25), name
    assert post.sample_stats["diverging"].dtype == torch.bool
    assert (post.sample_stats["n_steps"] <= 2 ** post.sample_stats["tree_depth"]).all()
    assert post.warmup_stats["n_steps"].shape == (2, 40)
    assert post.info["grad_evals"] >= post.num_grad_evals > 0
    assert post.params()["layers.0.weight"].shape == (2, 25, 4, 2)


def test_predictive_uses_all_or_a_subset_of_draws(fitted):
    model, x, y, post = fitted
    assert post.predictive(model, x).f.shape == (50, 30, 1)
    sub = post.predictive(model, x, num_samples=10, generator=torch.Generator().manual_seed(0))
    assert sub.f.shape == (10, 30, 1)
    assert post.f_draws(model, x).shape == (2, 25, 30, 1)


def test_save_load_round_trip(fitted, tmp_path):
    model, x, y, post = fitted
    path = tmp_path / "post.pt"
    post.save(path)
    loaded = SamplePosterior.load(path)
    assert torch.equal(loaded.samples, post.samples)
    for k, v in post.sample_stats.items():
        assert torch.equal(loaded.sample_stats[k], v)
    assert loaded.spec == post.spec
    assert loaded.info["method"] == "nuts"
    torch.testing.assert_close(loaded.predictive(model, x).mean, post.predictive(model, x).mean)


def test_load_ignores_kinds_from_outside_the_package(fitted, tmp_path):
    _, _, _, post = fitted
    payload = post._payload()
    payload["kind"] = "os.system"
    torch.save(payload, tmp_path / "post.pt")
    assert type(SamplePosterior.load(tmp_path / "post.pt")) is SamplePosterior


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": 99}, path)
    with pytest.raises(ValueError, match="not a probnets"):
        SamplePosterior.load(path)
    from inference.gaussian_posterior import GaussianPosterior

    GaussianPosterior(torch.zeros(1, 3), torch.ones(1, 3)).save(path)
    with pytest.raises(ValueError, match="GaussianPosterior.load"):
        SamplePosterior.load(path)


def test_to_arviz_and_netcdf(fitted, tmp_path):
    model, x, y, post = fitted
    idata = post.to_arviz(model, (x, y))
    assert set(idata.groups()) >= {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    assert idata.posterior["layers.0.weight"].shape == (2, 25, 4, 2)
    assert idata.log_likelihood["y"].shape == (2, 25, 30)
    assert set(idata.sample_stats.data_vars) >= {"lp", "acceptance_rate", "step_size", "n_steps", "tree_depth",
                                                  "diverging", "energy"}
    assert idata.attrs["inference_library"] == "probnets"
    # Log-likelihood agrees with the model, and ArviZ's own diagnostics agree with ours.
    ll = model.log_likelihood(post.samples[0, 0], model.prepare_batch((x, y)))
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0, 0], ll.numpy(), rtol=1e-10)
    np.testing.assert_allclose(az.rhat(idata, var_names=["layers.1.bias"])["layers.1.bias"].values.ravel(),
                               diagnostics.split_rhat(post.params()["layers.1.bias"]).numpy(), rtol=1e-8)
    path = tmp_path / "post.nc"
    idata.to_netcdf(str(path))
    assert az.from_netcdf(str(path)).posterior["layers.0.bias"].shape == (2, 25, 4)


def test_resample_by_weight():
    samples = torch.arange(6, dtype=torch.float64).reshape(1, 6, 1)
    log_w = torch.full((1, 6), -torch.inf, dtype=torch.float64)
    log_w[0, 4] = 0.0
    post = SamplePosterior(samples, log_weights=log_w)
    draws = post.sample((100,), generator=torch.Generator().manual_seed(0))
    assert draws.shape == (100, 1) and bool((draws == 4).all())


def test_constructor_checks():
    with pytest.raises(ValueError, match="chains, draws, D"):
        SamplePosterior(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="log_weights"):
        SamplePosterior(torch.zeros(2, 3, 1), log_weights=torch.zeros(3))
