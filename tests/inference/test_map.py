"""MAP estimates by Adam ascent, and their early stopping on validation rows."""

import pyro.distributions as dist
import torch

from inference.map import ascend_rows, early_stopped_map, map_estimates
from probnets import BNN, Gaussian


def _problem(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.sin(2 * x[:, 0]) + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    model = BNN(2, (30,), prior=dist.Normal(0.0, 1.0), likelihood=Gaussian(noise_prior=dist.LogNormal(-1.0, 1.0)))
    return model, (x[:20], y[:20]), (x[20:], y[20:])


def test_ascend_rows_maximises_a_concave_function_row_by_row():
    target = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64)

    def value_and_grad(theta):
        return -(theta - target).square().sum(-1), -2 * (theta - target)

    seen = []
    out = ascend_rows(value_and_grad, torch.zeros(2, 2, dtype=torch.float64), 2000, 0.05,
                      callback=lambda done, theta: seen.append(done))
    torch.testing.assert_close(out, target, atol=1e-6, rtol=0)
    assert seen == list(range(1, 2001))


def test_early_stopping_keeps_the_step_with_the_lowest_validation_nll():
    model, fit, validation = _problem()
    theta, steps = early_stopped_map(model, fit, validation, 3, 400, torch.Generator().manual_seed(1), eval_every=20)
    # the same path, recorded independently: validation NLL at every 20th step from the same starting points
    start = model.init_theta(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    path = {0: -model.log_likelihood(start, validation).mean(-1)}
    ascend_rows(model.logdensity(fit).value_and_grad, start, 400, 1e-2,
                callback=lambda done, t: path.update({done: -model.log_likelihood(t, validation).mean(-1)})
                if done % 20 == 0 else None)
    table = torch.stack(list(path.values()))  # checkpoints x starts
    best = torch.tensor(list(path))[table.argmin(0)]
    assert torch.equal(steps, best) and bool((steps < 400).any())  # this small problem overfits
    torch.testing.assert_close(-model.log_likelihood(theta, validation).mean(-1), table.min(0).values)


def test_refitting_on_the_same_rows_retraces_the_chosen_path():
    model, fit, validation = _problem(seed=2)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    chosen, steps = early_stopped_map(model, fit, validation, 2, 300, g(), eval_every=25)
    refitted, same = early_stopped_map(model, fit, validation, 2, 300, g(), eval_every=25, refit=fit)
    assert torch.equal(steps, same)
    torch.testing.assert_close(refitted, chosen, rtol=0, atol=0)


def test_map_estimates_start_from_prior_draws():
    model, fit, _ = _problem()
    start = model.init_theta(2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(map_estimates(model, fit, 2, 0, torch.Generator().manual_seed(0)), start)
    end = map_estimates(model, fit, 2, 200, torch.Generator().manual_seed(0))
    assert bool((model.logdensity(fit)(end) > model.logdensity(fit)(start)).all())
