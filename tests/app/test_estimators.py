"""scikit-learn estimators: conventions (params, clone, NotFittedError, input checks), shapes and a sanity fit."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from inference.diagnostics import ConvergenceWarning
from probnets_app.estimators import BNNClassifier, BNNRegressor

TINY = {"num_chains": 4, "num_warmup": 30, "num_samples": 15, "widths": (8,)}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny runs do not converge
        yield


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(60, 1))
    y = 10.0 + 3.0 * np.sin(2 * X[:, 0]) + 0.2 * rng.normal(size=60)
    return X, y


@pytest.fixture(scope="module")
def fitted_regressor(regression_data):
    X, y = regression_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BNNRegressor(widths=(20,), num_chains=8, num_warmup=150, num_samples=30, seed=1).fit(X, y)


def test_regressor_shapes_and_attributes(fitted_regressor, regression_data):
    X, _ = regression_data
    reg = fitted_regressor
    assert reg.n_features_in_ == 1
    assert reg.posterior_.samples.shape[:2] == (8, 30)
    mean = reg.predict(X[:7])
    mean2, std = reg.predict(X[:7], return_std=True)
    assert mean.shape == std.shape == (7,)
    np.testing.assert_allclose(mean, mean2)
    assert (std > 0).all()
    lower, upper = reg.predict_interval(X[:7], level=0.9)
    assert lower.shape == upper.shape == (7,)
    assert (lower < mean).all() and (mean < upper).all()
    assert set(reg.diagnostics_) >= {"max_rhat", "min_ess_bulk", "num_divergences"}


def test_regressor_beats_the_mean(fitted_regressor, regression_data):
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(100, 1))
    y = 10.0 + 3.0 * np.sin(2 * X[:, 0]) + 0.2 * rng.normal(size=100)
    assert fitted_regressor.score(X, y) > 0.8  # R^2 (predicting the mean scores 0)
    _, std = fitted_regressor.predict(X, return_std=True)
    assert 0.1 < np.median(std) < 1.0  # original units: noise sd 0.2 plus epistemic part


def test_multi_output_regression():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 3))
    Y = np.column_stack([X[:, 0], 100 * X[:, 1]])
    reg = BNNRegressor(**TINY).fit(X, Y)
    mean, std = reg.predict(X[:5], return_std=True)
    assert mean.shape == std.shape == (5, 2)
    assert std[:, 1].mean() > std[:, 0].mean()  # per-output scales in original units


def test_classifier_binary_and_multiclass():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 2))
    labels = np.where(X[:, 0] > 0, "yes", "no")
    clf = BNNClassifier(**TINY).fit(X, labels)
    proba = clf.predict_proba(X[:6])
    assert list(clf.classes_) == ["no", "yes"] and proba.shape == (6, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(clf.predict(X)) <= {"no", "yes"}
    assert 0 <= clf.score(X, labels) <= 1

    y3 = np.digitize(X[:, 0], [-0.5, 0.5])
    clf3 = BNNClassifier(**TINY).fit(X, y3)
    proba3 = clf3.predict_proba(X[:6])
    assert proba3.shape == (6, 3)
    np.testing.assert_allclose(proba3.sum(1), 1.0)
    assert clf3.predict(X[:6]).shape == (6,)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        BNNRegressor().predict(np.zeros((2, 1)))
    with pytest.raises(NotFittedError):
        BNNClassifier().predict_proba(np.zeros((2, 1)))


def test_params_and_clone():
    reg = BNNRegressor(widths=(5, 5), method="nuts", num_chains=2, seed=3)
    params = reg.get_params()
    assert params["widths"] == (5, 5) and params["method"] == "nuts" and params["num_warmup"] is None
    copy = clone(reg)
    assert copy.get_params() == params and copy is not reg
    copy.set_params(seed=7, widths=(3,))
    assert copy.seed == 7 and copy.widths == (3,) and reg.seed == 3
    clf = clone(BNNClassifier(activation="relu"))
    assert clf.get_params()["activation"] == "relu"


def test_input_checks(regression_data):
    X, y = regression_data
    bad = X.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError):
        BNNRegressor(**TINY).fit(bad, y)
    bad_y = y.copy()
    bad_y[0] = np.inf
    with pytest.raises(ValueError):
        BNNRegressor(**TINY).fit(X, bad_y)
    with pytest.raises(ValueError, match="method"):
        BNNRegressor(method="gibbs").fit(X, y)


def test_predict_checks(fitted_regressor):
    with pytest.raises(ValueError):
        fitted_regressor.predict(np.array([[np.nan]]))
    with pytest.raises(ValueError):
        fitted_regressor.predict(np.zeros((3, 2)))  # wrong number of features
    with pytest.raises(ValueError):
        fitted_regressor.predict_interval(np.zeros((3, 1)), level=1.5)


@pytest.mark.parametrize("estimator", [BNNRegressor, BNNClassifier])
def test_until_converged_runs_in_rounds_and_reports_the_outcome(regression_data, estimator):
    """A budget that ends after the first round is reported as such; without the option there is no outcome."""
    X, y = regression_data
    target = y if estimator is BNNRegressor else (y > 10.0).astype(int)
    fitted = estimator(**TINY, until_converged=True, max_time=1e-6, progress=False).fit(X, target)
    assert fitted.diagnostics_["until_converged"]["reason"] == "max_time"
    assert fitted.diagnostics_["until_converged"]["rounds"] == 1 and not fitted.diagnostics_["until_converged"][
        "converged"]
    assert "until_converged" not in estimator(**TINY, progress=False).fit(X, target).diagnostics_
