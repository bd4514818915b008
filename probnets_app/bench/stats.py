"""The mean and standard error over splits that every bench table and figure reports."""

from __future__ import annotations

import math


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (``sd / sqrt(n)``, ``ddof=1``; NaN for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
