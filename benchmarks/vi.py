"""Wall time and memory of dense mean-field VI against SSVI's packed sparse layers, by density (CPU).

Model and data: a BNN classifier ``in -> widths -> 10`` (tanh, fan-in Normal priors, categorical likelihood) on
synthetic data (``--num-data`` rows of standard-normal inputs, labels from a random linear map). Methods:

* ``mfvi``: dense mean-field VI with the local reparameterisation trick (``inference.vi.mfvi``);
* ``ssvi@d``: SSVI at density ``d`` (``inference.vi.ssvi``; active weights stored packed, products as CSR).

Each configuration runs in a fresh subprocess (so that its peak resident memory is its own) and reports

* ``train_ms``: wall time per optimiser step (``--steps`` steps of batch ``--batch-size`` with ``--num-samples``
  draws, subspace updates every 100 steps included), the median over ``--rounds`` runs; ``train_cpu_ms``: the
  process CPU time per step (set-up included), the minimum over the runs, less sensitive to other load on a shared
  machine (one thread: CPU time is compute time);
* ``predict_ms``, ``predict_cpu_ms``: one predictive with ``--pred-samples`` weight draws on ``--num-data`` inputs
  (median wall time, minimum CPU time);
* ``state_mb``: variational parameters plus Adam moments (4 numbers per coordinate; SSVI also one index per
  active weight);
* ``peak_rss_mb``: the subprocess's peak resident memory above a baseline subprocess that only imports and
  builds the data.

Usage::

    python benchmarks/vi.py [--in-features 256] [--widths 512,512] [--densities 0.5,0.2,0.1,0.05]
                            [--steps 30] [--rounds 3] [--threads 1] [--out benchmarks/results]

Writes ``vi.json`` and ``vi.md`` into ``--out`` and prints the markdown table. The defaults are a smoke size for
a loaded machine; the full protocol (784-300-100-10 on MNIST, several densities) is run separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _setup(cfg: dict):
    import torch

    from probnets import BNN, Categorical, priors

    torch.set_num_threads(cfg["threads"])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg["num_data"], cfg["in_features"], generator=g)
    y = (x @ torch.randn(cfg["in_features"], 10, generator=g)).argmax(-1)
    model = BNN(cfg["in_features"], cfg["widths"], 10, prior=priors.fan_in_normal(1.0), likelihood=Categorical(10))
    return model, x, y


def _child(cfg: dict) -> dict:
    warnings.simplefilter("ignore")
    import torch

    from inference.vi import fit_vi

    model, x, y = _setup(cfg)
    if cfg["method"] == "baseline":
        return {"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    options = dict(num_steps=cfg["steps"], batch_size=cfg["batch_size"], num_samples=cfg["num_samples"],
                   progress=False)
    if cfg["method"] == "ssvi":
        options["density"] = cfg["density"]
    else:
        options["estimator"] = "local"
    train, predict, train_cpu, predict_cpu = [], [], [], []
    for r in range(cfg["rounds"]):
        c0 = time.process_time()
        post = fit_vi(model, (x, y), method=cfg["method"], seed=r, **options)
        train_cpu.append(1e3 * (time.process_time() - c0) / cfg["steps"])
        train.append(1e3 * post.info["wall_time"] / cfg["steps"])
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            post.predictive(model, x, num_samples=cfg["pred_samples"], generator=torch.Generator().manual_seed(r)).f
        predict.append(1e3 * (time.perf_counter() - t0))
        predict_cpu.append(1e3 * (time.process_time() - c0))
    active = int(post.mask.sum()) if post.mask is not None else model.spec.dim
    weights = sum(s.numel() for n, s in zip(model.spec.names, model.spec.shapes) if n.endswith("weight"))
    index_bytes = 8 * (active - (model.spec.dim - weights)) if cfg["method"] == "ssvi" else 0
    return {"train_ms": statistics.median(train), "predict_ms": statistics.median(predict),
            "train_cpu_ms": min(train_cpu), "predict_cpu_ms": min(predict_cpu),
            "state_mb": (4 * active * x.element_size() + index_bytes) / 2**20, "active": active,
            "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _run_child(cfg: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, __file__, "_child", json.dumps(cfg)], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--in-features", type=int, default=256)
    p.add_argument("--widths", default="512,512")
    p.add_argument("--densities", default="0.5,0.2,0.1,0.05")
    p.add_argument("--num-data", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-samples", type=int, default=4)
    p.add_argument("--pred-samples", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    a = p.parse_args(argv)
    base = {"in_features": a.in_features, "widths": [int(w) for w in a.widths.split(",")], "num_data": a.num_data,
            "batch_size": a.batch_size, "num_samples": a.num_samples, "pred_samples": a.pred_samples,
            "steps": a.steps, "rounds": a.rounds, "threads": a.threads}
    baseline = _run_child({**base, "method": "baseline"})["peak_rss_kb"]
    rows = []
    for method, density in [("mfvi", 1.0)] + [("ssvi", float(d)) for d in a.densities.split(",")]:
        result = _run_child({**base, "method": method, "density": density})
        result["peak_rss_mb"] = (result.pop("peak_rss_kb") - baseline) / 1024
        rows.append({"method": method if method == "mfvi" else f"ssvi@{density:g}", "density": density, **result})
        print(rows[-1], file=sys.stderr)
    out = {"config": base, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                       "load_average": os.getloadavg()}, "rows": rows}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "vi.json"), "w") as fh:
        json.dump(out, fh, indent=2)
    dense = rows[0]
    lines = [f"BNN {a.in_features}-{a.widths.replace(',', '-')}-10, batch {a.batch_size} x {a.num_samples} draws, "
             f"{a.threads} thread(s), load average {os.getloadavg()[0]:.1f} during the run",
             "", "| method | active weights | train CPU ms/step | x dense | predict CPU ms | x dense | train wall ms/step "
                 "| predict wall ms | state MB | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['active']} | {r['train_cpu_ms']:.1f} | "
                     f"{dense['train_cpu_ms'] / r['train_cpu_ms']:.2f} | {r['predict_cpu_ms']:.1f} | "
                     f"{dense['predict_cpu_ms'] / r['predict_cpu_ms']:.2f} | {r['train_ms']:.1f} | "
                     f"{r['predict_ms']:.1f} | {r['state_mb']:.2f} | {r['peak_rss_mb']:.0f} |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "vi.md"), "w") as fh:
        fh.write("# Dense mean-field VI vs SSVI (packed CSR layers) on CPU\n\n" + table)
    print(table)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        print(json.dumps(_child(json.loads(sys.argv[2]))))
    else:
        main()
