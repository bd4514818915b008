"""The data of ``probnets fit``: scikit-learn's diabetes data or a CSV file, as a standardised train/test split.

A CSV file is validated cell by cell before any sampling; every problem is a :class:`~probnets_app.cli.DataError`
naming the file, the column and the row.
"""

from __future__ import annotations

import math
from pathlib import Path

from probnets_app.cli import DataError

MIN_TRAIN_ROWS = 10
MIN_TEST_ROWS = 2


def load_split(data: str, *, target: str | None, test_fraction: float, split_seed: int, dtype):
    """A standardised :class:`~probnets.datasets.RegressionSplit` of the diabetes data or a CSV file.

    Raises:
        DataError: For any problem with the data (missing file, unknown column, non-numeric or missing
            cells, too few rows, a constant target).
    """
    from probnets import datasets

    if data == "diabetes":
        if target is not None:
            raise DataError("--target applies to CSV data only; the diabetes data has a fixed target")
        return datasets.diabetes(test_fraction=test_fraction, seed=split_seed, dtype=dtype)
    x, y, feature_names = read_csv(data, target)
    n_test = math.ceil(test_fraction * len(y))  # as scikit-learn's train_test_split
    n_train = len(y) - n_test
    if n_train < MIN_TRAIN_ROWS or n_test < MIN_TEST_ROWS:
        raise DataError(f"{data}: too few rows ({len(y)}) for a train/test split with test fraction {test_fraction:g}: "
                        f"{n_train} training and {n_test} test rows; need at least {MIN_TRAIN_ROWS} training and "
                        f"{MIN_TEST_ROWS} test rows")
    try:
        return datasets.standardised_split(x, y, test_fraction=test_fraction, seed=split_seed,
                                           feature_names=feature_names, target_name=target, dtype=dtype)
    except ValueError as exc:
        raise DataError(f"{data}: {exc}") from None


def read_csv(path: str, target: str | None):
    """Numeric features and target of a CSV file with a header row, validated cell by cell.

    Returns:
        ``(x, y, feature_names)`` with ``x`` an ``n x d`` and ``y`` an ``n`` float64 numpy array.

    Raises:
        DataError: Naming the file, and the column and the data row (1-based, header excluded; with the
            line number of the file) of a bad cell.
    """
    import csv

    import numpy as np

    file = Path(path)
    if not file.exists():
        raise DataError(f"data file {path!r} does not exist (use 'diabetes' or the path of a CSV file)")
    if file.is_dir():
        raise DataError(f"data path {path!r} is a directory, not a CSV file")
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path!r}: {exc}") from None
    # Blank lines carry no data.
    numbered = [(i + 1, row) for i, row in enumerate(rows) if any(cell.strip() for cell in row)]
    if not numbered:
        raise DataError(f"{path}: the file is empty")
    _, header = numbered[0]
    header = [h.strip() for h in header]
    if any(not h for h in header):
        raise DataError(f"{path}: the header row has an empty column name (column {header.index('') + 1})")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DataError(f"{path}: duplicate column names {duplicates}")
    if target is None:
        raise DataError(f"--target is required for CSV data; available columns: {', '.join(header)}")
    if target not in header:
        raise DataError(f"{path}: no column {target!r}; available columns: {', '.join(header)}")
    if len(header) < 2:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    values = np.empty((len(numbered) - 1, len(header)), dtype=np.float64)
    for r, (line, row) in enumerate(numbered[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}: data row {r + 1} (line {line}) has {len(row)} cells, expected {len(header)} "
                            "(one per column)")
        where = f"row {r + 1} (line {line})"
        for c, cell in enumerate(row):
            text = cell.strip()
            if not text:
                raise DataError(f"{path}: empty cell in column {header[c]!r}, {where}")
            try:
                value = float(text)
            except ValueError:
                raise DataError(f"{path}: non-numeric value {text[:40]!r} in column {header[c]!r}, {where}") from None
            if math.isnan(value):
                raise DataError(f"{path}: missing value (NaN) in column {header[c]!r}, {where}")
            if math.isinf(value):
                raise DataError(f"{path}: infinite value in column {header[c]!r}, {where}")
            values[r, c] = value
    t = header.index(target)
    features = [h for i, h in enumerate(header) if i != t]
    return np.delete(values, t, axis=1), values[:, t], features
