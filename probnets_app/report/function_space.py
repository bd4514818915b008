"""Sampler diagnostics where they matter for prediction: in function space, over the draws of ``f(x_test)``.

BNN weights are not identifiable (permutation and sign symmetries), so parameter-space R-hat and ESS look
poor even when the predictions have converged; the draws of ``f(x_test)`` (class probabilities for
classifiers) and of the learned noise scale are what the predictive is made of.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from inference import diagnostics
from inference.function_space import MIN_TOTAL_ESS, predictive_draws
from inference.posterior import SamplePosterior
from inference.sampling_problems import divergence_counts, sampling_warnings, stuck_chains
from probnets.model import ProbModel
from probnets_app.report.noise_scale import NOISE_NAME


def function_space_diagnostics(model: ProbModel, posterior: SamplePosterior, x_test: Tensor,
                               y_scale: float) -> tuple[dict[str, Any], list[str]]:
    """Worst-case convergence diagnostics of the predictive draws, and the warnings they raise.

    Args:
        model: The sampled model.
        posterior: Its posterior draws.
        x_test: Test inputs, ``n x d`` in the posterior's dtype.
        y_scale: Standard deviation of the targets (the noise scale is reported in original units).

    Returns:
        ``(diagnostics, warnings)``: ``diagnostics`` has the worst split R-hat and the lowest bulk/tail ESS
        over test points (``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``), divergences, wall time, gradient
        evaluations, bulk ESS per second and the number of draws, plus ``noise_scale_rhat``/``_ess_bulk``/
        ``_ess_tail`` for a learned Gaussian noise, warm-up divergences (``num_warmup_divergences``) and the
        chains stuck on divergences (``stuck_chains``); ``warnings`` lists a single chain, divergences,
        R-hat > 1.01 or total ESS < ``MIN_TOTAL_ESS`` of ``f(x_test)`` and of the noise scale, and the
        problems of ``inference.sampling_problems`` (stuck chains, saturated NUTS trees, warm-up divergences).
    """
    draws = predictive_draws(model, posterior, x_test, y_scale)
    f = next(iter(draws.values()))  # C x S x n x m
    quantity = "p(y | x_test)" if model.likelihood.task == "classification" else "f(x_test)"
    rhat, ess_b, ess_t = diagnostics.split_rhat(f), diagnostics.ess_bulk(f), diagnostics.ess_tail(f)
    wall = float(posterior.info.get("wall_time", float("nan")))
    grad_evals = posterior.info.get("grad_evals", posterior.num_grad_evals)
    min_ess_bulk = _nanmin(ess_b)
    num_div = posterior.num_divergences
    diag = {
        "quantity": quantity,
        "max_rhat": _nanmax(rhat),
        "min_ess_bulk": min_ess_bulk,
        "min_ess_tail": _nanmin(ess_t),
        "num_divergences": num_div,
        "num_warmup_divergences": divergence_counts(posterior)["warmup"],
        "stuck_chains": stuck_chains(posterior),
        "divergence_rate": num_div / (posterior.num_chains * posterior.num_draws),
        "wall_time": wall,
        "grad_evals": int(grad_evals),
        "ess_per_second": min_ess_bulk / wall if wall > 0 else float("nan"),
        "num_draws": posterior.num_chains * posterior.num_draws,
    }
    named = {quantity: f}
    noise = draws.get("noise_scale")
    if noise is not None:
        named[NOISE_NAME] = noise
        diag["noise_scale_rhat"] = float(diagnostics.split_rhat(noise))
        diag["noise_scale_ess_bulk"] = float(diagnostics.ess_bulk(noise))
        diag["noise_scale_ess_tail"] = float(diagnostics.ess_tail(noise))
    warnings = diagnostics.convergence_warnings(
        diagnostics.summary(named), diverging=posterior.sample_stats.get("diverging"),
        num_chains=posterior.num_chains, min_ess_per_chain=MIN_TOTAL_ESS / posterior.num_chains)
    return diag, warnings + sampling_warnings(posterior)


def _nanmax(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.max()) if t.numel() else float("nan")


def _nanmin(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.min()) if t.numel() else float("nan")
