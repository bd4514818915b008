"""Where an SG-MCMC step's time goes on protocol H2's model, and what two ways of cutting it measure.

H2 (``benchmarks/sgmcmc.py``) compares probnets' SGLD with a plain-torch SGLD loop on scikit-learn's digits, MLP
64-128-10 ReLU, batch 64. At this size a step is a few hundred microseconds, dominated by per-operation overhead,
so this script times the parts of one step directly, interleaved in one process (one thread):

* ``torch forward+backward``: the plain-torch loop's log posterior and ``torch.autograd.grad`` on an
  ``nn.Sequential`` (the floor a generic log density can hope to reach);
* ``probnets value_and_grad``: the minibatch log density's ``value_and_grad`` (``inference.minibatch``);
* ``probnets value_and_grad, torch.compile``: the same function through ``torch.compile`` (inductor), the second
  approach to the overhead (the first is fewer, fused operations in the eager code: ``probnets.bnn``'s forward,
  the Normal prior's constants, one finite check per step); compilation time is reported separately;
* ``torch SGLD step`` and ``probnets SGLD step``: a whole step (minibatch, gradient, update, noise, guard), the
  latter as ``inference.sample`` runs it (``Algorithm.step`` of ``sgld`` on the prepared minibatch stream).

Plus the self-time profile of the probnets step (``torch.profiler``, top operations).

Usage::

    python benchmarks/sgmcmc_step.py [--repeats 2000] [--out benchmarks/results]

Writes ``sgmcmc_step.json`` and ``sgmcmc_step.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _time(fn, repeats: int) -> float:
    """Median over 5 rounds of the mean time per call, in microseconds."""
    for _ in range(max(20, repeats // 10)):
        fn()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats // 5):
            fn()
        rounds.append((time.perf_counter() - start) / (repeats // 5) * 1e6)
    return sorted(rounds)[2]


def measure(repeats: int, compile_: bool = True) -> dict:
    import torch
    from torch import nn

    from inference.minibatch import BatchStream, MinibatchLogDensity
    from inference.sgmcmc.sgld import sgld

    torch.set_num_threads(1)
    h2 = _load_h2()
    x, y, _, _ = h2.digits_split(torch.float32)
    n, model = x.shape[0], h2._model()
    logdensity = MinibatchLogDensity(model, n, (x, y))
    batches = h2._batches(x, y, 0)
    xb, yb = next(batches)
    bound = logdensity.at((xb, yb))
    theta = model.init_theta(1, generator=torch.Generator().manual_seed(0), dtype=x.dtype)

    net = nn.Sequential(nn.Linear(64, h2.WIDTH), nn.ReLU(), nn.Linear(h2.WIDTH, 10))
    params = list(net.parameters())

    def torch_log_posterior(xb, yb):
        log_lik = -nn.functional.cross_entropy(net(xb), yb, reduction="sum")
        return n / xb.shape[0] * log_lik - 0.5 * sum(p.square().sum() for p in params) / h2.PRIOR_SCALE**2

    def torch_grad():
        return torch.autograd.grad(torch_log_posterior(xb, yb), params)

    generator = torch.Generator().manual_seed(0)

    def torch_step():
        xs, ys = next(batches)
        grads = torch.autograd.grad(torch_log_posterior(xs, ys), params)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=h2.SGLD_STEP)
            kicks = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
            torch._foreach_add_(params, kicks, alpha=math.sqrt(2 * h2.SGLD_STEP))

    algorithm = sgld(logdensity, 0, step_size=h2.SGLD_STEP)
    state = [algorithm.init(theta)]
    stream = BatchStream(model.prepare_batch((x, y)), h2.BATCH_SIZE, seed=0, prepared=True)

    def probnets_step():
        state[0], _ = algorithm.step(state[0], next(stream), generator)

    timings = {"torch forward+backward": _time(torch_grad, repeats),
               "probnets value_and_grad": _time(lambda: bound.value_and_grad(theta), repeats)}
    compile_seconds = None
    if compile_:
        torch._dynamo.config.capture_scalar_outputs = True  # the prior's float(loc): no graph break
        compiled = torch.compile(lambda t, xs, ys: logdensity._value(t, (xs, ys)), dynamic=False)

        def compiled_grad():
            t = theta.detach().requires_grad_(True)
            return torch.autograd.grad(compiled(t, xb, yb).sum(), t)

        start = time.perf_counter()
        compiled_grad()
        compile_seconds = time.perf_counter() - start
        timings["probnets value_and_grad, torch.compile"] = _time(compiled_grad, repeats)
    timings["torch SGLD step"] = _time(torch_step, repeats)
    timings["probnets SGLD step"] = _time(probnets_step, repeats)

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(200):
            probnets_step()
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    profile_rows = [dict(op=e.key, calls_per_step=e.count / 200, self_us_per_step=e.self_cpu_time_total / 200)
                    for e in top]
    return dict(timings_us=timings, compile_seconds=compile_seconds, profile=profile_rows)


def _load_h2():
    import importlib.util

    spec = importlib.util.spec_from_file_location("h2_sgmcmc", HERE / "sgmcmc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown(meta: dict, result: dict) -> str:
    t = result["timings_us"]
    floor = t["torch forward+backward"]
    lines = ["# One SG-MCMC step on H2's model (digits, MLP 64-128-10, batch 64): where the time goes", "",
             f"Machine: {meta['machine']}; {meta['cpus']} CPUs; 1 thread; load average at start "
             f"{meta['loadavg_start']}, at end {meta['loadavg_end']}. Times: median over 5 rounds of the mean over "
             f"{meta['repeats'] // 5} calls, microseconds, interleaved in one process.", "",
             "| part | us per call | x torch forward+backward |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {v / floor:.2f} |" for k, v in t.items()]
    if result["compile_seconds"] is not None:
        lines += ["", f"torch.compile's first call (compilation): {result['compile_seconds']:.1f} s."]
    lines += ["", f"probnets SGLD step / torch SGLD step: {t['probnets SGLD step'] / t['torch SGLD step']:.2f}.", "",
              "## Self-time profile of the probnets SGLD step (torch.profiler, per step)", "",
              "| operation | calls per step | self us per step |", "|---|---|---|"]
    lines += [f"| {r['op']} | {r['calls_per_step']:.1f} | {r['self_us_per_step']:.1f} |" for r in result["profile"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (smoke tests)")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), repeats=args.repeats,
                loadavg_start=os.getloadavg(), python=platform.python_version())
    result = measure(args.repeats, compile_=not args.no_compile)
    meta["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sgmcmc_step.json").write_text(json.dumps(dict(meta=meta, **result), indent=2))
    text = markdown(meta, result)
    (out / "sgmcmc_step.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
