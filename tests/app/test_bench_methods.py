"""The bench's method registry lists every inference method of the engine, and turns budgets into settings."""

import re
from pathlib import Path

import pytest

from probnets_app.bench import budget, methods


def test_every_engine_method_is_a_bench_method():
    missing = methods.engine_methods() - set(methods.METHODS)
    assert not missing, f"inference methods missing from probnets_app.bench.methods.METHODS: {sorted(missing)}"


def test_a_newly_registered_sampler_is_reported_missing(monkeypatch):
    from inference import registry

    monkeypatch.setitem(registry.SAMPLERS, "new-sampler", registry.SAMPLERS["nuts"])
    from inference import vi

    monkeypatch.setitem(vi.VI_METHODS, "new-vi", vi.VI_METHODS["mfvi"])
    assert methods.engine_methods() - set(methods.METHODS) == {"new-sampler", "new-vi"}


def test_every_family_has_a_default_budget():
    assert {m.family for m in methods.METHODS.values()} <= set(budget.DEFAULT_BUDGETS)


class _Problem:
    """The parts of a problem the plans read."""

    task, num_classes, in_features = "regression", None, 10
    fit_rows = (__import__("torch").zeros(318, 10), None)


@pytest.mark.parametrize("name", ["sgld", "sghmc", "csghmc", "structured-sghmc", "map", "ensemble", "mfvi", "ssvi",
                                  "mp-gelu", "relu-mp", "ohsmc"])
def test_fixed_cost_plans_spend_at_most_the_budget(name):
    method = methods.get(name)
    count = budget.DEFAULT_BUDGETS[method.family]
    settings = method.plan(count, _Problem())
    if method.family == "sgmcmc":
        per_step = methods.STRUCTURED_GRADS_PER_STEP if name.startswith("structured") else 1
        spent = settings["num_chains"] * (settings["num_warmup"] + settings["num_samples"]) * per_step
        assert settings["num_samples"] // settings["thin"] >= methods.SGMCMC_DRAWS
    elif method.family in ("map", "ensemble"):  # a run on the fit rows, then a refit of at most as many steps
        spent = 2 * settings["num_members"] * settings["num_steps"]
    elif method.family == "vi":
        spent = settings["num_steps"] * settings["num_samples"]
    elif method.family == "moment":
        spent = settings["num_steps"]
    else:
        spent = settings["num_particles"] * settings["num_epochs"] * -(-318 // settings["batch_size"])
    assert count * 0.95 <= spent <= count


@pytest.mark.parametrize("name", ["nuts", "hmc", "chees"])
def test_hmc_plans_size_iterations_by_the_mean_trajectory(name):
    settings = methods.get(name).plan(1_000_000, _Problem())
    iterations = settings["num_warmup"] + settings["num_samples"]
    assert iterations == 1_000_000 // (settings["num_chains"] * methods.LEAPFROG_STEPS[name])
    if name == "nuts":  # capped trees: at most 2**depth steps per iteration, so at most the budget
        assert 2 ** settings["max_tree_depth"] == methods.LEAPFROG_STEPS["nuts"]
    if name == "chees":  # jittered trajectories of at most twice the planned mean
        assert settings["max_leapfrog_steps"] == 2 * methods.LEAPFROG_STEPS["chees"]


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown method 'nope'.*nuts"):
        methods.get("nope")


def test_budget_parsing():
    assert budget.parse_budget("5000") == {"*": 5000}
    assert budget.parse_budget("hmc=1e5, vi=300") == {"hmc": 100000, "vi": 300}
    assert budget.budget_for("vi", {"*": 7}) == 7
    assert budget.budget_for("vi", {"hmc": 7}) == budget.DEFAULT_BUDGETS["vi"]
    for bad, message in (("hmc=abc", "positive integer"), ("hmc=0", "positive integer"), ("mcmc=10", "family"),
                         ("", "N or family"), ("1.5", "positive integer")):
        with pytest.raises(ValueError, match=message):
            budget.parse_budget(bad)


def test_the_default_budgets_are_those_the_committed_cost_estimate_was_made_for():
    # benchmarks/results/bench/budgets.md (benchmarks/bench_budget.py) estimates the deliverable's time at the defaults
    text = (Path(__file__).parents[2] / "benchmarks" / "results" / "bench" / "budgets.md").read_text()
    documented = dict(re.findall(r"^\| (\w+) \| (?:\d+|n/a) \| (\d+) \|$", text, flags=re.MULTILINE))
    assert {family: int(count) for family, count in documented.items()} == budget.DEFAULT_BUDGETS
