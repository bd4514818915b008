"""The log prior of a BNN in closed form, when every prior is a Normal (and a learned noise scale has a
LogNormal prior), for the kernels' ``const - 0.5 * sum_i prec_i (theta_i - loc_i)^2``."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

_LOG_2PI = math.log(2.0 * math.pi)


def _normal_params(d) -> tuple[Tensor, Tensor] | None:
    """(loc, scale) of a plain Normal (torch or pyro) prior, else None."""
    import pyro.distributions as pdist

    if type(d) in (torch.distributions.Normal, pdist.Normal):
        return d.loc, d.scale
    return None


def _lognormal_params(d) -> tuple[Tensor, Tensor] | None:
    import pyro.distributions as pdist

    if type(d) in (torch.distributions.LogNormal, pdist.LogNormal):
        return d.loc, d.scale
    return None


class AnalyticPrior:
    """The log prior as ``const - 0.5 * sum_i prec_i (theta_i - loc_i)^2`` when every network prior is a
    Normal and the learned noise prior, if any, is a LogNormal (a Normal on ``u = log sigma`` once the
    Jacobian ``+u`` is added); ``None`` otherwise."""

    @staticmethod
    def _terms(loc: Tensor, scale: Tensor, shape) -> tuple[Tensor, Tensor, float]:
        # Like torch's Normal.log_prob, the variance and log-scale are formed in the parameters' own dtype
        # (float32 for the usual Python-number priors) and only then promoted.
        loc, scale = (torch.broadcast_to(t.detach(), shape).reshape(-1) for t in (loc, scale))
        prec = 1.0 / (scale * scale).to(torch.float64)
        const = float((-scale.log().to(torch.float64) - 0.5 * _LOG_2PI).sum())
        return loc.to(torch.float64), prec, const

    @staticmethod
    def build(model) -> tuple[np.ndarray, np.ndarray, float] | None:
        locs, precs, const = [], [], 0.0
        for name, shape in zip(model.net_spec.names, model.net_spec.shapes):
            params = _normal_params(model.priors[name])
            if params is None:
                return None
            loc, prec, c = AnalyticPrior._terms(*params, shape)
            locs.append(loc)
            precs.append(prec)
            const += c
        lik = model.likelihood
        if getattr(lik, "learned", False):
            params = _lognormal_params(lik.noise_prior)
            if params is None or params[0].numel() != 1 or params[1].numel() != 1:
                return None
            loc, prec, c = AnalyticPrior._terms(*params, (1,))
            locs.append(loc)
            precs.append(prec)
            const += c
        return torch.cat(locs).numpy(), torch.cat(precs).numpy(), const
