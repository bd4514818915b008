"""Quality metrics of a posterior predictive (a :class:`~probnets.predictive.Predictive` mixture).

Every metric takes the predictive over ``n`` test points and the observed targets ``y`` and returns a
Python float, the mean over points (and over outputs for multi-output regression), unless stated.

Regression metrics (``rmse``, ``nll``, ``crps``) accept ``y_scale`` for reporting in original units when
the model was fitted to standardised targets ``y_std = (y_orig - shift) / scale``. Every metric here is
invariant to the shift, so only the scale is needed: RMSE and CRPS are multiplied by it and the NLL of
each point grows by ``sum_j log scale_j`` (the Jacobian of the change of units over the ``m`` outputs).

Example:
    >>> pred = model.predictive(theta, x_test)
    >>> evaluate(pred, y_test, level=0.9)
    {'rmse': ..., 'nll': ..., 'crps': ..., 'coverage_0.9': ...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from probnets.predictive import Predictive
from probnets.validation import as_tensor, check_finite, check_positive_int

__all__ = [
    "accuracy", "brier", "calibration_curve", "coverage", "crps", "ece", "evaluate", "nll", "rmse",
]

#: Default nominal levels of the regression calibration curve.
DEFAULT_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))

# Elements of one block of pairwise CRPS terms: a few MB per temporary, large enough to amortise the
# Python loop (the fastest of 2^16..2^21 on CPU).
_PAIR_BLOCK_ELEMENTS = 2**19

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

ScaleLike = float | Sequence[float] | Tensor


# --------------------------------------------------------------------------------------------------
# Input checks


def _require_predictive(pred: Predictive) -> None:
    if not isinstance(pred, Predictive):
        raise TypeError(f"pred must be a probnets Predictive, got {type(pred).__name__}")


def _require_task(pred: Predictive, task: str, metric: str) -> None:
    _require_predictive(pred)
    if pred.likelihood.task != task:
        raise ValueError(f"{metric} is defined for {task} predictives only; got a {pred.likelihood.task} "
                         f"predictive ({type(pred.likelihood).__name__} likelihood)")


def _check_length(y: Tensor, n: int) -> None:
    if y.dim() == 0 or y.shape[0] != n:
        got = y.shape[0] if y.dim() else "a scalar"
        raise ValueError(f"y must hold one target per predictive point ({n}), got {got}")


def _regression_targets(pred: Predictive, y) -> Tensor:
    """Validated regression targets in the predictive's dtype, ``n x m``."""
    n, m = pred.f.shape[1:]
    y = as_tensor(y, "y")
    _check_length(y, n)
    if y.dim() == 1:
        y = y.unsqueeze(-1)
    if y.dim() != 2 or y.shape[1] != m:
        raise ValueError(f"y must have shape ({n},) or ({n}, {m}) for this predictive, got {tuple(y.shape)}")
    y = y.to(dtype=pred.f.dtype, device=pred.f.device)
    return check_finite(y, "y")


def _class_targets(pred: Predictive, y) -> Tensor:
    """Validated integer class labels, ``n``."""
    n = pred.f.shape[1]
    y = as_tensor(y, "y")
    _check_length(y, n)
    if torch.is_floating_point(y):
        check_finite(y, "y")
    return pred.likelihood.prepare_targets(y.to(pred.f.device)).long()


def _output_scale(y_scale: ScaleLike, m: int, dtype: torch.dtype) -> Tensor:
    """``y_scale`` as a positive finite tensor of shape ``m``."""
    scale = torch.as_tensor(y_scale, dtype=dtype).reshape(-1)
    if scale.numel() == 1:
        scale = scale.expand(m)
    if scale.numel() != m:
        raise ValueError(f"y_scale must be a scalar or have one entry per output ({m}), got {scale.numel()}")
    if not bool((torch.isfinite(scale) & (scale > 0)).all()):
        raise ValueError(f"y_scale must be positive and finite, got {scale.tolist()}")
    return scale


# --------------------------------------------------------------------------------------------------
# Regression


def rmse(pred: Predictive, y, *, y_scale: ScaleLike = 1.0) -> float:
    """Root mean squared error of the predictive mean.

    Args:
        pred: Regression predictive over ``n`` points with ``m`` outputs.
        y: Targets, ``n`` or ``n x m``.
        y_scale: Scale of the original units (scalar or ``m``); the RMSE of output ``j`` is multiplied by
            ``y_scale[j]``.

    Returns:
        The RMSE of each output, averaged over the ``m`` outputs.
    """
    _require_task(pred, "regression", "rmse")
    y = _regression_targets(pred, y)
    per_output = (pred.mean - y).pow(2).mean(0).sqrt()
    return float((per_output * _output_scale(y_scale, y.shape[1], y.dtype)).mean())


