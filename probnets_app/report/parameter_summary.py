"""The parameters a fit report summarises: likelihood parameters (the Gaussian noise scale in original
units), then a few evenly spaced network weights, named like ``layers.0.weight[3,1]``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from inference.posterior import SamplePosterior
from probnets.model import ProbModel
from probnets.spec import ParamSpec
from probnets_app.report.noise_scale import NOISE_NAME, noise_scale_draws

NUM_WEIGHTS_SHOWN = 4


def summary_draws(model: ProbModel, posterior: SamplePosterior, y_scale: float) -> tuple[list[str], Tensor]:
    """Names and draws ``C x S x K`` of the summarised parameters.

    Args:
        model: The sampled model.
        posterior: Its posterior draws.
        y_scale: Standard deviation of the targets (the noise scale is shown in original units).
    """
    spec = model.spec
    lik_dim = model.likelihood.spec.dim
    net_dim = spec.dim - lik_dim
    samples = posterior.samples
    names, columns = [], []
    noise = noise_scale_draws(model, posterior, y_scale)
    if noise is not None:
        names.append(NOISE_NAME)
        columns.append(noise)
    elif lik_dim:
        for k in range(net_dim, spec.dim):
            names.append(element_name(spec, k))
            columns.append(samples[..., k])
    count = min(NUM_WEIGHTS_SHOWN, net_dim)
    if count:
        step = (net_dim - 1) / max(count - 1, 1)
        for k in sorted({round(i * step) for i in range(count)}):
            names.append(element_name(spec, k))
            columns.append(samples[..., k])
    return names, torch.stack(columns, -1)


def element_name(spec: ParamSpec, index: int) -> str:
    """``name[i,j]`` of flat index ``index`` into ``theta`` (row-major, as ``ParamSpec.unflatten``)."""
    for name, shape, offset in zip(spec.names, spec.shapes, spec.offsets):
        size = math.prod(shape)
        if index < offset + size:
            if len(shape) == 0:
                return name
            rest, idx = index - offset, []
            for dim in reversed(shape):
                idx.append(rest % dim)
                rest //= dim
            return f"{name}[{','.join(str(i) for i in reversed(idx))}]"
    raise IndexError(index)
