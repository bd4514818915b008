"""The conditioned-model contract suite: every conditioned model's test class inherits
``ConditionedModelContract`` (scale mixtures, DKMs, conv DKMs, neural processes, PFNs).

Subclasses implement ``make_model(dtype)`` returning ``(model, x, y, x_test)``: a fresh, unfitted model, training
data and test inputs; ``fit_options`` are the settings of a short fit. The suite checks that ``inference.fit``
returns the fitted model with its record, that ``predict`` returns a ``Predictive`` of the right shape and dtype,
that predicting before fitting is a clear error (or works, for models whose predictive depends on their
parameters alone: ``predicts_before_fit``), that bad data give a ``ValueError``/``TypeError`` naming the argument,
determinism under a fixed generator, and a ``state_dict`` round trip.
"""

from __future__ import annotations

import math

import pytest
import torch

import inference
from inference.fit import FitResult
from probnets import Predictive
from probnets.conditioned import ConditionedModel


class ConditionedModelContract:
    #: Keyword arguments of ``inference.fit`` for a short fit.
    fit_options: dict = {}
    #: The dtypes the model computes in.
    dtypes = (torch.float32, torch.float64)
    #: Whether ``predict`` works before fitting (variational and inducing-point models).
    predicts_before_fit = False
    #: Whether the model holds its training data from construction on (a full-rank DKM).
    conditioned_at_construction = False
    #: Whether fitting on no data is valid (an empty context of an amortized model).
    allows_empty_data = False
    #: How error messages name the training inputs and targets.
    x_name, y_name = "x", "y"

    def make_model(self, dtype):
        raise NotImplementedError

    def fitted(self, dtype, seed=0):
        model, x, y, x_test = self.make_model(dtype)
        fitted = inference.fit(model, (x, y), generator=torch.Generator().manual_seed(seed), **self.fit_options)
        return fitted, x, y, x_test

    def predict(self, model, x_test, seed=1):
        return model.predict(x_test, generator=torch.Generator().manual_seed(seed))

    def restore(self, restored, fitted, x, y) -> None:
        """Condition a model whose ``state_dict`` was loaded from ``fitted`` on the same data."""
        restored.condition(x, y)

    def test_fit_returns_the_conditioned_model_with_its_record(self):
        model, x, y, _ = self.make_model(self.dtypes[-1])
        assert isinstance(model, ConditionedModel)
        fitted = inference.fit(model, (x, y), generator=torch.Generator().manual_seed(0), **self.fit_options)
        assert fitted is model and model.is_conditioned
        assert isinstance(model.fit_result, FitResult)

    @pytest.mark.parametrize("dtype_index", [0, 1])
    def test_predict_returns_a_predictive_of_the_right_shape_and_dtype(self, dtype_index):
        if dtype_index >= len(self.dtypes):
            pytest.skip("one dtype")
        dtype = self.dtypes[dtype_index]
        model, _, _, x_test = self.fitted(dtype)
        pred = self.predict(model, x_test)
        assert isinstance(pred, Predictive)
        assert pred.f.shape[1] == x_test.shape[0] and pred.f.dtype == dtype
        assert pred.mean.shape[0] == x_test.shape[0] and bool(torch.isfinite(pred.mean).all())

    def test_predict_before_fit(self):
        model, _, _, x_test = self.make_model(self.dtypes[-1])
        assert model.is_conditioned == self.conditioned_at_construction
        if self.predicts_before_fit:
            assert isinstance(self.predict(model, x_test), Predictive)
        else:
            with pytest.raises(RuntimeError, match="fit"):
                self.predict(model, x_test)

    def test_bad_data_name_the_argument(self):
        model, x, y, _ = self.make_model(self.dtypes[-1])
        x_nan = x.clone()
        x_nan.view(x.shape[0], -1)[0, 0] = math.nan
        y_nan = y.clone().to(x.dtype) if torch.is_floating_point(y) else None
        cases = [((x_nan, y), self.x_name), ((x[:-1], y), None), ((x.reshape(-1), y), self.x_name)]
        if y_nan is not None:
            y_nan.view(-1)[0] = math.nan
            cases.append(((x, y_nan), self.y_name))
        if not self.allows_empty_data:
            cases.append(((x[:0], y[:0]), self.x_name))
        for data, name in cases:
            fresh, *_ = self.make_model(self.dtypes[-1])
            with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b" if name else None):
                inference.fit(fresh, data, **self.fit_options)
        with pytest.raises(TypeError, match="data"):
            inference.fit(model, x)

    def test_bad_test_inputs_name_the_argument(self):
        model, _, _, x_test = self.fitted(self.dtypes[-1])
        x_nan = x_test.clone()
        x_nan.view(x_test.shape[0], -1)[0, 0] = math.nan
        for bad in (x_nan, x_test.reshape(-1)):
            with pytest.raises((ValueError, TypeError), match=r"\bx\b"):
                self.predict(model, bad)

    def test_fixed_generator_gives_identical_fits_and_predictions(self):
        first, _, _, x_test = self.fitted(self.dtypes[-1], seed=3)
        second, _, _, _ = self.fitted(self.dtypes[-1], seed=3)
        a, b = self.predict(first, x_test), self.predict(second, x_test)
        assert torch.equal(a.f, b.f)
        assert a.phi.keys() == b.phi.keys() and all(torch.equal(a.phi[k], b.phi[k]) for k in a.phi)
        assert (a.log_weights is None) == (b.log_weights is None)
        if a.log_weights is not None:
            assert torch.equal(a.log_weights, b.log_weights)

    def test_state_dict_round_trip(self):
        if not isinstance(self.make_model(self.dtypes[-1])[0], torch.nn.Module):
            pytest.skip("not an nn.Module")
        fitted, x, y, x_test = self.fitted(self.dtypes[-1])
        restored, *_ = self.make_model(self.dtypes[-1])
        restored.load_state_dict(fitted.state_dict())
        self.restore(restored, fitted, x, y)
        a, b = self.predict(fitted, x_test), self.predict(restored, x_test)
        torch.testing.assert_close(a.f, b.f, rtol=0, atol=0)
        torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
