"""benchmarks/hmc_bnn.py: every sampler runs the same configuration grid, and the issue's three targets are read
from the per-configuration summaries (synthetic here; the samplers themselves are smoke-tested in test_peers.py)."""

from tests_support import load_script


def _summary(sampler, config, ess_per_s, rhat=1.005, nll=1.10):
    chains, warmup, draws = config
    return dict(sampler=sampler, chains=chains, warmup=warmup, draws=draws, ess_per_s=ess_per_s, worst_rhat_f=rhat,
                nll=nll)


def test_every_sampler_of_a_kind_gets_the_same_grid():
    h1 = load_script("benchmarks/hmc_bnn.py")
    runs = h1.sampler_runs(quick=False)
    grids = {}
    for label, _, config in runs:
        grids.setdefault(label, []).append(config)
    assert grids["NumPyro NUTS"] == grids["probnets NUTS"] == h1.NUTS_CONFIGS
    assert grids["BlackJAX ChEES-HMC"] == grids["probnets ChEES-HMC"] == h1.CHEES_CONFIGS
    assert grids["BlackJAX ChEES-HMC (diagonal metric)"] == h1.CHEES_CONFIGS


def test_targets_compare_like_for_like_and_best_configurations():
    h1 = load_script("benchmarks/hmc_bnn.py")
    nuts2, nuts4 = h1.NUTS_CONFIGS
    chees16, chees32 = h1.CHEES_CONFIGS
    summary = [_summary("NumPyro NUTS", nuts2, 20.0), _summary("NumPyro NUTS", nuts4, 30.0),
               _summary("probnets NUTS", nuts2, 25.0), _summary("probnets NUTS", nuts4, 28.0),
               _summary("BlackJAX ChEES-HMC", chees16, 50.0),
               _summary("BlackJAX ChEES-HMC (diagonal metric)", chees16, 100.0),
               _summary("probnets ChEES-HMC", chees16, 160.0),
               _summary("BlackJAX ChEES-HMC", chees32, 40.0),
               _summary("probnets ChEES-HMC", chees32, 95.0, rhat=1.02)]
    verdict = {v["target"].split(":")[0]: v for v in h1._verdict(summary)}
    assert verdict[f"NUTS {nuts2}"]["value"] == 1.25 and verdict[f"NUTS {nuts2}"]["pass"]
    assert verdict[f"ChEES {chees16}"]["value"] == 1.6 and verdict[f"ChEES {chees16}"]["pass"]  # vs the better metric
    assert not verdict[f"ChEES {chees32}"]["pass"]  # 2.4x, but R-hat 1.02
    best = verdict["best probnets >= 3x best NumPyro ESS/s"]
    assert best["value"] == round(160.0 / 30.0, 2) and best["pass"] and best["best_numpyro"] == "4 x (500 + 500)"