def nll(pred: Predictive, y, *, y_scale: ScaleLike = 1.0) -> float:
    """Mean negative log predictive density (regression) or mass (classification) of the mixture.

    For multi-output regression the density of a point is the joint density of its ``m`` outputs.

    Args:
        pred: Predictive over ``n`` points.
        y: Targets: ``n`` or ``n x m`` (regression), class labels ``n`` (classification).
        y_scale: Regression only: scale of the original units (scalar or ``m``); adds
            ``sum_j log y_scale[j]`` to the NLL of every point.

    Returns:
        ``-mean_i log p(y_i | x_i)``.
    """
    _require_predictive(pred)
    if pred.is_classification:
        if not _is_unit_scale(y_scale):
            raise ValueError("y_scale applies to regression predictives only")
        return float(-pred.log_prob(_class_targets(pred, y)).mean())
    y = _regression_targets(pred, y)
    log_jacobian = _output_scale(y_scale, y.shape[1], y.dtype).log().sum()
    return float(-pred.log_prob(y).mean() + log_jacobian)


def nll_standard_error(pred: Predictive, y) -> float:
    """Standard error of ``nll``: the standard deviation of the points' ``-log p(y_i | x_i)`` over ``sqrt(n)``
    (the same in any units: the scale only shifts every point's term).

    Args:
        pred: Predictive over ``n >= 2`` points.
        y: As for :func:`nll`.
    """
    _require_predictive(pred)
    targets = _class_targets(pred, y) if pred.is_classification else _regression_targets(pred, y)
    pointwise = pred.log_prob(targets)
    if pointwise.numel() < 2:
        raise ValueError(f"the standard error of the NLL needs at least 2 points, got {pointwise.numel()}")
    return float(pointwise.std() / math.sqrt(pointwise.numel()))


def _is_unit_scale(y_scale: ScaleLike) -> bool:
    return bool((torch.as_tensor(y_scale, dtype=torch.float64) == 1).all())


def crps(pred: Predictive, y, *, y_scale: ScaleLike = 1.0, max_pairwise: int = 2000, seed: int = 0) -> float:
    """Continuous ranked probability score of the mixture predictive (lower is better).

    ``CRPS(F, y) = E|X - y| - 0.5 E|X - X'|`` with ``X, X'`` independent draws of the predictive. For a
    Gaussian likelihood both terms are exact closed forms over the mixture components, using
    ``E|N(mu, s^2)| = mu (2 Phi(mu/s) - 1) + 2 s phi(mu/s)``: the first term costs ``O(S n m)``, the second
    sums over all pairs of components (variance ``s_i^2 + s_j^2``) and costs ``O(S^2 n m)``, evaluated in
    memory-bounded blocks (roughly 5-10 ns per pair and point on one CPU core: about 1-2 s for
    ``S = 2000, n = 100``).

    When ``S > max_pairwise`` the pairwise term is instead estimated without bias from ``max_pairwise``
    components drawn i.i.d. by weight with a ``torch.Generator`` seeded with ``seed`` (a U-statistic over
    distinct pairs), so the result is deterministic but no longer exact. (The sort-based ``O(S log S)``
    identity for ``E|X - X'|`` holds for point masses only, not for Gaussian components.)

    Args:
        pred: Regression predictive with a Gaussian likelihood, ``S`` draws over ``n`` points.
        y: Targets, ``n`` or ``n x m``.
        y_scale: Scale of the original units (scalar or ``m``); multiplies the CRPS of each output.
        max_pairwise: Largest number of components for which the pairwise term is computed exactly.
        seed: Seed of the component subset used when ``S > max_pairwise``.

    Returns:
        The CRPS averaged over points and outputs.

    Raises:
        NotImplementedError: When the per-draw distribution is not Normal.
    """
    _require_task(pred, "regression", "crps")
    y = _regression_targets(pred, y)
    check_positive_int(max_pairwise, "max_pairwise", minimum=2)
    per_point = gaussian_mixture_crps(pred, y, max_pairwise=max_pairwise, seed=seed)  # n x m
    return float((per_point.mean(0) * _output_scale(y_scale, y.shape[1], y.dtype)).mean())


