"""Pyro models: a dtype mismatch says so (not "choose another init"), the sampler defaults to the model's
dtype, and discrete latent sites that cannot be summed out are clear errors before any sampling."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.ops.indexing import Vindex

import inference

F64 = torch.float64


def _regression(x, y):
    w = pyro.sample("w", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(x @ w, 0.1), obs=y)


def _xy():
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    return x, x.sum(-1)


SHORT = dict(method="nuts", num_chains=2, num_warmup=20, num_samples=10, progress=False, check_convergence=False)


def test_the_sampler_runs_in_the_models_dtype_by_default():
    post = inference.sample(inference.from_pyro(_regression, *_xy()), **SHORT)
    assert post.samples.dtype == F64


def test_a_dtype_mismatch_is_named():
    with pytest.raises(TypeError, match=r"dtype mismatch: the model's tensors are torch.float64 but the sampler runs "
                                        r"in torch.float32.*pass dtype=torch.float64"):
        inference.sample(inference.from_pyro(_regression, *_xy()), dtype=torch.float32, **SHORT)


def _observations():
    return torch.cat([torch.full((10,), -2.0, dtype=F64), torch.full((10,), 2.0, dtype=F64)])


def test_an_enumerable_discrete_site_is_summed_out():
    def mixture(y):
        locs = pyro.sample("locs", dist.Normal(torch.zeros(2, dtype=F64), 5.0).to_event(1))
        with pyro.plate("data", len(y)):
            z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.5, dtype=F64)), infer={"enumerate": "parallel"})
            pyro.sample("y", dist.Normal(Vindex(locs)[..., z.long()], 1.0), obs=y)

    target = inference.from_pyro(mixture, _observations())
    assert target.spec.names == ("locs",)


def test_a_discrete_site_without_finite_support_is_an_error_before_sampling():
    def counts(y):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
        n = pyro.sample("n", dist.Poisson(torch.tensor(3.0, dtype=F64)))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu + n, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"latent site 'n' is discrete \(Poisson\) with a support that cannot be "
                                         r"enumerated"):
        inference.from_pyro(counts, _observations())


def test_a_discrete_value_used_as_a_shape_is_an_error_naming_the_site():
    def variable_size(y):
        k = pyro.sample("k", dist.Categorical(torch.ones(3, dtype=F64) / 3))
        w = pyro.sample("w", dist.Normal(torch.zeros(int(k) + 1, dtype=F64), 1.0).to_event(1))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(w.sum(-1), 1.0), obs=y)

    with pytest.raises(ValueError, match=r"enumerating the discrete latent site\(s\) \['k'\] failed.*continuous sites "
                                         r"must not depend on a discrete value for their shape"):
        inference.from_pyro(variable_size, _observations())


def test_tracing_the_model_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    inference.from_pyro(_regression, *_xy())
    assert torch.equal(torch.rand(3), expected)


def test_enumeration_that_changes_a_continuous_sites_shape_is_an_error():
    def indexed(y):
        z = pyro.sample("z", dist.Categorical(torch.ones(3, dtype=F64) / 3), infer={"enumerate": "parallel"})
        mu = pyro.sample("mu", dist.Normal(torch.zeros(3, dtype=F64)[z], 1.0))  # batch shape follows z
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"changes the shape of the continuous site 'mu' from \(\) to \(3, 1\)"):
        inference.from_pyro(indexed, _observations())
