"""The data of the bench: data sets by name or CSV path, their saved split indices, and one split as a problem.

Split indices follow the Hernandez-Lobato and Adams (2015) protocol (:func:`probnets.datasets.protocol_split`):
90/10 train/test, the last 20% of the shuffled training rows as validation rows for methods that tune on them.
They are written once to ``<out>/splits/<data set>.json`` with a hash of the data and read back by every later
cell and run, so every method sees the same rows; a data file that changed since is an error, not a new split.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEST_FRACTION = 0.1
VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class DataSource:
    """A data set the bench can load: a bundled name (``probnets.datasets.TABLES``) or a CSV file.

    Attributes:
        key: Name used in file names and tables (the bundled name, or the CSV file's stem).
        spec: What the user gave (name or path).
        target: CSV only: the target column.
        task: CSV only: ``"regression"`` or ``"classification"`` (labels are mapped to ``0..K-1``).
    """

    key: str
    spec: str
    target: str | None = None
    task: str = "regression"

    def table(self):
        """The whole data set as a :class:`probnets.datasets.Table`."""
        import numpy as np

        from probnets import datasets
        from probnets_app.data import read_csv

        if self.spec in datasets.TABLES:
            return datasets.table(self.spec)
        x, y, names = read_csv(self.spec, self.target)
        classes = None
        if self.task == "classification":
            values, y = np.unique(y, return_inverse=True)
            y, classes = y.astype(np.float64), len(values)
            if classes < 2:
                raise ValueError(f"{self.spec}: the class column {self.target!r} has a single value")
        return datasets.Table(x, y, tuple(names), self.target, self.task, classes)


def data_source(spec: str, *, target: str | None = None, task: str = "regression") -> DataSource:
    """The :class:`DataSource` named by ``spec`` (a bundled name or the path of a CSV file).

    Raises:
        ValueError: An unknown name that is no existing file, or ``target`` given for a bundled set.
    """
    from probnets import datasets

    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    if spec in datasets.TABLES:
        if target is not None:
            raise ValueError(f"target applies to CSV files only; the bundled data set {spec!r} has a fixed target")
        return DataSource(spec, spec)
    if not spec.lower().endswith(".csv") or not Path(spec).is_file():
        raise ValueError(f"data set {spec!r} is neither a bundled data set ({', '.join(datasets.TABLES)}) nor an "
                         "existing .csv file")
    if target is None:
        raise ValueError(f"data set {spec!r} is a CSV file: give its target column (--target)")
    return DataSource(Path(spec).stem, spec, target, task)


def table_hash(table) -> str:
    """A short hash of a table's inputs and targets (to detect a changed data file)."""
    digest = hashlib.sha256(table.x.tobytes() + table.y.tobytes())
    return digest.hexdigest()[:16]


def rows_hash(rows: dict[str, list[int]]) -> str:
    """A short hash of one split's row indices (recorded by every cell, to show they all used the same rows)."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def saved_splits(source: DataSource, num_splits: int, out: Path, *, seed: int = 0) -> list[dict[str, list[int]]]:
    """The first ``num_splits`` splits of ``source``: read from ``out/splits/<key>.json``, extended and saved there.

    Raises:
        ValueError: The file holds splits of other data (another hash or row count) or another seed.
    """
    from probnets import datasets

    table = source.table()
    path = out / "splits" / f"{source.key}.json"
    header = {"data_set": source.spec, "target": table.target_name, "num_rows": int(len(table.y)),
              "data_hash": table_hash(table), "seed": seed, "test_fraction": TEST_FRACTION,
              "validation_fraction": VALIDATION_FRACTION}
    saved: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {**header, "splits": []}
    differ = [k for k in header if k not in ("data_set",) and saved.get(k) != header[k]]
    if differ:
        raise ValueError(f"{path} holds the splits of other data or settings ({', '.join(differ)} differ: saved "
                         f"{[saved.get(k) for k in differ]}, now {[header[k] for k in differ]}); use another out "
                         "folder")
    splits = saved["splits"]
    if len(splits) < num_splits:
        for index in range(len(splits), num_splits):
            split = datasets.protocol_split(len(table.y), index, test_fraction=TEST_FRACTION,
                                            validation_fraction=VALIDATION_FRACTION, seed=seed)
            splits.append({part: rows.tolist() for part, rows in split.items()})
        write_json(path, {**header, "splits": splits})
    return splits[:num_splits]


@dataclass(frozen=True)
class Problem:
    """One split of one data set, standardised with its training rows' statistics.

    Attributes:
        data: The standardised :class:`probnets.datasets.RegressionSplit` (train = all training rows; class
            labels are kept as they are).
        validation: Positions of the validation rows within ``data.x_train`` (a tensor of ints).
        task: ``"regression"`` or ``"classification"``.
        num_classes: Classification only.
    """

    data: Any
    validation: Any
    task: str
    num_classes: int | None

    @property
    def in_features(self) -> int:
        return self.data.x_train.shape[1]

    @property
    def fit_rows(self):
        """``(x, y)`` of the training rows outside the validation part."""
        import torch

        keep = torch.ones(self.data.x_train.shape[0], dtype=torch.bool)
        keep[self.validation] = False
        return self.data.x_train[keep], self.data.y_train[keep]

    @property
    def validation_rows(self):
        return self.data.x_train[self.validation], self.data.y_train[self.validation]


def problem(source: DataSource, split: dict[str, list[int]]) -> Problem:
    """The :class:`Problem` of one saved split."""
    import numpy as np
    import torch

    from probnets import datasets

    table = source.table()
    train = np.asarray(split["train"])
    data = datasets.split_by_index(table.x, table.y, train, np.asarray(split["test"]),
                                   feature_names=table.feature_names,
                                   target_name=table.target_name, standardise_y=table.task == "regression")
    position = {row: i for i, row in enumerate(train.tolist())}
    validation = torch.tensor([position[row] for row in split["validation"]], dtype=torch.long)
    return Problem(data, validation, table.task, table.num_classes)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
