"""The kernel contract suite: every GPyTorch kernel class's test inherits ``KernelContract``.

Subclasses implement ``make_kernel(**overrides)`` (a kernel in float32, its constructor arguments overridden)
and ``make_inputs(n, batch_shape, dtype, seed)`` (``batch_shape x n x d`` inputs). The suite checks positive
semi-definiteness, symmetry, ``diag=True`` against the full matrix, batched hyperparameters and inputs, both
float dtypes, finite hyperparameter gradients (also at duplicated points) that match finite differences, use
inside an ``ExactGP`` with ``ExactMarginalLogLikelihood``, and ValueErrors naming the bad argument.
"""

from __future__ import annotations

import gpytorch
import pytest
import torch

DTYPES = (torch.float32, torch.float64)
# Tolerances relative to the largest kernel entry.
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, kernel):
        super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = kernel

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class KernelContract:
    # Constructor arguments that must be rejected with a ValueError naming them.
    bad_arguments = ({"depth": -1}, {"weight_var": 0.0}, {"bias_var": -1.0}, {"activation": "tanh"})

    def make_kernel(self, **overrides) -> gpytorch.kernels.Kernel:
        raise NotImplementedError

    def make_inputs(self, n: int, batch_shape=(), dtype=torch.float64, seed: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def kernel(self, dtype, **overrides):
        return self.make_kernel(**overrides).to(dtype)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_positive_semidefinite_and_symmetric(self, dtype):
        kernel = self.kernel(dtype)
        x = self.make_inputs(25, dtype=dtype)
        with torch.no_grad():
            K = kernel(x).to_dense()
        assert K.shape == (25, 25) and K.dtype == dtype
        scale = K.abs().max()
        torch.testing.assert_close(K, K.mT, rtol=0, atol=float(TOL[dtype] * scale))
        assert torch.linalg.eigvalsh(K.double()).min() >= -10 * TOL[dtype] * scale

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_cross_covariance_shape_and_diag(self, dtype):
        kernel = self.kernel(dtype)
        x1, x2 = self.make_inputs(6, dtype=dtype, seed=1), self.make_inputs(6, dtype=dtype, seed=2)
        full = kernel(x1, x2).to_dense()
        assert full.shape == (6, 6) and full.dtype == dtype
        assert kernel(x1, self.make_inputs(4, dtype=dtype)).to_dense().shape == (6, 4)
        for a, b in ((x1, x2), (x1, x1)):
            diag = kernel(a, b, diag=True)
            assert diag.shape == (6,)
            expected = kernel(a, b).to_dense().diagonal()
            atol = float(TOL[dtype] * expected.detach().abs().max())
            torch.testing.assert_close(diag, expected, rtol=10 * TOL[dtype], atol=atol)

    def test_batched_hyperparameters_match_unbatched(self):
        values = {"weight_var": (0.7, 2.0), "bias_var": (0.05, 0.5)}
        kernel = self.kernel(torch.float64, batch_shape=torch.Size([2]))
        kernel.weight_var = torch.tensor(values["weight_var"], dtype=torch.float64)
        kernel.bias_var = torch.tensor(values["bias_var"], dtype=torch.float64)
        x = self.make_inputs(5, batch_shape=(2,), seed=3)
        x_shared = self.make_inputs(5, seed=4)
        batched, shared = kernel(x).to_dense(), kernel(x_shared).to_dense()
        diag = kernel(x, diag=True)
        assert batched.shape == (2, 5, 5) and shared.shape == (2, 5, 5) and diag.shape == (2, 5)
        for i in range(2):
            single = self.kernel(torch.float64)
            single.weight_var, single.bias_var = values["weight_var"][i], values["bias_var"][i]
            torch.testing.assert_close(batched[i], single(x[i]).to_dense())
            torch.testing.assert_close(shared[i], single(x_shared).to_dense())
            torch.testing.assert_close(diag[i], single(x[i], diag=True))

    def test_batched_inputs_match_loop(self):
        kernel = self.kernel(torch.float64)
        x1, x2 = self.make_inputs(4, batch_shape=(2, 3), seed=5), self.make_inputs(3, batch_shape=(3,), seed=6)
        out = kernel(x1, x2).to_dense()
        assert out.shape == (2, 3, 4, 3)
        for i in range(2):
            for j in range(3):
                torch.testing.assert_close(out[i, j], kernel(x1[i, j], x2[j]).to_dense())

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_hyperparameter_gradients_finite(self, dtype):
        kernel = self.kernel(dtype)
        x = self.make_inputs(6, dtype=dtype)
        x = torch.cat([x, x[:2]])  # duplicated points: unit correlations off the diagonal too
        kernel(x).to_dense().sum().backward()
        grads = [p.grad for p in kernel.parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)

    def test_gradient_matches_finite_differences(self):
        kernel = self.kernel(torch.float64)
        x = self.make_inputs(5, seed=7)
        x = torch.cat([x, x[:1]])

        def value():
            return kernel(x).to_dense().square().sum()

        value().backward()
        h = 1e-6
        for name, p in kernel.named_parameters():
            direction = torch.randn(p.shape, generator=torch.Generator().manual_seed(8), dtype=p.dtype)
            with torch.no_grad():
                p += h * direction
                up = value()
                p -= 2 * h * direction
                down = value()
                p += h * direction
            torch.testing.assert_close((p.grad * direction).sum(), (up - down) / (2 * h), rtol=1e-5, atol=1e-8,
                                       msg=name)

    def test_exact_gp_marginal_likelihood_trains(self):
        x = self.make_inputs(20, seed=9)
        y = torch.sin(x.flatten(1)[:, 0] * 2) + 0.1 * torch.randn(20, generator=torch.Generator().manual_seed(10),
                                                                  dtype=x.dtype)
        model = _ExactGP(x, y, self.kernel(torch.float64)).double()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        model.train()
        losses = []
        for _ in range(8):
            optimizer.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
            optimizer.step()
            losses.append(loss.item())
        assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0]
        model.eval()
        with torch.no_grad():
            pred = model.likelihood(model(self.make_inputs(4, seed=11)))
        assert torch.isfinite(pred.mean).all() and (pred.variance > 0).all()

    def test_bad_input_raises_value_error_naming_the_argument(self):
        kernel = self.kernel(torch.float64)
        x = self.make_inputs(4)
        for name, args in (("x1", (x.clone(), x)), ("x2", (x, x.clone()))):
            bad = args[0] if name == "x1" else args[1]
            bad.view(-1)[1] = float("nan")
            with pytest.raises(ValueError, match=name):
                kernel(*args)
        with pytest.raises(ValueError, match="x2"):
            kernel(x, x[..., :-1])
        if getattr(kernel, "num_features", None) is not None:
            with pytest.raises(ValueError, match="features"):
                kernel(x[..., :-1])
        for overrides in self.bad_arguments:
            (name,) = overrides
            with pytest.raises(ValueError, match=name):
                self.make_kernel(**overrides)
        with pytest.raises(ValueError, match="weight_var"):
            kernel.weight_var = -1.0
