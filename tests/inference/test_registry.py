"""The sampler registry: lookup, option binding, and options reaching the samplers through ``inference.sample``."""

import pytest
import torch

import inference
from inference import registry
from inference.testing import correlated_gaussian_2d


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match="method must be one of .*'nuts'.*'sghmc'"):
        registry.get("gibbs")


def test_options_are_the_builders_keyword_arguments_with_defaults():
    options = registry.get("nuts").options()
    assert options["max_tree_depth"] == 10 and options["target_accept"] == 0.8
    assert options["integrator"] == "velocity_verlet"
    assert registry.get("nuts").bind({"max_tree_depth": 6})["max_tree_depth"] == 6


def test_an_option_of_another_sampler_is_named():
    with pytest.raises(TypeError, match=r"'chees' does not accept the option\(s\) \['max_tree_depth'\]"):
        registry.get("chees").bind({"max_tree_depth": 6})


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Sampler("nuts", "inference.mcmc.samplers:nuts", 1, 1, 1))


def test_every_builder_imports_and_takes_logdensity_and_num_warmup():
    for sampler in registry.SAMPLERS.values():
        assert list(sampler.options()) and callable(sampler.build), sampler.name


@pytest.mark.parametrize("method", ["nuts", "hmc", "chees"])
def test_the_integrator_option_reaches_the_sampler(method):
    post = inference.sample(correlated_gaussian_2d(), dim=2, method=method, integrator="mclachlan", num_chains=4,
                            num_warmup=30, num_samples=20, seed=0, progress=False, check_convergence=False)
    assert bool((post.sample_stats["n_steps"] % 2 == 0).all())  # two gradient evaluations per step
    with pytest.raises(ValueError, match="integrator must be one of"):
        inference.sample(correlated_gaussian_2d(), dim=2, method=method, integrator="euler", num_chains=4,
                         progress=False)


def test_bad_option_values_are_named():
    with pytest.raises(ValueError, match="target_accept"):
        inference.sample(correlated_gaussian_2d(), dim=2, method="nuts", target_accept=1.5, progress=False)
    with pytest.raises(ValueError, match="step_size"):
        inference.sample(correlated_gaussian_2d(), dim=2, method="hmc", step_size=-1.0, progress=False)


def test_defaults_come_from_the_registry():
    post = inference.sample(correlated_gaussian_2d(), dim=2, method="hmc", num_chains=2, num_warmup=10,
                            progress=False, check_convergence=False)
    assert post.num_draws == registry.get("hmc").num_samples // registry.get("hmc").thin
    assert torch.isfinite(post.samples).all()
