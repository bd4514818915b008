"""The conv DKM digits experiment of examples/conv_dkm_digits.py: the split, a quick run, and the paper's
direction (learned representations beat the fixed-kernel limit)."""

import math

import pytest
import torch

from tests_support import load_script


@pytest.fixture(scope="module")
def digits():
    return load_script("examples/conv_dkm_digits.py")


def test_digits_split_is_whitened_and_disjoint(digits):
    split = digits.digits_split(300, seed=1)
    assert split.x_train.shape == (300, 1, 8, 8) and split.x_test.shape == (1497, 1, 8, 8)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.long
    torch.testing.assert_close(split.x_train.mean().item(), 0.0, atol=1e-5, rtol=0)
    torch.testing.assert_close(split.x_train.std().item(), 1.0, atol=1e-3, rtol=0)
    assert set(split.y_train.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="num_train"):
        digits.digits_split(1797)


def test_digits_experiment_quick(digits):
    result = digits.run_digits_experiment(0.01, epochs=1, seed=0, num_train=150, mc_samples=10, num_threads=1)
    assert set(result) >= {"accuracy", "nll", "wall_time"}
    assert 0 <= result["accuracy"] <= 1 and math.isfinite(result["nll"]) and result["wall_time"] > 0


def test_learned_representations_beat_the_fixed_kernel_on_digits(digits):
    """The paper's ablation at CPU scale: nu = 0.01 against nu = inf, same budget."""
    learned = digits.run_digits_experiment(0.01, epochs=40, seed=0, num_threads=1)
    fixed = digits.run_digits_experiment(math.inf, epochs=40, seed=0, num_threads=1)
    assert learned["accuracy"] > 0.93
    assert learned["accuracy"] > fixed["accuracy"] + 0.05
    assert learned["nll"] < fixed["nll"]
