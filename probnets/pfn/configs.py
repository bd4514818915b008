"""The task priors and architectures of the PFNs that ship pretrained (``probnets/pfn/checkpoints``); the
training script ``scripts/train_pfn.py`` reproduces each from its name."""

from __future__ import annotations

import torch

from probnets.priors.tasks import GPTaskPrior

#: Zero-mean stationary GP priors on x ~ U[0, 1] are unchanged by x -> 1 - x and by y -> -y.
SYMMETRIES = {"x_range": (0.0, 1.0), "negate_y": True}

CONFIGS = {
    "gp-rbf-1d": dict(
        description="1-D GP prior, RBF kernel with lengthscale 0.1, output scale 1, noise std 0.1, x ~ U[0, 1], "
                    "up to 50 training points (the PFN paper's CPU check)",
        prior=dict(kernel="rbf", lengthscale=0.1, scale=1.0, noise=0.1, x_range=(0.0, 1.0), num_context=(0, 50),
                   max_points=51, min_target=1, fill_targets=True),
        model=dict(dim=1, emsize=64, num_layers=4, num_heads=4, hidden=128, symmetries=SYMMETRIES),
        num_buckets=100, num_steps=15_000, batch_size=32, lr=1e-3),
    "gp-hyper-1d": dict(
        description="1-D GP prior with a hyperprior: RBF lengthscale ~ Gamma(3, 6), output scale ~ Gamma(10, 10), "
                    "noise std ~ Gamma(2, 20); x ~ U[0, 1], up to 50 training points",
        prior=dict(kernel="rbf", lengthscale=("gamma", 3.0, 6.0), scale=("gamma", 10.0, 10.0),
                   noise=("gamma", 2.0, 20.0), x_range=(0.0, 1.0), num_context=(0, 50), max_points=51,
                   min_target=1, fill_targets=True),
        model=dict(dim=1, emsize=128, num_layers=4, num_heads=4, hidden=256, symmetries=SYMMETRIES),
        num_buckets=1000, num_steps=36_000, batch_size=32, lr=1e-3, finetune=[dict(num_steps=12_000, lr=2e-4)]),
}


def _hyper(spec):
    if isinstance(spec, tuple) and spec and spec[0] == "gamma":
        return torch.distributions.Gamma(torch.tensor(spec[1], dtype=torch.float64), torch.tensor(spec[2], dtype=torch.float64))
    return spec


def task_prior(name: str) -> GPTaskPrior:
    """The task prior a pretrained PFN was trained on."""
    if name not in CONFIGS:
        raise ValueError(f"unknown PFN {name!r}; available: {sorted(CONFIGS)}")
    spec = dict(CONFIGS[name]["prior"])
    kernel = spec.pop("kernel")
    return GPTaskPrior(kernel, **{k: _hyper(v) for k, v in spec.items()})
