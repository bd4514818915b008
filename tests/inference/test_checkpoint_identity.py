"""A checkpoint is only ever resumed by the run that wrote it: any change to what determines the run
(model, priors, likelihood, data, starting points, sampler, options, dtype, seed, chains) is refused with a
``ValueError`` naming what differs, never answered with the other run's draws."""

import pyro.distributions as dist
import pytest
import torch

import inference
from inference import fingerprint
from probnets import BNN, Gaussian

SETTINGS = dict(method="hmc", num_chains=2, num_warmup=4, num_samples=4, progress=False, num_steps=3,
                check_convergence=False, run_info={"split_seed": 0})


def _data(seed=0, n=20):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, torch.sin(x[:, 0]) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)


def _model(activation="tanh", prior_scale=1.0, noise_loc=-1.0):
    return BNN(2, [3], activation=activation, prior=dist.Normal(0.0, prior_scale),
               likelihood=Gaussian(noise_prior=dist.LogNormal(noise_loc, 1.0)))


def _run(path, model=None, data=None, **changes):
    settings = {k: v for k, v in {**SETTINGS, **changes}.items() if v is not None}
    return inference.sample(model or _model(), data or _data(), checkpoint=path, **settings)


CHANGES = {
    "activation": (dict(model=_model(activation="relu")), "activation='relu'"),
    "prior": (dict(model=_model(prior_scale=2.0)), "prior"),
    "noise prior (likelihood)": (dict(model=_model(noise_loc=0.0)), "log density at the starting points"),
    "data": (dict(data=_data(seed=1)), "training data"),
    "seed": (dict(seed=1), "seed"),
    "chains": (dict(num_chains=3), "number of chains"),
    "method": (dict(method="nuts", num_steps=None), "method"),
    "option": (dict(num_steps=4), "num_steps"),
    "dtype": (dict(dtype=torch.float32), "dtype"),
    "run_info": (dict(run_info={"split_seed": 1}), "split_seed"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_run_refuses_the_checkpoint_and_names_the_change(change, tmp_path):
    path = tmp_path / "run.ckpt"
    _run(path)
    kwargs, named = CHANGES[change]
    with pytest.raises(ValueError, match="different run configuration") as info:
        _run(path, **kwargs)
    assert named in str(info.value)


def test_the_same_run_resumes_from_its_checkpoint(tmp_path):
    path = tmp_path / "run.ckpt"
    first = _run(path)
    again = _run(path, model=_model(), data=_data())  # new but equal objects
    assert torch.equal(first.samples, again.samples)


def test_a_bare_log_density_is_fingerprinted_by_its_values(tmp_path):
    path = tmp_path / "run.ckpt"

    def normal(theta):
        return -0.5 * (theta ** 2).sum(-1)

    def wider(theta):
        return -0.5 * (theta ** 2).sum(-1) / 4

    inference.sample(normal, dim=2, checkpoint=path, **SETTINGS)
    with pytest.raises(ValueError, match="model or log density"):
        inference.sample(wider, dim=2, checkpoint=path, **SETTINGS)


def test_float_entries_match_within_tolerance_only():
    assert fingerprint.differences({"logdensity_at_init": -10.0}, {"logdensity_at_init": -10.0 * (1 + 1e-9)}) == []
    assert fingerprint.differences({"logdensity_at_init": -10.0}, {"logdensity_at_init": -10.001})
