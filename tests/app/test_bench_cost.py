"""The bench's cost accounting: measured seconds per cell, and the estimate of a grid at other budgets."""

import pytest

from probnets_app.bench import cost
from probnets_app.bench.budget import DEFAULT_BUDGETS


def _cell(method, family, split, budget, wall, cpu=None, grads=None, process=None, status="ok", data_set="d",
          predict=0.0):
    record = {"data_set": data_set, "method": method, "family": family, "split": split, "budget": budget,
              "wall_time": wall, "grad_evals": grads, "status": status, "predict_time": predict}
    if cpu is not None:
        record["cpu_time"] = cpu
    if process is not None:
        record["process_cpu_time"], record["predict_cpu_time"] = process, predict
    return record


def test_a_cell_costs_its_cpu_time_where_recorded_else_its_wall_time():
    assert cost.cell_seconds(_cell("nuts", "hmc", 0, 10, wall=9.0, cpu=6.0)) == 6.0
    assert cost.cell_seconds(_cell("nuts", "hmc", 0, 10, wall=9.0)) == 9.0
    assert cost.cell_seconds(_cell("nuts", "hmc", 0, 10, wall=9.0, cpu=6.0, status="failed")) is None


def test_the_estimate_scales_each_method_by_its_family_budget_and_keeps_unbudgeted_costs():
    records = [_cell("mfvi", "vi", k, 16_000, wall=10.0, cpu=8.0, grads=16_000) for k in range(2)]
    records += [_cell("gp", "gp", k, 0, wall=3.0) for k in range(2)]
    records += [_cell("mfvi", "vi", 2, 16_000, wall=50.0, status="failed")]  # not finished: not counted
    rows = {r["method"]: r for r in cost.estimate(records, {"vi": 4_000})}
    assert rows["mfvi"]["cells"] == 2 and rows["mfvi"]["seconds"] == 16.0
    assert rows["mfvi"]["seconds_per_grad"] == pytest.approx(16.0 / 32_000)
    assert rows["mfvi"]["new_budget"] == 4_000 and rows["mfvi"]["new_seconds"] == pytest.approx(4.0)
    assert rows["gp"]["seconds_per_grad"] is None and rows["gp"]["new_seconds"] == 6.0
    defaults = {r["method"]: r for r in cost.estimate(records)}
    assert defaults["mfvi"]["new_budget"] == DEFAULT_BUDGETS["vi"]


def test_process_overhead_and_totals():
    records = [_cell("map", "map", 0, 10, wall=2.0, cpu=1.5, process=6.0, predict=0.5),
               _cell("map", "map", 1, 10, wall=2.0, cpu=1.0, process=3.5, predict=0.5),
               _cell("map", "map", 2, 10, wall=2.0, predict=1.0)]  # an old cell: no process CPU time
    assert cost.overhead_seconds(records) == pytest.approx(3.0)  # outside the fit and the predictions
    assert cost.overhead_seconds(records[2:]) is None
    rows = cost.estimate(records, {"map": 20})
    assert rows[0]["predict_seconds"] == pytest.approx(2.0)
    assert cost.total_seconds(rows, overhead=3.0, cells=3) == pytest.approx(2 * 4.5 + 2.0 + 9.0)
    assert cost.total_seconds(rows, overhead=3.0, cells=3, new=False) == pytest.approx(4.5 + 2.0 + 9.0)
    with pytest.raises(ValueError, match="overhead"):
        cost.total_seconds(rows, overhead=-1.0, cells=3)


def test_cells_of_one_method_with_different_budgets_are_refused():
    records = [_cell("map", "map", 0, 10, wall=1.0), _cell("map", "map", 1, 20, wall=1.0)]
    with pytest.raises(ValueError, match="different budgets"):
        cost.estimate(records)
