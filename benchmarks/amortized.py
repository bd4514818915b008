"""Amortized-model benchmarks; each section is a ``run_<section>(args) -> dict`` registered in ``SECTIONS``.

Section ``pfn_vs_nuts``: the shipped ``gp-hyper-1d`` PFN against NUTS over the GP hyperparameters (probnets' NUTS,
2 chains) on ``--datasets`` new data sets drawn from the PFN's hyperprior (RBF kernel; lengthscale ~ Gamma(3, 6),
output scale ~ Gamma(10, 10), noise std ~ Gamma(2, 20); x ~ U[0, 1]; ``--num-context`` training points and
``--num-target`` test points each). NUTS samples ``(log lengthscale, log scale, log noise)`` under the same
hyperprior (with the log-Jacobian) and predicts with the mixture of the exact GP predictives over its draws; the
PFN predicts in one batched forward pass (``PFN.predict``, averaged over the prior's symmetries where the checkpoint
declares them). Reported: mean test NLL per point (and its standard error over data sets), the oracle GP's NLL
with the true hyperparameters, wall time per data set (each data set handled on its own, one thread, NUTS
including warm-up), and the speed ratio. Target: PFN at least 200x faster at NLL within 0.05 of NUTS.

Section ``neural_processes``: CNP, NP, CANP, ANP, MPNP and MPANP trained alike on 1-D RBF GP tasks (the NPF
protocol) and evaluated on ``--np-tasks`` held-out tasks from each of the RBF, Matern-5/2, periodic and t-noise
families: context and target log-likelihood per point, against the oracle GP.

Usage::

    python benchmarks/amortized.py [--sections pfn_vs_nuts,neural_processes] [--datasets 100] [--num-context 30]
                                   [--num-target 20] [--num-warmup 300] [--num-samples 300] [--np-steps 6000]
                                   [--np-batch 16] [--np-lr 5e-4] [--np-width 64] [--np-tasks 1000] [--threads 1]
                                   [--out benchmarks/results]

Writes ``amortized_<section>.json`` and ``amortized_<section>.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _hyper_params(log_hypers: torch.Tensor) -> dict[str, torch.Tensor]:
    """``S x 3`` (log lengthscale, log scale, log noise std) -> the task prior's parameter dict, each ``S``."""
    return dict(zip(("lengthscale", "scale", "noise"), log_hypers.exp().unbind(-1)))


def _gp_predictive(prior, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, log_hypers: torch.Tensor):
    """Exact GP predictive means and standard deviations at ``xt`` for hyperparameter draws ``S x 3``: ``S x m``."""
    params = _hyper_params(log_hypers)
    draws = log_hypers.shape[0]
    xs, xts = x.expand(draws, -1, -1), xt.expand(draws, -1, -1)
    chol = torch.linalg.cholesky(prior.noise_covariance(xs, params))
    cross = prior.covariance(xts, xs, params)  # S x m x n
    mean = (cross @ torch.cholesky_solve(y.expand(draws, -1, -1), chol))[..., 0]
    half = torch.linalg.solve_triangular(chol, cross.transpose(1, 2), upper=False)
    prior_var = prior.noise_covariance(xs[:, :1], params)[:, 0]  # k(x, x) + noise, stationary
    return mean, (prior_var - half.square().sum(1)).clamp_min(1e-12).sqrt()


def _hyper_log_density(x: torch.Tensor, y: torch.Tensor, prior):
    """``theta (C x 3) -> (C,)``: GP log marginal likelihood plus the hyperprior in log space (with Jacobian);
    ``-inf`` where the covariance is not positive definite (a divergence for the sampler, not an error)."""
    hypers = [torch.distributions.Gamma(prior.hypers[name].spec.concentration, prior.hypers[name].spec.rate,
                                        validate_args=False) for name in ("lengthscale", "scale", "noise")]
    eye = torch.eye(x.shape[0], dtype=x.dtype)

    def log_density(theta: torch.Tensor) -> torch.Tensor:
        log_prior = sum(h.log_prob(v) + t for h, v, t in zip(hypers, theta.exp().unbind(-1), theta.unbind(-1)))
        k = prior.noise_covariance(x.expand(theta.shape[0], -1, -1), _hyper_params(theta))
        bad = ~torch.isfinite(k).flatten(1).all(-1)
        chol, info = torch.linalg.cholesky_ex(torch.where(bad[:, None, None], eye, k))
        white = torch.linalg.solve_triangular(chol, y.expand(theta.shape[0], -1, -1), upper=False)
        lml = -0.5 * white.square().sum((-1, -2)) - chol.diagonal(dim1=-2, dim2=-1).log().sum(-1) \
            - 0.5 * x.shape[0] * math.log(2 * math.pi)
        return torch.where(bad | (info > 0), -math.inf, lml + log_prior)

    return log_density


