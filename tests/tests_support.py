"""Small data makers, statistics and script loaders shared by tests."""

import importlib.util
from pathlib import Path

import scipy.stats
import torch
from torch import nn

from inference import diagnostics


def make_regression(n: int, d: int, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(n, generator=g, dtype=dtype)
    return x, y


def z_scores(draws: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, coords) -> dict[str, float]:
    """z of the sample mean and of the sample variance (as the mean of (x - mu)^2) per coordinate.

    Args:
        draws: ``chains x draws x D``.
        mean, var: True means and variances, ``D``.
        coords: The coordinates to test.
    """
    out = {}
    for c in coords:
        x = draws[..., c]
        sq = (x - mean[c]) ** 2
        out[f"mean[{c}]"] = float((x.mean() - mean[c]) / diagnostics.mcse_mean(x))
        out[f"var[{c}]"] = float((sq.mean() - var[c]) / diagnostics.mcse_mean(sq))
    return out


REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str):
    """Import a script of the repository that is not in a package (``examples/``, ``benchmarks/``) by its path."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chi_square_pvalue(observed: torch.Tensor, probs: torch.Tensor) -> float:
    """Chi-square goodness of fit of counts to probabilities; bins below 5 expected are pooled into one (added
    to the smallest kept bin when the pool itself expects fewer than 5)."""
    expected = probs.double() * observed.sum()
    keep = expected >= 5
    obs, exp = observed[keep].double(), expected[keep]
    rest_obs, rest_exp = observed[~keep].sum().double(), expected[~keep].sum()
    if rest_exp >= 5:
        obs, exp = torch.cat([obs, rest_obs.reshape(1)]), torch.cat([exp, rest_exp.reshape(1)])
    else:
        smallest = exp.argmin()
        obs[smallest] += rest_obs
        exp[smallest] += rest_exp
    return float(scipy.stats.chisquare(obs.numpy(), exp.numpy()).pvalue)


class SmallConvNet(nn.Module):
    """A 1-channel conv net with 4 outputs for model-contract tests (``N x 1 x H x W`` inputs)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))
