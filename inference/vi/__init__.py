"""Variational engines behind one entry point, ``fit_vi``.

A method is registered as ``name -> "module:function"`` in ``VI_METHODS`` (imported on first use). The function's
signature is ``fit(model, data, **options) -> posterior``; ``fit_vi`` binds the options against it, so an unknown
option is a ``TypeError`` naming it and listing the method's options.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

VI_METHODS: dict[str, str] = {}
VI_METHODS["mfvi"] = "inference.vi.mfvi:fit"                  # Gaussian VI, mean-field or low-rank, any ProbModel
VI_METHODS["ssvi"] = "inference.vi.ssvi:fit"                  # sparse subspace VI of a BNN
VI_METHODS["mp-gelu"] = "inference.vi.mp_gelu:fit_mp_gelu"   # deterministic VI, MP-GELU network
VI_METHODS["relu-mp"] = "inference.vi.mp_gelu:fit_relu_mp"   # deterministic VI, ReLU network (diagonal or full)
VI_METHODS["gelu-mp"] = "inference.vi.mp_gelu:fit_gelu_mp"   # deterministic VI, GELU network (exact moments)


def get(name: str) -> Callable[..., Any]:
    """The fit function of the VI method ``name``; a ``ValueError`` listing the methods otherwise."""
    if name not in VI_METHODS:
        raise ValueError(f"method must be one of {tuple(VI_METHODS)}, got {name!r}")
    module, function = VI_METHODS[name].split(":")
    return getattr(importlib.import_module(module), function)


def options(name: str) -> dict[str, Any]:
    """The keyword options of the VI method ``name`` and their defaults."""
    return {p.name: p.default for p in inspect.signature(get(name)).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def fit_vi(model, data, *, method: str = "mfvi", **kwargs):
    """Fit ``model`` to ``data`` with the variational method ``method`` (one of ``VI_METHODS``).

    Returns:
        The method's posterior (a ``GaussianPosterior`` or a moment posterior) with ``sample``, ``predictive``,
        ``save``/``load`` and ``to_arviz``.
    """
    fit = get(method)
    unknown = sorted(set(kwargs) - set(options(method)))
    if unknown:
        raise TypeError(f"method {method!r} does not accept the option(s) {unknown}; its options are "
                        f"{sorted(options(method))}")
    return fit(model, data, **kwargs)
