"""The ProbModel contract suite: every model's test class inherits ``ProbModelContract``.

Subclasses implement ``make_model(dtype)`` returning ``(model, x, y)``; the suite checks shapes over
leading dimensions, dtypes, vectorised vs looped evaluation, chunking, gradients and the predictive.
"""

from __future__ import annotations

import pytest
import torch

DTYPES = (torch.float32, torch.float64)
BATCH_SHAPES = ((), (3,), (2, 3))


class ProbModelContract:
    def make_model(self, dtype):
        raise NotImplementedError

    def theta(self, model, batch_shape, dtype, seed=0):
        g = torch.Generator().manual_seed(seed)
        num = int(torch.Size(batch_shape).numel())
        return model.init_theta(max(num, 1), generator=g, dtype=dtype)[:num].reshape(*batch_shape, model.spec.dim)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
    def test_shapes(self, dtype, batch_shape):
        model, x, y = self.make_model(dtype)
        theta = self.theta(model, batch_shape, dtype)
        n = x.shape[0]
        assert model.log_prior(theta).shape == batch_shape
        f = model.predict_f(theta, x)
        assert f.shape[:-1] == (*batch_shape, n) and f.dtype == dtype
        batch = model.prepare_batch((x, y))
        assert model.log_likelihood(theta, batch).shape == (*batch_shape, n)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_init_theta(self, dtype):
        model, x, y = self.make_model(dtype)
        a = model.init_theta(4, generator=torch.Generator().manual_seed(1), dtype=dtype)
        b = model.init_theta(4, generator=torch.Generator().manual_seed(1), dtype=dtype)
        assert a.shape == (4, model.spec.dim) and a.dtype == dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert torch.isfinite(model.logdensity((x, y)).value_and_grad(a)[0]).all()

    def test_predict_f_equals_loop_over_draws(self):
        model, x, _ = self.make_model(torch.float64)
        theta = self.theta(model, (5,), torch.float64)
        batched = model.predict_f(theta, x)
        looped = torch.stack([model.predict_f(t, x) for t in theta])
        torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-12)
        chunked = model.predict_f(theta, x, chunk_size=2)
        torch.testing.assert_close(chunked, batched, rtol=1e-12, atol=1e-12)

    def test_logdensity_gradient_matches_finite_differences(self):
        model, x, y = self.make_model(torch.float64)
        theta = self.theta(model, (2,), torch.float64, seed=3)
        ld = model.logdensity((x, y))
        value, grad = ld.value_and_grad(theta)
        torch.testing.assert_close(value, ld(theta))
        g = torch.Generator().manual_seed(5)
        direction = torch.randn(theta.shape, generator=g, dtype=torch.float64)
        h = 1e-6
        fd = (ld(theta + h * direction) - ld(theta - h * direction)) / (2 * h)
        torch.testing.assert_close((grad * direction).sum(-1), fd, rtol=1e-5, atol=1e-5)

    def test_logdensity_is_prior_plus_likelihood(self):
        model, x, y = self.make_model(torch.float64)
        theta = self.theta(model, (3,), torch.float64)
        batch = model.prepare_batch((x, y))
        expected = model.log_prior(theta) + model.log_likelihood(theta, batch).sum(-1) / 2.0
        torch.testing.assert_close(model.logdensity((x, y), temperature=2.0)(theta), expected)

    def test_nan_theta_gives_non_finite_density_not_an_exception(self):
        model, x, y = self.make_model(torch.float64)
        theta = self.theta(model, (2,), torch.float64)
        theta[0, 0] = float("nan")
        value, grad = model.logdensity((x, y)).value_and_grad(theta)
        assert not torch.isfinite(value[0]) and torch.isfinite(value[1])

    def test_predictive(self):
        model, x, y = self.make_model(torch.float64)
        theta = self.theta(model, (6,), torch.float64)
        pred = model.predictive(theta, x)
        assert pred.log_prob(y).shape == (x.shape[0],)
        assert torch.isfinite(pred.log_prob(y)).all()

    def test_bad_data_raises_value_error_naming_the_argument(self):
        model, x, y = self.make_model(torch.float64)
        bad_x = x.clone()
        bad_x.view(-1)[0] = float("nan")
        with pytest.raises(ValueError, match="x"):
            model.logdensity((bad_x, y))
        with pytest.raises(ValueError, match="rows"):
            model.logdensity((x[:-1], y))
        with pytest.raises(ValueError, match="zero rows"):
            model.logdensity((x[:0], y[:0]))
        with pytest.raises(ValueError, match="theta"):
            model.log_prior(torch.zeros(model.spec.dim + 1, dtype=torch.float64))
