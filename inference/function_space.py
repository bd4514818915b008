"""Convergence diagnostics in function space: over the draws of ``f(x)`` instead of the parameters.

Network weights are not identifiable (permutation and sign symmetries of hidden units), so chains in
different but equivalent modes disagree on them and parameter-space R-hat looks poor even when every chain
predicts the same; the draws of ``f(x)`` (class probabilities for classifiers; softmax logits are not
identifiable either) and of a learned Gaussian noise scale are what predictions are made of. The command
line's fit report, ``inference.sample``'s summary and the scikit-learn estimators all judge mixing here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from inference import diagnostics
from probnets.likelihoods import Gaussian
from probnets.model import ProbModel

#: Function-space bulk/tail ESS below this total (Vehtari et al. 2021: 100 per chain for 4 chains) is reported.
MIN_TOTAL_ESS = 400
#: At most this many inputs are used (the diagnostics' cost grows with the inputs, their value does not).
MAX_POINTS = 200

NOTE_PARAMETER_SPACE = ("parameter-space diagnostics of network weights are expected to look poor: weights are not "
                        "identifiable (permutation and sign symmetries), so chains in different but equivalent modes "
                        "disagree on them; judge mixing by the function-space diagnostics")


def is_network(model: Any) -> bool:
    """Whether ``model`` is a neural network whose weights are not identifiable (``BNN``, ``ModuleModel``)."""
    return isinstance(model, ProbModel) and hasattr(model, "net_spec") and model.net_spec.dim > 1


def predictive_draws(model: ProbModel, posterior: Any, x: Tensor, y_scale: float = 1.0) -> dict[str, Tensor]:
    """The identifiable draws predictions are made of, by name: ``f(x)`` (``C x S x n x m``; class
    probabilities ``p(y | x)`` for classifiers) and, for a learned Gaussian noise, ``noise_scale``
    (``C x S``, times ``y_scale``)."""
    f = posterior.f_draws(model, x.to(posterior.samples.dtype))
    if model.likelihood.task == "classification":
        draws = {"p(y | x)": torch.sigmoid(f) if f.shape[-1] == 1 else torch.softmax(f, -1)}
    else:
        draws = {"f(x)": f}
    lik = model.likelihood
    if isinstance(lik, Gaussian) and lik.learned:
        draws["noise_scale"] = posterior.samples[..., model.spec.slice(Gaussian.PARAM)][..., 0].exp() * y_scale
    return draws


def function_space_check(model: ProbModel, posterior: Any, x: Tensor, *, rhat_threshold: float = 1.01,
                         min_total_ess: float = MIN_TOTAL_ESS) -> tuple[dict[str, Any], list[str]]:
    """Worst-case R-hat and lowest bulk/tail ESS of ``f(x)`` over (up to ``MAX_POINTS``) inputs, and warnings.

    Args:
        model: The sampled model.
        posterior: Its ``SamplePosterior``.
        x: Inputs ``n x d`` (training inputs when no test set is at hand).
        rhat_threshold, min_total_ess: Thresholds of the warnings.

    Returns:
        ``({"quantity", "num_points", "max_rhat", "min_ess_bulk", "min_ess_tail"}, warnings)`` (and
        ``noise_scale_rhat`` for a learned Gaussian noise); warnings
        name R-hat above ``rhat_threshold`` or ESS below ``min_total_ess`` (a single chain: R-hat undefined).
        Weighted draws (SMC: chains are populations, draws their particles) get the cross-population weighted
        R-hat and the total Kish ESS of the weights as bulk ESS (tail ESS: NaN), as their own summary does.
    """
    x = x[:MAX_POINTS]
    draws = predictive_draws(model, posterior, x)
    quantity = next(iter(draws))
    f = draws[quantity]
    if getattr(posterior, "log_weights", None) is not None:
        return _weighted_check(draws, quantity, posterior.log_weights, int(x.shape[0]), rhat_threshold,
                               min_total_ess)
    rhat, ess_b, ess_t = diagnostics.split_rhat(f), diagnostics.ess_bulk(f), diagnostics.ess_tail(f)
    out = {"quantity": quantity, "num_points": int(x.shape[0]), "max_rhat": _nan_reduce(rhat, torch.max),
           "min_ess_bulk": _nan_reduce(ess_b, torch.min), "min_ess_tail": _nan_reduce(ess_t, torch.min)}
    if "noise_scale" in draws:
        out["noise_scale_rhat"] = float(diagnostics.split_rhat(draws["noise_scale"]))
    warnings = diagnostics.convergence_warnings(draws, num_chains=posterior.num_chains, rhat_threshold=rhat_threshold,
                                                min_ess_per_chain=min_total_ess / min(posterior.num_chains, 4))
    return out, warnings


def _weighted_check(draws: dict[str, Tensor], quantity: str, log_weights: Tensor, num_points: int,
                    rhat_threshold: float, min_total_ess: float) -> tuple[dict[str, Any], list[str]]:
    from inference.smc import estimates

    rhat = {name: estimates.rhat(d.double(), log_weights) for name, d in draws.items()}
    ess = float(estimates.total_ess(log_weights))
    out = {"quantity": quantity, "num_points": num_points, "max_rhat": _nan_reduce(rhat[quantity], torch.max),
           "min_ess_bulk": ess, "min_ess_tail": float("nan")}
    if "noise_scale" in rhat:
        out["noise_scale_rhat"] = float(rhat["noise_scale"])
    warnings = []
    high = [name for name, r in rhat.items() if _nan_reduce(r, torch.max) > rhat_threshold]
    if high:
        warnings.append(f"cross-population R-hat above {rhat_threshold} for {high}: the populations disagree")
    if ess < min_total_ess:
        warnings.append(f"the total ESS of the particle weights is only {ess:.0f} (below {min_total_ess:.0f})")
    return out, warnings


def sample_report(model: Any, posterior: Any, x: Tensor | None, *, check_convergence: bool = True,
                  max_rows: int = 12) -> tuple[str, list[str]]:
    """What ``inference.sample`` prints and warns after sampling, as the command line reports it.

    For a network (``is_network``) with inputs ``x``, the function-space check comes first and parameter-space
    R-hat/ESS warnings carry the note that weights are not identifiable; otherwise the parameter table and
    ``posterior.warnings()`` as they are.

    Returns:
        ``(text, warnings)``: the summary to print, and the convergence warnings (empty without
        ``check_convergence``).
    """
    lines, messages = [], []
    network = is_network(model) and x is not None
    if network:
        check, f_warnings = function_space_check(model, posterior, x)
        lines.append(format_check(check))
        messages += [f"In function space ({check['quantity']}): {w}" for w in f_warnings
                     if w != diagnostics.SINGLE_CHAIN_WARNING]
        lines.append(f"Parameters ({posterior.samples.shape[-1]}); {NOTE_PARAMETER_SPACE}:")
    lines.append(posterior.summary().to_string(max_rows=max_rows))
    if check_convergence:
        for w in posterior.warnings():
            if network and " parameters have " in w:
                w = f"In parameter space: {w} Note: {NOTE_PARAMETER_SPACE}."
            messages.append(w)
    return "\n".join(lines), messages


def format_check(check: dict[str, Any]) -> str:
    """One line: ``Function space (f(x) at 200 inputs): max R-hat 1.004, min ESS bulk 850, tail 700``."""
    def fmt(v, spec):
        return "n/a" if v != v else format(v, spec)

    return (f"Function space ({check['quantity']} at {check['num_points']} inputs): max R-hat "
            f"{fmt(check['max_rhat'], '.3f')}, min ESS bulk {fmt(check['min_ess_bulk'], '.0f')}, tail "
            f"{fmt(check['min_ess_tail'], '.0f')}")


def _nan_reduce(t: Tensor, reduce) -> float:
    t = t[~torch.isnan(t)]
    return float(reduce(t)) if t.numel() else float("nan")
