"""``inference.sample`` on a network speaks as the command line's report: function-space diagnostics first,
parameter-space R-hat of the weights with the note that it is expected to look poor."""

import warnings

import pytest
import torch

import inference
from inference import function_space
from inference.diagnostics import ConvergenceWarning
from probnets import BNN


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 2, generator=g, dtype=torch.float64)
    return x, torch.sin(x[:, 0])


def test_the_summary_of_a_network_starts_in_function_space(capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        inference.sample(BNN(2, [4]), _data(), method="hmc", num_chains=2, num_warmup=10, num_samples=10,
                         num_steps=4, progress=False, print_summary=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Function space (f(x) at 30 inputs): max R-hat")
    assert "expected to look poor" in lines[1]
    messages = [str(w.message) for w in caught]
    parameter = [m for m in messages if "parameters have R-hat" in m and m.startswith("In parameter space")]
    assert parameter and all("expected to look poor" in m for m in parameter)
    first_function = next(i for i, m in enumerate(messages) if m.startswith("In function space"))
    assert first_function < messages.index(parameter[0])


def test_a_bare_log_density_keeps_the_parameter_table(capsys):
    inference.sample(lambda t: -0.5 * (t ** 2).sum(-1), dim=2, method="nuts", num_chains=2, num_warmup=20,
                     num_samples=20, progress=False, print_summary=True, check_convergence=False)
    out = capsys.readouterr().out
    assert out.startswith("name") and "Function space" not in out


def test_function_space_check_matches_the_draws():
    model = BNN(2, [4])
    post = inference.sample(model, _data(), method="hmc", num_chains=2, num_warmup=10, num_samples=10,
                            num_steps=4, progress=False, check_convergence=False)
    check, _ = function_space.function_space_check(model, post, _data()[0])
    f = post.f_draws(model, _data()[0])
    assert check["max_rhat"] == pytest.approx(float(inference.diagnostics.split_rhat(f).max()))
    assert check["num_points"] == 30 and "noise_scale_rhat" in check


def test_weighted_draws_get_the_weighted_cross_population_check():
    """SMC populations are not chains: R-hat across populations with the particle weights, Kish ESS."""
    from inference.smc import estimates

    model = BNN(2, [4])
    post = inference.sample(model, _data(), method="hmc", num_chains=3, num_warmup=10, num_samples=10,
                            num_steps=4, progress=False, check_convergence=False)
    log_weights = torch.randn(3, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weighted = inference.SamplePosterior(post.samples, post.sample_stats, spec=post.spec, log_weights=log_weights)
    check, messages = function_space.function_space_check(model, weighted, _data()[0])
    f = weighted.f_draws(model, _data()[0]).double()
    assert check["max_rhat"] == pytest.approx(float(estimates.rhat(f, log_weights).max()))
    assert check["max_rhat"] != pytest.approx(function_space.function_space_check(model, post, _data()[0])[0]["max_rhat"])
    assert check["min_ess_bulk"] == pytest.approx(float(estimates.total_ess(log_weights)))
    assert any("total ESS of the particle weights" in m for m in messages)