def gaussian_mixture_crps(pred: Predictive, y: Tensor, *, max_pairwise: int = 2000, seed: int = 0) -> Tensor:
    """Pointwise CRPS of a Gaussian-mixture predictive, ``n x m`` (see :func:`crps`).

    Args:
        pred: Regression predictive whose per-draw distribution is Normal.
        y: Validated targets in the predictive's dtype, ``n x m``.
        max_pairwise: Largest ``S`` for the exact pairwise term.
        seed: Seed of the component subset when ``S > max_pairwise``.
    """
    loc, var = _normal_components(pred)
    w = pred.weights
    var_per_point = var.reshape(pred.num_draws, *(y.shape if var.shape[1] > 1 else (1, 1)))
    if pred.num_draws <= max_pairwise:
        to_target = torch.tensordot(w, _expected_abs_normal(loc - y, var_per_point), dims=([0], [0]))
        between = _pairwise_expected_abs(loc, var, w, include_self=True)
        return to_target - 0.5 * between
    generator = torch.Generator(device=loc.device).manual_seed(seed)
    idx = torch.multinomial(w, max_pairwise, replacement=True, generator=generator)
    # Both terms from the same components: a far-off component then enters both or neither, and the two
    # cancel as in the exact CRPS (with the first term over all components, a wild draw that the subset
    # missed added its full w |f - y| to the estimate).
    to_target = _expected_abs_normal(loc[idx] - y, var_per_point[idx]).mean(0)
    uniform = torch.full((max_pairwise,), 1.0 / max_pairwise, dtype=loc.dtype, device=loc.device)
    # Distinct pairs of i.i.d. draws: sum_{a != b} / (M (M - 1)) is unbiased for sum_ij w_i w_j A_ij.
    distinct = _pairwise_expected_abs(loc[idx], var[idx], uniform, include_self=False)
    return to_target - 0.5 * distinct * max_pairwise / (max_pairwise - 1)


def _normal_components(pred: Predictive) -> tuple[Tensor, Tensor]:
    """Means ``S x n x m`` and variances of the Normal mixture components.

    The variances are ``S x 1`` when every component has one scale for all points and outputs (the usual
    homoscedastic noise), else ``S x (n m)``.
    """
    d = pred.distribution()
    if not isinstance(d, torch.distributions.Normal):
        raise NotImplementedError(f"crps has a closed form for Gaussian likelihoods only, got "
                                  f"{type(pred.likelihood).__name__} (per-draw {type(d).__name__})")
    loc = d.loc.expand(pred.f.shape).to(pred.f.dtype)
    scale = torch.broadcast_to(d.scale, loc.shape).to(loc.dtype).reshape(pred.num_draws, -1)
    if bool((scale == scale[:, :1]).all()):
        scale = scale[:, :1]
    return loc, scale.square()


def _expected_abs_normal(mean: Tensor, var: Tensor) -> Tensor:
    """``E|Z|`` for ``Z ~ N(mean, var)``, elementwise with broadcasting."""
    sd = var.sqrt()
    z = mean / sd
    return mean * torch.erf(z / _SQRT2) + sd * _SQRT_2_OVER_PI * torch.exp(-0.5 * z * z)


