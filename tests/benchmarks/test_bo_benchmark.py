"""The BO benchmark's run log: a rerun with the same settings reuses finished runs; other settings run again."""

import json

from tests_support import load_script


def _load_bo():
    return load_script("benchmarks/bo.py")


def test_rerun_reuses_logged_runs(tmp_path):
    bo = _load_bo()
    argv = ["--quick", "--problems", "branin", "--surrogates", "gp", "--skip-timing", "--out", str(tmp_path)]
    log = tmp_path / "bo_quick_runs.jsonl"

    assert bo.main(argv) == 0
    first = json.loads((tmp_path / "bo_quick.json").read_text())["runs"]
    assert len(log.read_text().splitlines()) == 1
    assert first[0]["evaluations"] == 11

    assert bo.main(argv) == 0
    again = json.loads((tmp_path / "bo_quick.json").read_text())["runs"]
    assert len(log.read_text().splitlines()) == 1
    assert again == first

    assert bo.main(argv + ["--iterations", "2"]) == 0
    longer = json.loads((tmp_path / "bo_quick.json").read_text())["runs"]
    assert len(log.read_text().splitlines()) == 2
    assert longer[0]["evaluations"] == 12
    assert not list((tmp_path / "checkpoints").glob("*.pt"))


def test_variant_runs_its_kind_with_its_options_under_its_own_label(tmp_path):
    bo = _load_bo()
    argv = ["--quick", "--problems", "branin", "--surrogates", "gp,gp-dsp", "--skip-timing", "--out", str(tmp_path)]
    assert bo.main(argv) == 0
    entries = [json.loads(line) for line in (tmp_path / "bo_quick_runs.jsonl").read_text().splitlines()]
    assert [e["result"]["surrogate"] for e in entries] == ["gp", "gp-dsp"]
    assert [e["settings"]["options"] for e in entries] == [{}, {"prior": "dimension-scaled"}]
    # Different priors, so a different fitted model and (generically) a different next point.
    assert entries[0]["result"]["X"] != entries[1]["result"]["X"]


def test_budget_and_dimension_overrides(tmp_path):
    bo = _load_bo()
    argv = ["--quick", "--problems", "bnn-draw", "--surrogates", "gp", "--dim", "3", "--n-init", "4", "--q", "2",
            "--skip-timing", "--out", str(tmp_path)]
    assert bo.main(argv) == 0
    (run,) = json.loads((tmp_path / "bo_quick.json").read_text())["runs"]
    assert run["problem"] == "bnn-draw-3" and run["evaluations"] == 4 + 2


def test_directions_compare_medians_and_count_paired_wins():
    bo = _load_bo()

    def row(problem, surrogate, seed, regret=None, best=None):
        return dict(problem=problem, surrogate=surrogate, seed=seed, log10_regret=regret, best=best)

    rows = [row("branin", "hmc-bnn", s, regret=r) for s, r in enumerate([-1.0, -2.0, 0.5])]
    rows += [row("branin", "sghmc-bnn", s, regret=r) for s, r in enumerate([0.0, 0.0, 0.0])]
    rows += [row("bnn-draw-50", "gp", s, best=b) for s, b in enumerate([10.0, 12.0, 11.0])]
    rows += [row("bnn-draw-50", "ibnn", s, best=b) for s, b in enumerate([9.0, 13.0, 9.5])]
    rows += [row("bnn-draw-50", "hmc-bnn", s, best=b) for s, b in enumerate([8.0, 8.0, 8.0])]
    lines = bo._directions(rows)
    assert any("branin: HMC strongest fully stochastic BNN: holds" in line and "better on 2/3 seeds" in line
               for line in lines)
    assert any("bnn-draw-50: an infinite-width or BNN surrogate beats gp: fails; best of them ibnn 9.500 vs "
               "gp 11.000" in line and "ibnn better on 1/3 seeds" in line for line in lines)


def test_variational_surrogates_run_as_their_own_rows(tmp_path):
    bo = _load_bo()
    surrogates = ["mfvi-bnn", "mp-gelu-bnn", "relu-mp-bnn", "gelu-mp-bnn"]
    argv = ["--quick", "--problems", "branin", "--surrogates", ",".join(surrogates), "--skip-timing",
            "--out", str(tmp_path)]
    assert bo.main(argv) == 0
    entries = [json.loads(line) for line in (tmp_path / "bo_quick_runs.jsonl").read_text().splitlines()]
    assert [e["result"]["surrogate"] for e in entries] == surrogates
    assert entries[2]["settings"]["options"] == {"activation": "relu", "widths": [16], "num_steps": 30}
    assert entries[3]["settings"]["options"] == {"activation": "exact-gelu", "widths": [16], "num_steps": 30}
    assert all(e["result"]["X"] and len(e["result"]["X"]) == 11 for e in entries)
    markdown = (tmp_path / "bo_quick.md").read_text()
    assert all(f"| branin | {s} | 1 | 11 |" in markdown for s in surrogates)