def run_pfn_vs_nuts(args) -> dict:
    import warnings

    import inference
    from probnets.pfn import load_pretrained, task_prior

    torch.set_num_threads(args.threads)
    prior = task_prior("gp-hyper-1d")
    model = load_pretrained("gp-hyper-1d")
    batch = prior.sample(args.datasets, num_context=args.num_context, num_target=args.num_target,
                         generator=torch.Generator().manual_seed(args.seed), dtype=torch.float64)
    _, oracle = prior.oracle_log_prob(batch)

    def pfn_test_nll(i: int) -> float:
        pred = model.predict(batch.context_x[i], batch.context_y[i], batch.target_x[i])
        return -pred.log_prob(batch.target_y[i, :, 0]).mean().item()

    pfn_test_nll(0)  # one untimed call: first-call set-up (forward and bar distribution) is not per-data-set cost
    rows = []
    for i in range(args.datasets):
        x, y = batch.context_x[i], batch.context_y[i]
        xt, yt = batch.target_x[i], batch.target_y[i, :, 0]

        start = time.perf_counter()
        pfn_nll = pfn_test_nll(i)
        pfn_time = time.perf_counter() - start

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = inference.sample(_hyper_log_density(x, y, prior), method="nuts", num_chains=2,
                                    num_warmup=args.num_warmup, num_samples=args.num_samples, seed=i,
                                    init=torch.tensor([[-1.0, 0.0, -2.3], [-0.5, 0.0, -2.0]], dtype=torch.float64),
                                    progress=False, print_summary=False, check_convergence=False)
            draws = post.samples.reshape(-1, 3)
            mean, sd = _gp_predictive(prior, x, y, xt, draws)
            log_mix = torch.distributions.Normal(mean, sd).log_prob(yt).logsumexp(0) - math.log(draws.shape[0])
        nuts_nll = -log_mix.mean().item()
        nuts_time = time.perf_counter() - start
        rows.append(dict(dataset=i, pfn_nll=pfn_nll, nuts_nll=nuts_nll, oracle_nll=-oracle[i].item(),
                         pfn_time=pfn_time, nuts_time=nuts_time))
        print(rows[-1], flush=True)

    def stats(key):
        values = np.array([r[key] for r in rows])
        return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))

    diff = np.array([r["pfn_nll"] - r["nuts_nll"] for r in rows])
    summary = {key: stats(key) for key in ("pfn_nll", "nuts_nll", "oracle_nll", "pfn_time", "nuts_time")}
    summary["nll_difference"] = (float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))))
    summary["speedup"] = summary["nuts_time"][0] / summary["pfn_time"][0]
    summary["target_met"] = bool(summary["speedup"] >= 200 and abs(summary["nll_difference"][0]) <= 0.05)
    result = dict(settings=dict(datasets=args.datasets, num_context=args.num_context, num_target=args.num_target,
                                num_warmup=args.num_warmup, num_samples=args.num_samples, nuts_chains=2,
                                threads=args.threads, seed=args.seed, torch=torch.__version__,
                                machine=f"{os.cpu_count()} CPUs, {platform.machine()}",
                                load_average_start=os.getloadavg()),
                  rows=rows, summary=summary)
    s = summary
    lines = ["## PFN vs NUTS over GP hyperparameters", "",
             f"{args.datasets} data sets from the `gp-hyper-1d` hyperprior, {args.num_context} training and "
             f"{args.num_target} test points each; NUTS: 2 chains x ({args.num_warmup} warm-up + "
             f"{args.num_samples} draws) over (log lengthscale, log scale, log noise), mixture of exact GP "
             f"predictives; {args.threads} thread(s); load average at start "
             f"{'/'.join(f'{a:.1f}' for a in result['settings']['load_average_start'])}. Mean over data sets "
             "(standard error).", "",
             "| method | test NLL per point | wall time per data set (s) |", "|---|---|---|",
             f"| PFN `gp-hyper-1d` | {s['pfn_nll'][0]:.3f} ({s['pfn_nll'][1]:.3f}) | {s['pfn_time'][0]:.4f} |",
             f"| NUTS (probnets) | {s['nuts_nll'][0]:.3f} ({s['nuts_nll'][1]:.3f}) | {s['nuts_time'][0]:.2f} |",
             f"| oracle GP (true hyperparameters) | {s['oracle_nll'][0]:.3f} ({s['oracle_nll'][1]:.3f}) | - |", "",
             f"PFN - NUTS NLL: {s['nll_difference'][0]:+.3f} ({s['nll_difference'][1]:.3f}); speed-up "
             f"{s['speedup']:.0f}x. Target (>= 200x at NLL within 0.05): "
             f"{'met' if s['target_met'] else 'not met'}."]
    result["markdown"] = "\n".join(lines) + "\n"
    return result


NP_FAMILIES = {"rbf": dict(kernel="rbf"), "matern": dict(kernel="matern52"), "periodic": dict(kernel="periodic"),
               "t-noise": dict(kernel="rbf", t_noise=(0.0, 0.15))}


