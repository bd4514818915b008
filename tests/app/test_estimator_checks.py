"""``BNNRegressor``/``BNNClassifier`` pass every check of scikit-learn's ``check_estimator`` (run with short
chains: the checks test conventions, and their accuracy checks still pass at this budget), and a fit is never
silent by default."""

import warnings

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from inference.diagnostics import ConvergenceWarning
from probnets_app.estimators import BNNClassifier, BNNRegressor

FAST = dict(widths=(4,), method="hmc", num_chains=2, num_warmup=12, num_samples=3, progress=False)


@parametrize_with_checks([BNNRegressor(**FAST), BNNClassifier(**FAST)])
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short chains do not converge
        check(estimator)


def test_default_verbosity_off_a_terminal_prints_start_and_end_lines(capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    settings = {k: v for k, v in FAST.items() if k != "progress"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        BNNRegressor(**settings).fit(X, X[:, 0])
    err = capsys.readouterr().err.splitlines()  # pytest's captured stderr is not a terminal
    assert err[0].startswith("BNNRegressor: sampling BNN(") and "hmc, 2 chains x (12 warm-up + 3)" in err[0]
    assert err[-1].startswith("BNNRegressor: done in") and "max R-hat" in err[-1]


def test_progress_must_be_true_false_or_auto():
    with pytest.raises(ValueError, match="progress must be True, False or 'auto'"):
        BNNRegressor(**{**FAST, "progress": "loud"}).fit(np.ones((4, 1)) * np.arange(4)[:, None], np.arange(4.0))