def _pairwise_expected_abs(loc: Tensor, var: Tensor, w: Tensor, *, include_self: bool) -> Tensor:
    """``sum_{i,j} w_i w_j E|X_i - X_j|`` for independent ``X_i ~ N(loc_i, var_i)``, ``n x m``.

    Only pairs ``i <= j`` are evaluated (the summand is symmetric); ``include_self=False`` drops ``i == j``.
    Blocks are bounded in size and the closed form is evaluated in place: this loop dominates ``crps``.

    Args:
        loc: Component means, ``S x n x m``.
        var: Component variances, ``S x 1`` (shared by all points) or ``S x (n m)``.
        w: Component weights, ``S``.
        include_self: Whether to include the terms ``i == j``.
    """
    num, n, m = loc.shape
    flat = loc.reshape(num, n * m)
    total = flat.new_zeros(n * m)
    points_per_block = max(1, _PAIR_BLOCK_ELEMENTS // num)
    for p0 in range(0, n * m, points_per_block):
        p1 = min(p0 + points_per_block, n * m)
        block = flat[:, p0:p1]
        block_var = var if var.shape[1] == 1 else var[:, p0:p1]
        rows_per_block = max(1, _PAIR_BLOCK_ELEMENTS // (num * (p1 - p0)))
        for r0 in range(0, num, rows_per_block):
            r1 = min(r0 + rows_per_block, num)
            rows = torch.arange(r0, r1, device=loc.device)[:, None]
            cols = torch.arange(r0, num, device=loc.device)[None, :]
            multiplicity = 2.0 * (cols > rows) + (1.0 if include_self else 0.0) * (cols == rows)
            coef = (w[r0:r1, None] * w[None, r0:] * multiplicity).reshape(1, -1)
            sd = (block_var[r0:r1, None] + block_var[None, r0:]).sqrt().reshape(-1, block_var.shape[1])
            diff = (block[r0:r1, None] - block[None, r0:]).reshape(-1, p1 - p0)
            # E|N(d, s^2)| = d erf(u) + s sqrt(2/pi) exp(-u^2) with u = d / (s sqrt 2).
            u = diff / (sd * _SQRT2)
            erf_term = torch.erf(u).mul_(diff)
            expected_abs = u.square_().neg_().exp_().mul_(sd * _SQRT_2_OVER_PI).add_(erf_term)
            total[p0:p1] += (coef @ expected_abs)[0]
    return total.reshape(n, m)


def coverage(pred: Predictive, y, level: float = 0.9) -> float:
    """Fraction of targets inside the central predictive interval with probability ``level``.

    ``y`` lies in ``[Q((1 - level)/2), Q((1 + level)/2)]`` exactly when its PIT value ``u = F(y)``
    satisfies ``|2u - 1| <= level`` (the mixture CDF is continuous and strictly increasing), so this
    uses the exact CDF rather than quantiles found by bisection.

    Args:
        pred: Regression predictive over ``n`` points with ``m`` outputs.
        y: Targets, ``n`` or ``n x m``.
        level: Nominal probability of the interval, in ``(0, 1)``.

    Returns:
        The covered fraction over all ``n m`` targets.
    """
    _require_task(pred, "regression", "coverage")
    _check_level(level, "level")
    y = _regression_targets(pred, y)
    return float(_covered(pred.cdf(y), level).to(y.dtype).mean())


def _covered(pit: Tensor, level: float | Tensor) -> Tensor:
    return (2 * pit - 1).abs() <= level


def _check_level(level: float, name: str) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {level!r}")


# --------------------------------------------------------------------------------------------------
# Classification


def _top_label(pred: Predictive, y) -> tuple[Tensor, Tensor]:
    """Top-label confidence and correctness (as 0/1 floats), each ``n``."""
    labels = _class_targets(pred, y)
    confidence, predicted = pred.probs.max(-1)
    return confidence, (predicted == labels).to(confidence.dtype)


def accuracy(pred: Predictive, y) -> float:
    """Fraction of points whose most probable class (ties: the lowest index) equals the label.

    Args:
        pred: Classification predictive over ``n`` points.
        y: Class labels, ``n``.
    """
    _require_task(pred, "classification", "accuracy")
    return float(_top_label(pred, y)[1].mean())


def brier(pred: Predictive, y) -> float:
    """Multi-class Brier score ``mean_i sum_k (p_ik - 1[y_i = k])^2`` (in ``[0, 2]``, lower is better).

    A Bernoulli predictive is scored in the same 2-class form, which is twice the common binary Brier
    score ``mean_i (p_i - y_i)^2``.

    Args:
        pred: Classification predictive over ``n`` points with ``K`` classes.
        y: Class labels, ``n``.
    """
    _require_task(pred, "classification", "brier")
    labels = _class_targets(pred, y)
    probs = pred.probs
    onehot = torch.nn.functional.one_hot(labels, probs.shape[-1]).to(probs.dtype)
    return float((probs - onehot).pow(2).sum(-1).mean())


def _reliability_bins(confidence: Tensor, correct: Tensor, num_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin mean confidence, accuracy (NaN when empty) and count over bins ``(k/B, (k+1)/B]``."""
    edges = torch.linspace(0, 1, num_bins + 1, dtype=confidence.dtype, device=confidence.device)
    # right=False puts c in (edges[i-1], edges[i]]; the clamp keeps c == 0 in the first bin.
    index = (torch.bucketize(confidence, edges) - 1).clamp(0, num_bins - 1)
    counts = torch.zeros(num_bins, dtype=confidence.dtype, device=confidence.device)
    counts.scatter_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros_like(counts).scatter_add_(0, index, confidence)
    correct_sum = torch.zeros_like(counts).scatter_add_(0, index, correct)
    return conf_sum / counts, correct_sum / counts, counts


def ece(pred: Predictive, y, num_bins: int = 15) -> float:
    """Expected calibration error of the top-label confidence.

    ``ECE = sum_b (n_b / n) |acc_b - conf_b|`` over ``num_bins`` equal-width bins ``(k/B, (k+1)/B]`` —
    the convention of torchmetrics' ``CalibrationError(task="multiclass", n_bins=15, norm="l1")``. A
    Bernoulli predictive also uses its top-label confidence ``max(p, 1 - p)`` (torchmetrics' binary task
    bins ``p`` itself instead).

    Args:
        pred: Classification predictive over ``n`` points.
        y: Class labels, ``n``.
        num_bins: Number of equal-width confidence bins.
    """
    _require_task(pred, "classification", "ece")
    num_bins = check_positive_int(num_bins, "num_bins")
    confidence, correct = _top_label(pred, y)
    bin_conf, bin_acc, counts = _reliability_bins(confidence, correct, num_bins)
    gaps = torch.nan_to_num((bin_acc - bin_conf).abs())  # empty bins have weight 0
    return float((gaps * counts).sum() / counts.sum())


# --------------------------------------------------------------------------------------------------
# Calibration curves and the summary


def calibration_curve(pred: Predictive, y, levels: Sequence[float] | Tensor | None = None, *,
                      num_bins: int = 15) -> tuple[Tensor, ...]:
    """Calibration curve of a regression predictive or reliability diagram of a classifier.

    Args:
        pred: Predictive over ``n`` points.
        y: Targets (``n`` or ``n x m``) or class labels (``n``).
        levels: Regression only: nominal levels of the central intervals, each in ``(0, 1)``; default
            ``0.05, 0.10, ..., 0.95``.
        num_bins: Classification only: number of equal-width top-label confidence bins.

    Returns:
        Regression: ``(levels, observed)``, each ``L``: the observed coverage of the central interval at
        every nominal level (pooled over all ``n m`` targets; see :func:`coverage`).
        Classification: ``(confidence, accuracy, counts)``, each ``num_bins``: mean top-label confidence
        and accuracy of every bin (NaN for empty bins) and the number of points in it.
    """
    _require_predictive(pred)
    if pred.is_classification:
        if levels is not None:
            raise ValueError("levels applies to regression predictives only; use num_bins for classifiers")
        num_bins = check_positive_int(num_bins, "num_bins")
        return _reliability_bins(*_top_label(pred, y), num_bins)
    y = _regression_targets(pred, y)
    levels = torch.as_tensor(DEFAULT_LEVELS if levels is None else levels, dtype=y.dtype).reshape(-1)
    if levels.numel() == 0 or not bool(((levels > 0) & (levels < 1)).all()):
        raise ValueError(f"levels must be non-empty and lie strictly between 0 and 1, got {levels.tolist()}")
    pit = pred.cdf(y).reshape(-1, 1)
    observed = _covered(pit, levels.to(pit.device)[None, :]).to(y.dtype).mean(0)
    return levels, observed


def evaluate(pred: Predictive, y, *, level: float = 0.9, y_scale: ScaleLike = 1.0,
             num_bins: int = 15) -> dict[str, float]:
    """All metrics that apply to the predictive's task.

    Args:
        pred: Predictive over ``n`` points.
        y: Targets (``n`` or ``n x m``) or class labels (``n``).
        level: Nominal level of the reported interval coverage (regression).
        y_scale: Regression: scale of the original units (see the module docstring).
        num_bins: Classification: number of ECE bins.

    Returns:
        Regression: ``rmse``, ``nll``, ``crps``, ``coverage_{level}`` (e.g. ``coverage_0.9``).
        Classification: ``accuracy``, ``nll``, ``ece``, ``brier``.
    """
    _require_predictive(pred)
    if pred.is_classification:
        if not _is_unit_scale(y_scale):
            raise ValueError("y_scale applies to regression predictives only")
        return {"accuracy": accuracy(pred, y), "nll": nll(pred, y), "ece": ece(pred, y, num_bins),
                "brier": brier(pred, y)}
    return {"rmse": rmse(pred, y, y_scale=y_scale), "nll": nll(pred, y, y_scale=y_scale),
            "crps": crps(pred, y, y_scale=y_scale), f"coverage_{level:g}": coverage(pred, y, level)}
