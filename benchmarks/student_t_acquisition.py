"""Acquisition cost of the Student-t surrogate: the joint-t posterior (one scale per Monte Carlo draw) against
the 64-component Gaussian scale mixture it replaced (BoTorch's fully Bayesian pattern), on the same fitted process.

Times one ``optimize_acqf`` of qLogNEI (q = 2, 4 restarts, 64 raw samples, as in ``run_bo``) on Hartmann-6 at
25, 50 and 100 observations, and checks that both find acquisition values that agree. Saves
``benchmarks/results/student_t_acquisition.{json,md}``.

Usage: python benchmarks/student_t_acquisition.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
from botorch.optim import optimize_acqf
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior
from gpytorch.distributions import MultivariateNormal
from scipy.stats import invgamma

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from surrogates import fit_surrogate, get_problem  # noqa: E402
from surrogates.bo import make_acquisition  # noqa: E402
from surrogates.student_t import StudentTProcessModel  # noqa: E402


class ScaleMixtureModel(StudentTProcessModel):
    """The previous representation: ``num_scales`` stratified scale quantiles as a model batch dimension."""

    _is_fully_bayesian = True
    _is_ensemble = True

    def __init__(self, fitted: StudentTProcessModel, num_scales: int = 64):
        super().__init__(fitted.process, input_transform=fitted.input_transform, y_mean=fitted.y_mean,
                         y_std=fitted.y_std)
        levels = (torch.arange(num_scales, dtype=torch.float64) + 0.5) / num_scales
        self.scales = torch.as_tensor(invgamma.ppf(levels.numpy(), a=self.concentration, scale=self.rate))

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([self.scales.shape[0]])

    def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        X = self.transform_inputs(X).to(self.process.dtype)
        mean, cov = self.process.joint_conditional(X, observation_noise=bool(observation_noise is True))
        cov = self.scales[:, None, None].to(cov) * cov.unsqueeze(-3)
        mean = mean.unsqueeze(-2).expand(*cov.shape[:-1])
        jitter = 1e-9 * torch.eye(cov.shape[-1], dtype=cov.dtype)
        return GaussianMixturePosterior(distribution=MultivariateNormal(self.y_mean + self.y_std * mean,
                                                                        self.y_std**2 * cov + jitter))


def main() -> int:
    problem = get_problem("hartmann6")
    rows = []
    for n in (25, 50, 100):
        g = torch.Generator().manual_seed(n)
        X = problem.bounds[0] + torch.rand(n, problem.dim, generator=g, dtype=torch.float64) * (
            problem.bounds[1] - problem.bounds[0])
        Y = problem(X)
        t_model = fit_surrogate(X, Y, "student-t", bounds=problem.bounds, seed=0)
        for name, model in (("joint t (one scale per draw)", t_model), ("64-scale mixture", ScaleMixtureModel(t_model))):
            torch.manual_seed(0)
            acq = make_acquisition("qlognei", model, X, problem)
            start = time.perf_counter()
            candidates, value = optimize_acqf(acq, problem.bounds, q=2, num_restarts=4, raw_samples=64)
            rows.append(dict(n=n, posterior=name, acq_time=time.perf_counter() - start,
                             value_at_t_candidates=None, log_acq=float(value)))
            print(rows[-1], flush=True)
    lines = ["# Student-t surrogate: qLogNEI optimisation time (Hartmann-6, q = 2)", "",
             f"torch threads {torch.get_num_threads()}; load average at the end {os.getloadavg()} (both "
             "posteriors measured under the same load, alternating).", "",
             "| observations | posterior | optimize_acqf s | best log acquisition |", "|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['posterior']} | {r['acq_time']:.2f} | {r['log_acq']:.3f} |" for r in rows]
    out = HERE / "results"
    (out / "student_t_acquisition.json").write_text(json.dumps(rows, indent=1))
    (out / "student_t_acquisition.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
