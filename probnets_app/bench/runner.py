"""``run``: the bench over data sets x methods x splits, resumable, in parallel processes, with its report.

Every cell is written to ``<out>/cells/<data set>/<method>/split<k>.json`` when it ends; a rerun into the same
folder skips every cell whose file exists (failed cells too, unless ``retry_failed``) and refuses cells written
with other settings. With ``isolate`` (the default) every cell runs in a process of its own with
``OMP_NUM_THREADS`` and torch's threads set to ``cpu_count // jobs`` (at most the caller's ``OMP_NUM_THREADS``),
at most ``jobs`` at a time; its peak memory and CPU time are then its own, and ``timeout`` can stop it. The
processes are forked from a forkserver that has imported torch and the engine once
(``probnets_app.bench.cell.PRELOAD``), so a cell does not pay those imports.

Example:
    >>> table = run(["diabetes"], ["chees", "mfvi"], splits=2, out="bench_out", jobs=2)
    >>> table.groupby("method")["test_ll"].mean()
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from probnets_app.bench import budget as budgets
from probnets_app.bench.cell import PRELOAD, THREAD_VARIABLES, cell_path, run_cell, run_forked
from probnets_app.bench.problem import data_source, rows_hash, saved_splits, table_hash, write_json

__all__ = ["run"]

_POLL_SECONDS = 0.05


def run(datasets: Sequence[str], methods: Sequence[str], *, out: str | os.PathLike, splits: int = 5,
        budget: str | dict[str, int] | None = None, target: str | None = None, task: str = "regression",
        jobs: int = 1, timeout: float | None = None, seed: int = 0, widths: Sequence[int] = (50,),
        isolate: bool = True, retry_failed: bool = False, report: bool = True,
        after_cell: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None):
    """Run (or resume) the bench and write its report.

    Args:
        datasets: Bundled data sets (``probnets.datasets.TABLES``) and/or CSV paths.
        methods: Bench methods (``probnets_app.bench.methods.METHODS``); a method that does not apply to a data
            set's task (e.g. moment propagation on classes) is left out of that data set.
        out: Output folder (cells, split indices, report).
        splits: Splits per data set (the protocol's 90/10 splits; the first ``splits`` of a stable sequence).
        budget: Gradient evaluations per cell: ``"N"``, ``"family=N,..."`` or a mapping (``budget.parse_budget``);
            families not named take their defaults (``budget.DEFAULT_BUDGETS``).
        target, task: For CSV data sets: the target column and ``"regression"`` or ``"classification"``.
        jobs: Cells run at the same time (each in its own process; needs ``isolate``).
        timeout: Wall seconds after which a cell's process is stopped and the cell recorded as failed.
        seed: Seed of the split indices and of every cell (split ``k`` uses ``seed + k``).
        widths: Hidden widths of the shared BNN.
        isolate: Run every cell in a process of its own (``False``: in this process, one at a time). The processes
            start as multiprocessing's do under ``forkserver``: a script that calls ``run`` must do so under
            ``if __name__ == "__main__":``, as a cell process imports the script.
        retry_failed: Run again the cells recorded as failed.
        report: Write ``report.md``, ``report.html``, ``results.csv`` and the figures into ``out``
            (:func:`probnets_app.bench.report.write_report`).
        after_cell: Called with each record as its cell finishes (in this process).
        log: Called with one line per finished cell (e.g. ``print``); ``None``: silent.

    Returns:
        One row per cell of the requested grid (finished now or before): a pandas ``DataFrame`` when pandas is
        installed, else a list of dicts (:func:`probnets_app.bench.report.flat_rows`).

    Raises:
        ValueError: A bad argument (named), or ``out`` holding cells or splits of another configuration.
    """
    from probnets_app.bench import methods as registry
    from probnets_app.bench import report as reporting
    from probnets_app.cli import DataError

    out, grid = _check(datasets, methods, out, splits, budget, target, task, jobs, timeout, isolate, widths)
    parsed = budget if isinstance(budget, dict) else (budgets.parse_budget(budget) if budget is not None else {})
    specs = []
    for spec_text in grid["datasets"]:
        source = data_source(spec_text, target=target, task=task)
        try:
            table = source.table()
        except DataError as exc:  # a CSV problem, named by probnets_app.data
            raise ValueError(str(exc)) from None
        rows = saved_splits(source, splits, out, seed=seed)
        for name in grid["methods"]:
            method = registry.get(name)
            if table.task not in method.tasks:
                continue
            for k, split_rows in enumerate(rows):
                specs.append(_spec(out, source, table, method, k, split_rows, parsed, seed, widths))
    pending = [s for s in specs if _pending(s, retry_failed)]
    if log is not None:
        log(f"{len(specs)} cells, {len(specs) - len(pending)} finished before, {len(pending)} to run "
            f"({jobs} at a time)")
    done = []

    def finished(record: dict) -> None:
        done.append(record)
        if log is not None:
            result = (f"test NLL {record['metrics']['nll']:.3f}, {record['wall_time']:.1f} s"
                      if record["status"] == "ok" else f"FAILED: {record['error']}")
            log(f"[{len(done)}/{len(pending)}] {record['data_set']} / {record['method']} / split {record['split']}: "
                f"{result}")
        if after_cell is not None:
            after_cell(record)

    if isolate:
        _run_isolated(pending, jobs, timeout, finished)
    else:
        for spec in pending:
            finished(run_cell(spec))
    records = [json.loads(Path(s["path"]).read_text()) for s in specs]
    if report:
        reporting.write_report(records, out)
    return reporting.as_table(reporting.flat_rows(records))


def _check(datasets, methods, out, splits, budget, target, task, jobs, timeout, isolate, widths):
    from probnets_app.bench import methods as registry
    from probnets_app.cli import DataError
    from probnets_app.output import check_out_dir

    grid = {}
    for name, values in (("datasets", datasets), ("methods", methods)):
        if isinstance(values, str) or not values or not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"{name} must be a non-empty list of names, got {values!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"{name} names an entry twice: {list(values)}")
        grid[name] = list(values)
    unknown = [m for m in methods if m not in registry.METHODS]
    if unknown:
        raise ValueError(f"methods: unknown method {unknown[0]!r}; the bench methods are {', '.join(registry.METHODS)}")
    for name, value in (("splits", splits), ("jobs", jobs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not isolate and (jobs > 1 or timeout is not None):
        raise ValueError("jobs > 1 and timeout need isolated cells (isolate=True; not --in-process)")
    if isinstance(budget, dict):
        for family, count in budget.items():
            if family != "*" and family not in budgets.DEFAULT_BUDGETS:
                raise ValueError(f"budget names no method family {family!r}; families: "
                                 f"{', '.join(budgets.DEFAULT_BUDGETS)}")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"budget[{family!r}] must be a positive integer, got {count!r}")
    elif budget is not None and not isinstance(budget, str):
        raise TypeError(f"budget must be a string or a mapping of family to count, got {type(budget).__name__}")
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"widths must be positive integers, got {widths!r}")
    try:
        out = check_out_dir(out, option="out")
    except DataError as exc:
        raise ValueError(str(exc)) from None
    return out, grid


def _spec(out: Path, source, table, method, k: int, rows: dict, budget: dict, seed: int, widths) -> dict:
    """The plain description of one cell (what its process needs, and what identifies its configuration)."""
    from probnets_app.bench.problem import problem

    count = budgets.budget_for(method.family, budget)
    prob = problem(source, rows)
    settings = {**method.plan(count, prob), **({"widths": list(widths)} if method.takes_widths else {})}
    config = {"settings": settings, "budget": count, "seed": seed + k, "data_hash": table_hash(table),
              "rows_hash": rows_hash(rows)}
    return {"data_set": source.key, "method": method.name, "split": k, "seed": seed + k, "family": method.family,
            "budget": count, "settings": settings, "config": config, "rows": rows,
            "source": {"key": source.key, "spec": source.spec, "target": source.target, "task": source.task},
            "path": str(cell_path(out, source.key, method.name, k))}


def _pending(spec: dict, retry_failed: bool) -> bool:
    """Whether the cell must run; a finished cell of another configuration is an error."""
    path = Path(spec["path"])
    if not path.exists():
        return True
    record = json.loads(path.read_text())
    if record.get("config") != spec["config"]:
        differ = sorted(k for k in spec["config"] if record.get("config", {}).get(k) != spec["config"][k])
        raise ValueError(f"{path} was written with other settings ({', '.join(differ)} differ); use another out "
                         "folder, or delete the cells to recompute them")
    return retry_failed and record["status"] != "ok"


def _run_isolated(specs: list[dict], jobs: int, timeout: float | None, finished: Callable[[dict], None]) -> None:
    """Run every cell in a process of its own, forked from a forkserver with ``PRELOAD`` imported, ``jobs`` at a time,
    with ``threads_per_cell(jobs)`` threads each; its output goes to ``<cell>.log`` beside its record."""
    threads = threads_per_cell(jobs)
    context = _forkserver(threads)
    queue, running = list(specs), {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec = queue.pop(0)
                path = Path(spec["path"])
                path.parent.mkdir(parents=True, exist_ok=True)
                process = context.Process(target=run_forked, args=(spec, str(path.with_suffix(".log")), threads),
                                          daemon=False)
                process.start()
                running[process] = (spec, time.monotonic())
            for process, (spec, start) in list(running.items()):
                alive = process.is_alive()
                if alive and (timeout is None or time.monotonic() - start <= timeout):
                    continue
                error = None
                if alive:
                    process.kill()
                    error = f"TimeoutError: stopped after the time limit of {timeout:g} s"
                process.join()
                del running[process]
                path = Path(spec["path"])
                if error is None and not path.exists():
                    log = path.with_suffix(".log")
                    if log.exists():
                        tail = log.read_text()[-1500:].strip()
                        error = f"the cell's process ended without a record (exit code {process.exitcode}): {tail}"
                    else:
                        error = (f"the cell's process ended before it started the cell (exit code "
                                 f"{process.exitcode}); a script that starts a bench must call run under "
                                 "if __name__ == '__main__':")
                if error is not None:
                    write_json(path, _failure(spec, error, time.monotonic() - start))
                finished(json.loads(path.read_text()))
            time.sleep(_POLL_SECONDS)
    finally:
        for process in running:
            process.kill()
            process.join()


def _forkserver(threads: int):
    """The ``forkserver`` multiprocessing context with ``PRELOAD`` imported in the server. The server starts with the
    first cell, its thread variables set to ``threads`` (torch's threads are set again in every cell, as the server
    lives as long as this process and later benches may run other numbers of jobs)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    try:
        from multiprocessing import forkserver

        forkserver.ensure_running()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return context


def threads_per_cell(jobs: int) -> int:
    """``cpu_count // jobs`` (at least 1), and at most this process's ``OMP_NUM_THREADS`` when that is set."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(limit)) if limit.isdigit() and int(limit) > 0 else threads


def _failure(spec: dict, error: str, wall: float) -> dict:
    keys = ("data_set", "method", "split", "seed", "family", "budget", "settings", "config")
    return {**{k: spec[k] for k in keys}, "status": "failed", "error": error, "wall_time": wall}