def run_neural_processes(args) -> dict:
    from inference.amortized import train_amortized
    from probnets.neural_process import ANP, CANP, CNP, MPANP, MPNP, NP
    from probnets.priors import GPTaskPrior

    torch.set_num_threads(args.threads)
    train_prior = GPTaskPrior("rbf")
    held_out = {}
    for f, (name, spec) in enumerate(NP_FAMILIES.items()):
        prior = GPTaskPrior(**spec)
        batches = [prior.sample(args.np_tasks // 10, generator=torch.Generator().manual_seed(args.seed + 100 * f + i))
                   for i in range(10)]
        oracle = None if prior.t_noise else [torch.cat(v) for v in zip(*(prior.oracle_log_prob(b) for b in batches))]
        held_out[name] = (batches, oracle)

    rows = []
    for cls in (CNP, NP, CANP, ANP, MPNP, MPANP):
        torch.manual_seed(args.seed)
        model = cls(width=args.np_width)
        start = time.perf_counter()
        result = train_amortized(model, train_prior, num_steps=args.np_steps, batch_size=args.np_batch,
                                 lr=args.np_lr, seed=args.seed, progress=False)
        train_time = time.perf_counter() - start
        row = dict(model=cls.__name__, train_time=train_time, skipped_steps=result.skipped_steps,
                   final_loss=float(result.losses[-200:].nanmean()))
        with torch.no_grad():
            for name, (batches, _) in held_out.items():
                lls = [model.log_likelihood(b, generator=torch.Generator().manual_seed(args.seed)) for b in batches]
                for part, values in zip(("context", "target"), (torch.cat(v) for v in zip(*lls))):
                    row[f"{name}_{part}"] = _mean_se(values)
        rows.append(row)
        print(row, flush=True)
    oracle_row = dict(model="oracle GP")
    for name, (_, oracle) in held_out.items():
        for part, values in zip(("context", "target"), oracle or (None, None)):
            oracle_row[f"{name}_{part}"] = None if values is None else _mean_se(values)
    rows.append(oracle_row)

    result = dict(settings=dict(steps=args.np_steps, batch_size=args.np_batch, lr=args.np_lr, width=args.np_width,
                                tasks_per_family=args.np_tasks, threads=args.threads, seed=args.seed,
                                torch=torch.__version__, machine=f"{os.cpu_count()} CPUs, {platform.machine()}",
                                load_average_start=os.getloadavg()),
                  rows=rows)

    def cell(value):
        return "-" if value is None else f"{value[0]:.3f} ({value[1]:.3f})"

    header = " | ".join(f"{name} {part}" for name in NP_FAMILIES for part in ("ctx", "tgt"))
    lines = ["## Neural processes on 1-D GP tasks", "",
             f"Every model trained on RBF GP tasks (the NPF protocol: x ~ U(-2, 2), 3-47 context points, lengthscale "
             f"U(0.1, 0.6), scale U(0.1, 1), noise 0.02) for {args.np_steps} steps of {args.np_batch} tasks, width "
             f"{args.np_width}, AdamW lr {args.np_lr} with warm-up and cosine decay; then evaluated on "
             f"{args.np_tasks} held-out tasks per family (Matern-5/2, periodic and t-noise are outside the training "
             "prior). Log-likelihood per point of the per-point predictive (latent and martingale models: mixture "
             "over 50 draws), mean over tasks (standard error). The oracle is the exact GP with each task's true "
             f"hyperparameters (none for Student-t noise). {args.threads} thread(s).", "",
             f"| model | {header} | train time (s) |", "|---|" + "---|" * (2 * len(NP_FAMILIES) + 1)]
    for row in rows:
        cells = " | ".join(cell(row[f"{name}_{part}"]) for name in NP_FAMILIES for part in ("context", "target"))
        time_cell = f"{row['train_time']:.0f}" if "train_time" in row else "-"
        lines.append(f"| {row['model']} | {cells} | {time_cell} |")
    result["markdown"] = "\n".join(lines) + "\n"
    return result


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


SECTIONS = {"pfn_vs_nuts": run_pfn_vs_nuts, "neural_processes": run_neural_processes}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {list(SECTIONS)}")
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--num-context", type=int, default=30)
    parser.add_argument("--num-target", type=int, default=20)
    parser.add_argument("--num-warmup", type=int, default=300)
    parser.add_argument("--num-samples", type=int, default=300)
    parser.add_argument("--np-steps", type=int, default=6000, help="neural_processes: training steps per model")
    parser.add_argument("--np-batch", type=int, default=16)
    parser.add_argument("--np-lr", type=float, default=5e-4)
    parser.add_argument("--np-width", type=int, default=64)
    parser.add_argument("--np-tasks", type=int, default=1000, help="neural_processes: held-out tasks per family")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    os.makedirs(args.out, exist_ok=True)
    for name in sections:
        result = SECTIONS[name](args)
        for suffix, text in (("json", json.dumps(result, indent=2)), ("md", result["markdown"])):
            with open(os.path.join(args.out, f"amortized_{name}.{suffix}"), "w") as f:
                f.write(text)
        print(result["markdown"])


if __name__ == "__main__":
    main()
