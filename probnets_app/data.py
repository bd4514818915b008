"""The data of ``probnets fit``: scikit-learn's diabetes data or a CSV file, as a standardised train/test split.

A CSV file is validated cell by cell before any sampling; every problem is a :class:`~probnets_app.cli.DataError`
naming the file, the column and the row.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from probnets_app.cli import PROG, DataError

MIN_TRAIN_ROWS = 10
MIN_TEST_ROWS = 2


def load_split(data: str, *, target: str | None, test_fraction: float, split_seed: int, dtype,
               features=None, drop=None):
    """A standardised :class:`~probnets.datasets.RegressionSplit` of the diabetes data or a CSV file.

    ``features`` (column names) selects the feature columns of a CSV file, ``drop`` leaves columns out;
    a feature column that looks like a row index is warned about on stderr (see :func:`read_csv`).

    Raises:
        DataError: For any problem with the data (missing file, unknown column, non-numeric or missing
            cells, too few rows, a constant target).
    """
    from probnets import datasets

    if data == "diabetes":
        if target is not None:
            raise DataError("--target applies to CSV data only; the diabetes data has a fixed target")
        if features is not None or drop is not None:
            raise DataError("--features and --drop apply to CSV data only; the diabetes data has fixed features")
        return datasets.diabetes(test_fraction=test_fraction, seed=split_seed, dtype=dtype)
    x, y, feature_names = read_csv(data, target, features=features, drop=drop)
    n_test = math.ceil(test_fraction * len(y))  # as scikit-learn's train_test_split
    n_train = len(y) - n_test
    if n_train < MIN_TRAIN_ROWS or n_test < MIN_TEST_ROWS:
        raise DataError(f"{data}: too few rows ({len(y)}) for a train/test split with test fraction {test_fraction:g}: "
                        f"{n_train} training and {n_test} test rows; need at least {MIN_TRAIN_ROWS} training and "
                        f"{MIN_TEST_ROWS} test rows")
    try:
        split = datasets.standardised_split(x, y, test_fraction=test_fraction, seed=split_seed,
                                            feature_names=feature_names, target_name=target, dtype=dtype)
    except ValueError as exc:
        raise DataError(f"{data}: {exc}") from None
    warn_row_indices(data, x, feature_names)  # after the data passed: an error stays the only line
    return split


def read_csv(path: str, target: str | None, *, features=None, drop=None):
    """Numeric features and target of a CSV file with a header row, validated cell by cell.

    Only the columns used are read as numbers: the target and the features, which are ``features`` when
    given, else every other column not in ``drop``. A feature column whose values are unique, increasing
    integers (a row index such as R's ``rownames``) is almost never meant as a feature: :func:`load_split`
    warns on stderr, naming it and the option that leaves it out.

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
    used = _feature_columns(path, header, target, features, drop)
    columns = [header.index(name) for name in (*used, target)]
    values = np.empty((len(numbered) - 1, len(columns)), dtype=np.float64)
    for r, (line, row) in enumerate(numbered[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}: data row {r + 1} (line {line}) has {len(row)} cells, expected {len(header)} "
                            "(one per column)")
        where = f"row {r + 1} (line {line})"
        for j, c in enumerate(columns):
            text = row[c].strip()
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
            values[r, j] = value
    return values[:, :-1], values[:, -1], list(used)


def warn_row_indices(path: str, x, feature_names) -> None:
    """One ``probnets: warning:`` line on stderr per feature column that looks like a row index."""
    for j, name in enumerate(feature_names):
        if looks_like_row_index(x[:, j]):
            print(f"{PROG}: warning: {path}: column {name!r} looks like a row index (unique, increasing integers "
                  f"{x[0, j]:.0f}..{x[-1, j]:.0f}), not a feature; leave it out with --drop {name} (or choose the "
                  "features with --features)", file=sys.stderr)


def looks_like_row_index(column) -> bool:
    """Whether a column's values are integers, each larger than the one before (at least 3 rows)."""
    import numpy as np

    return (len(column) >= 3 and bool(np.all(column == np.round(column)))
            and bool(np.all(np.diff(column) > 0)))


def _feature_columns(path: str, header: list[str], target: str, features, drop) -> tuple[str, ...]:
    """The feature columns: ``features``, or every column but the target and ``drop``; names are checked."""
    for option, names in (("--features", features), ("--drop", drop)):
        unknown = [n for n in names or () if n not in header]
        if unknown:
            raise DataError(f"{path}: {option} names no column {unknown[0]!r}; available columns: {', '.join(header)}")
    if features is not None and drop is not None:
        raise DataError("give --features or --drop, not both")
    if target in (features or ()) or target in (drop or ()):
        raise DataError(f"the target {target!r} cannot be in --features or --drop")
    if features is not None:
        if len(set(features)) != len(features):
            raise DataError(f"--features names a column twice: {', '.join(features)}")
        return tuple(features)
    used = tuple(h for h in header if h != target and h not in (drop or ()))
    if not used:
        raise DataError(f"{path}: no feature columns left besides the target {target!r}")
    return used
