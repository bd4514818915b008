"""Prior-data fitted networks (Mueller et al., ICLR 2022): transformers trained on tasks from a prior that
return the posterior predictive in one forward pass, with bar-distribution outputs and pretrained checkpoints.
The bias/variance diagnostic of Nagler (ICML 2023) is in ``examples/pfn_gp_regression.py``."""

from probnets.pfn.bar_distribution import BarDistribution, BarMarginal, borders_from_samples
from probnets.pfn.configs import CONFIGS, task_prior
from probnets.pfn.model import PFN
from probnets.pfn.pretrained import available, load_pretrained

__all__ = ["BarDistribution", "BarMarginal", "CONFIGS", "PFN", "available", "borders_from_samples", "load_pretrained",
           "task_prior"]
