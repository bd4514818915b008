"""Input checks that turn bad input into a ValueError/TypeError naming the argument."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def as_tensor(value, name: str, *, dtype: torch.dtype | None = None) -> Tensor:
    """Convert arrays/lists to a tensor, rejecting non-numeric input with a TypeError naming ``name``."""
    if isinstance(value, Tensor):
        t = value
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - re-raised with the argument's name
            raise TypeError(f"{name} must be array-like, got {type(value).__name__}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued, got {t.dtype}")
    if dtype is not None:
        t = t.to(dtype)
    return t


def check_finite(t: Tensor, name: str) -> Tensor:
    if torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return t


def validate_batch(batch, likelihood=None) -> tuple[Tensor, Tensor]:
    """Check a data batch ``(x, y)``: tensors, finite, non-empty, equal lengths, x at least 2-D."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"batch must be a pair (x, y), got {type(batch).__name__}")
    x, y = as_tensor(batch[0], "x"), as_tensor(batch[1], "y")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (n, d) (at least 2-D), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x has zero rows; at least one observation is needed")
    if y.dim() == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, got {x.shape[0]} and "
                         f"{y.shape[0] if y.dim() else 'a scalar'}")
    if not torch.is_floating_point(x):
        x = x.to(torch.get_default_dtype())
    check_finite(x, "x")
    if torch.is_floating_point(y):
        check_finite(y, "y")
    return x, y


def check_theta(theta: Tensor, dim: int, name: str = "theta") -> Tensor:
    if not isinstance(theta, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(theta).__name__}")
    if theta.dim() == 0 or theta.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got {tuple(theta.shape)}")
    return theta


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(value, name: str) -> float:
    if isinstance(value, Tensor):
        if not bool(torch.isfinite(value).all() & (value > 0).all()):
            raise ValueError(f"{name} must be positive and finite, got {value}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_probability(value, name: str) -> float:
    if not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return float(value)


def check_context_query(context_x, context_y, x, dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Validate an amortized model's unbatched inputs: a context ``n x d`` with outputs ``n`` or ``n x 1`` (``n``
    may be 0) and query inputs ``m x d`` (``m >= 1``); returns them as ``(n x d, n x 1, m x d)`` in ``dtype``."""
    for name, value in (("context_x", context_x), ("context_y", context_y), ("x", x)):
        if not isinstance(value, Tensor) or not torch.is_floating_point(value):
            raise TypeError(f"{name} must be a floating-point tensor, got "
                            f"{value.dtype if isinstance(value, Tensor) else type(value).__name__}")
        check_finite(value, name)
    if context_x.dim() != 2 or context_x.shape[1] != dim:
        raise ValueError(f"context_x must have shape n x {dim}, got {tuple(context_x.shape)}")
    if context_y.dim() == 1:
        context_y = context_y.unsqueeze(-1)
    if context_y.shape != (context_x.shape[0], 1):
        raise ValueError(f"context_y must have shape ({context_x.shape[0]},) or ({context_x.shape[0]}, 1), "
                         f"got {tuple(context_y.shape)}")
    if x.dim() != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise ValueError(f"x must have shape m x {dim} with m >= 1, got {tuple(x.shape)}")
    return context_x.to(dtype), context_y.to(dtype), x.to(dtype)
