"""Prior-data fitted networks (Mueller et al., ICLR 2022): transformers trained on tasks from a prior that
return the posterior predictive in one forward pass, with bar-distribution outputs, pretrained checkpoints and
the bias/variance diagnostics of Nagler (ICML 2023)."""

from probnets.pfn import diagnostics
from probnets.pfn.bar_distribution import BarDistribution, BarMarginal, borders_from_samples
from probnets.pfn.configs import CONFIGS, task_prior
from probnets.pfn.model import PFN
from probnets.pfn.pretrained import available, load_pretrained

__all__ = ["BarDistribution", "BarMarginal", "CONFIGS", "PFN", "available", "borders_from_samples", "diagnostics",
           "load_pretrained", "task_prior"]
