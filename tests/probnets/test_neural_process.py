"""Neural processes. A conformance suite every model inherits (permutation invariance in the context, the
Predictive contract over dtypes and context sizes, seeded randomness, a short meta-training run that learns and
stays below the oracle GP, bad input), plus the martingale-posterior checks of the method notes: invariance to
the order of the pseudo context, the reduction to the CNP/CANP loss, and MPNP's target log-likelihood against
CNP's on 1000 held-out tasks."""

from __future__ import annotations

import math

import pytest
import torch

from inference.amortized import train_amortized
from probnets import Predictive
from probnets.neural_process import ANP, CANP, CNP, MPANP, MPNP, NP
from probnets.priors import GPTaskPrior
from conditioned_contract import ConditionedModelContract


def _context(batch=2, n=9, m=4, dim=1, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, n, dim, generator=g, dtype=dtype), torch.randn(batch, n, 1, generator=g, dtype=dtype),
            torch.randn(batch, m, dim, generator=g, dtype=dtype))


class NeuralProcessConformance(ConditionedModelContract):
    """Tests every neural process passes (with the conditioned-model contract); subclasses set ``model_class``."""

    model_class: type
    allows_empty_data = True
    x_name, y_name = "context_x", "context_y"

    def make_model(self, dtype):
        cx, cy, x = _context(batch=1, dtype=dtype)
        return self.make().to(dtype), cx[0], cy[0], x[0]

    def make(self, dim: int = 1, **kwargs):
        torch.manual_seed(0)
        return self.model_class(dim, width=16, num_heads=2, **kwargs)

    def test_context_permutation_invariance(self):
        model = self.make().double()
        cx, cy, x = _context()
        perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
        first = model(cx, cy, x, num_samples=3, generator=torch.Generator().manual_seed(4))
        permuted = model(cx[:, perm], cy[:, perm], x, num_samples=3, generator=torch.Generator().manual_seed(4))
        for a, b in zip(first, permuted):
            assert a.shape[1:] == (2, 4, 1)
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)

    def test_seeded_randomness_is_reproducible(self):
        model = self.make().double()
        cx, cy, x = _context()
        a = model(cx, cy, x, num_samples=3, generator=torch.Generator().manual_seed(4))
        b = model(cx, cy, x, num_samples=3, generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(a, b, atol=0, rtol=0)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("num_context", [0, 1, 6])
    def test_predictive_contract(self, dtype, num_context):
        model = self.make(dim=2).to(dtype)
        g = torch.Generator().manual_seed(2)
        pred = model.predict(torch.randn(num_context, 2, generator=g, dtype=dtype),
                             torch.randn(num_context, generator=g, dtype=dtype),
                             torch.randn(5, 2, generator=g, dtype=dtype), num_samples=4)
        assert isinstance(pred, Predictive)
        assert pred.mean.shape == pred.variance.shape == (5, 1) and pred.mean.dtype == dtype
        assert bool((pred.variance >= model.min_scale**2 - 1e-6).all())
        log_p = pred.log_prob(torch.zeros(5, dtype=dtype))
        assert log_p.shape == (5,) and bool(torch.isfinite(log_p).all())

    def test_log_likelihood_is_the_predictive_log_density(self):
        model = self.make().double()
        batch = GPTaskPrior("rbf").sample(1, num_context=5, num_target=7, generator=torch.Generator().manual_seed(8),
                                          dtype=torch.float64)
        context_ll, target_ll = model.log_likelihood(batch, num_samples=6, generator=torch.Generator().manual_seed(9))
        pred = model.predict(batch.context_x[0], batch.context_y[0], batch.x[0], num_samples=6,
                             generator=torch.Generator().manual_seed(9))
        log_p = pred.log_prob(batch.y[0])
        torch.testing.assert_close(context_ll, log_p[:5].mean()[None])
        torch.testing.assert_close(target_ll, log_p[5:].mean()[None])

    def test_meta_training_learns_and_stays_below_the_oracle_gp(self):
        prior = GPTaskPrior("rbf")
        torch.manual_seed(0)
        model = self.model_class(width=32, num_heads=2)
        held_out = prior.sample(500, num_context=10, num_target=20, generator=torch.Generator().manual_seed(99))

        def target_ll() -> torch.Tensor:
            with torch.no_grad():
                return model.log_likelihood(held_out, num_samples=8, generator=torch.Generator().manual_seed(7))[1]

        before = target_ll()
        train_amortized(model, prior, num_steps=200, batch_size=16, lr=1e-3, progress=False)
        after = target_ll()
        _, oracle = prior.oracle_log_prob(held_out)
        gain, gap = after - before, oracle.double() - after.double()
        assert gain.mean() > 5 * gain.std() / math.sqrt(500)
        assert gap.mean() > 3.5 * gap.std() / math.sqrt(500)  # the exact GP with the true hyperparameters is better

    def test_bad_input(self):
        model = self.make()
        x = torch.randn(3, 1)
        with pytest.raises(ValueError, match="context_x"):
            model.predict(torch.randn(3, 2), torch.zeros(3), x)
        with pytest.raises(ValueError, match="x must have shape"):
            model.predict(x, torch.zeros(3), x[:0])
        with pytest.raises(ValueError, match="NaN"):
            model.predict(x, torch.tensor([0.0, math.nan, 0.0]), x)
        with pytest.raises(TypeError, match="floating-point"):
            model.predict(x, torch.zeros(3, dtype=torch.long), x)
        with pytest.raises(ValueError, match="num_samples"):
            model.predict(x, torch.zeros(3), x, num_samples=0)
        with pytest.raises(ValueError, match="min_scale"):
            self.model_class(min_scale=1.5)
        with pytest.raises(ValueError, match="width"):
            self.model_class(width=0)


class TestCNP(NeuralProcessConformance):
    model_class = CNP


class TestCANP(NeuralProcessConformance):
    model_class = CANP

    def test_width_must_divide_into_heads(self):
        with pytest.raises(ValueError, match="divisible by num_heads"):
            CANP(width=10, num_heads=4)


class TestNP(NeuralProcessConformance):
    model_class = NP

    def test_loss_is_the_negative_elbo_per_point(self):
        model = self.make().double()
        batch = GPTaskPrior("rbf").sample(3, num_context=4, num_target=6, generator=torch.Generator().manual_seed(5),
                                          dtype=torch.float64)
        loss = model.loss(batch, generator=torch.Generator().manual_seed(6))
        q_all, q_context = model.latent(batch.x, batch.y), model.latent(batch.context_x, batch.context_y)
        z = q_all.loc + q_all.scale * torch.randn(q_all.loc.shape, generator=torch.Generator().manual_seed(6),
                                                  dtype=torch.float64)
        mean, scale = model._decode_with(z[None], batch.context_x, batch.context_y, batch.x)
        log_lik = torch.distributions.Normal(mean[0], scale[0]).log_prob(batch.y).sum((1, 2))
        kl = torch.distributions.kl_divergence(q_all, q_context).sum(-1)
        torch.testing.assert_close(loss, -((log_lik - kl) / 10).mean())
        assert bool((kl >= 0).all())


class TestANP(TestNP):
    model_class = ANP


class TestMPNP(NeuralProcessConformance):
    model_class = MPNP
    base_class = CNP

    def test_pseudo_context_permutation_invariance(self):
        model = self.make().double()
        cx, cy, x = _context()
        keys, values = model.path.encode(cx, cy)
        pseudo_keys, pseudo_values = model.pseudo_context(values, 3, torch.Generator().manual_seed(4))
        assert pseudo_values.shape == (3, 2, model.num_pseudo, 16)
        perm = torch.randperm(model.num_pseudo, generator=torch.Generator().manual_seed(5))
        lead = (3,) + keys.shape
        joint = [torch.cat([a.expand(lead), b], -2) for a, b in ((keys, pseudo_keys), (values, pseudo_values))]
        permuted = [torch.cat([a.expand(lead), b[:, :, perm]], -2) for a, b in ((keys, pseudo_keys),
                                                                              (values, pseudo_values))]
        for a, b in zip(model.decode_from(*joint, x), model.decode_from(*permuted, x)):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)

    def test_one_draw_and_no_pseudo_context_reduce_to_the_base_loss(self):
        model = self.make(num_pseudo=0, num_draws=1).double()
        torch.manual_seed(1)
        base = self.base_class(width=16, num_heads=2).double()
        model.path.load_state_dict(base.path.state_dict())
        model.decoder.load_state_dict(base.decoder.state_dict())
        batch = GPTaskPrior("rbf").sample(4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        terms = model.loss_terms(batch)
        torch.testing.assert_close(terms["marginal"], base.loss(batch), atol=1e-12, rtol=0)
        torch.testing.assert_close(terms["amortized"], base.loss(batch), atol=1e-12, rtol=0)

    def test_bad_hyperparameters(self):
        with pytest.raises(ValueError, match="num_draws"):
            self.model_class(num_draws=0)
        with pytest.raises(ValueError, match="num_pseudo"):
            self.model_class(num_pseudo=-1)


class TestMPANP(TestMPNP):
    model_class = MPANP
    base_class = CANP


def _mpnp_against_cnp(num_steps: int, num_tasks: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Target log-likelihoods of CNP and MPNP (width 64, K = 4, M = 20) trained alike on 1-D RBF tasks, on
    ``num_tasks`` held-out tasks (10 batches, each with its own context size)."""
    prior = GPTaskPrior("rbf")
    held_out = [prior.sample(num_tasks // 10, generator=torch.Generator().manual_seed(1000 + i)) for i in range(10)]
    results = []
    for cls in (CNP, MPNP):
        torch.manual_seed(0)
        model = cls(width=64)
        train_amortized(model, prior, num_steps=num_steps, batch_size=16, lr=5e-4, progress=False)
        with torch.no_grad():
            results.append(torch.cat([model.log_likelihood(b, generator=torch.Generator().manual_seed(3))[1]
                                      for b in held_out]))
    oracle = torch.cat([prior.oracle_log_prob(b)[1] for b in held_out])
    assert bool((oracle.mean() > results[0].mean()) & (oracle.mean() > results[1].mean()))
    return results[0], results[1]


def test_mpnp_target_log_likelihood_is_close_to_cnps_after_short_training():
    # Fast version: at 400 steps the direction is not settled yet (the notes call it weak at small scale), so this
    # checks non-inferiority within 0.03 nats; the next test checks the direction at the notes' 3000 steps.
    cnp, mpnp = _mpnp_against_cnp(num_steps=400, num_tasks=300)
    diff = (mpnp - cnp).double()
    assert diff.mean() + 2 * diff.std() / math.sqrt(diff.numel()) > -0.03


def test_mpnp_target_log_likelihood_is_at_least_cnps():
    cnp, mpnp = _mpnp_against_cnp(num_steps=3000)
    diff = (mpnp - cnp).double()
    assert diff.mean() > -2 * diff.std() / math.sqrt(diff.numel())
