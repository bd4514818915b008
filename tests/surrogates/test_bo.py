"""BO loops: single and multi-objective runs, resume identical to an uninterrupted run, input checks."""

import pytest
import torch
from botorch.utils.multi_objective.box_decompositions import DominatedPartitioning

from surrogates import PROBLEMS, get_problem, run_bo

TINY_HMC = {"widths": (16,), "num_chains": 4, "num_warmup": 40, "num_samples": 8, "pretrain_steps": 50}


def test_problems_are_maximisation_with_known_optima():
    branin = get_problem("branin")
    x_star = torch.tensor([[-torch.pi, 12.275]], dtype=torch.float64)
    assert abs(float(branin(x_star)) - branin.optimal_value) < 1e-5
    for name in PROBLEMS:
        problem = get_problem(name)
        X = problem.bounds[0] + torch.rand(4, problem.dim, dtype=torch.float64) * (problem.bounds[1] - problem.bounds[0])
        Y = problem(X)
        assert Y.shape == (4, problem.num_objectives) and bool(torch.isfinite(Y).all())
    a, b = get_problem("bnn-draw", dim=8, seed=3), get_problem("bnn-draw", dim=8, seed=3)
    X = torch.rand(5, 8, dtype=torch.float64)
    torch.testing.assert_close(a(X), b(X))
    assert not torch.allclose(get_problem("poly-draw", dim=8, seed=1)(X), get_problem("poly-draw", dim=8, seed=2)(X))


def test_bnn_draw_has_the_study_scaling():
    # N(0, 1) weights on [0, 1]^d saturate the tanh units: the output spreads like a sum of 256 N(0, 1)
    # output weights times +-1 (sd ~16), where a fan-in-scaled network would give sd below 1.
    problem = get_problem("bnn-draw", dim=50, seed=0)
    assert torch.equal(problem.bounds, torch.stack([torch.zeros(50), torch.ones(50)]).double())
    Y = problem(torch.rand(500, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert float(Y.std()) > 5.0


def test_single_objective_run():
    result = run_bo("branin", "gp", q=2, n_init=6, iterations=3, seed=0, progress=False)
    assert result.X.shape == (12, 2) and result.Y.shape == (12, 1)
    assert len(result.best) == 4 and all(b2 >= b1 for b1, b2 in zip(result.best, result.best[1:]))
    assert result.best[-1] == float(result.Y.max())
    assert result.regret[-1] == pytest.approx(get_problem("branin").optimal_value - result.best[-1])
    assert len(result.fit_time) == len(result.acq_time) == 3


def test_multi_objective_run_tracks_hypervolume():
    result = run_bo("branincurrin", "gp", n_init=6, iterations=2, seed=0, progress=False)
    assert result.acquisition == "qlognehvi" and result.Y.shape == (8, 2)
    assert all(h2 >= h1 >= 0 for h1, h2 in zip(result.best, result.best[1:]))
    problem = get_problem("branincurrin")
    for i, best in enumerate(result.best):
        hv = DominatedPartitioning(ref_point=problem.ref_point, Y=result.Y[: 6 + i]).compute_hypervolume()
        assert best == pytest.approx(float(hv))


@pytest.mark.parametrize("surrogate, options", [("gp", None), ("hmc-bnn", TINY_HMC)])
def test_resume_is_identical(tmp_path, surrogate, options):
    kwargs = dict(n_init=5, seed=4, progress=False, surrogate_options=options)
    full = run_bo("branin", surrogate, iterations=3, **kwargs)
    path = tmp_path / "bo.pt"
    run_bo("branin", surrogate, iterations=1, checkpoint=path, **kwargs)   # "killed" after one iteration
    resumed = run_bo("branin", surrogate, iterations=3, checkpoint=path, **kwargs)
    torch.testing.assert_close(resumed.X, full.X, rtol=0, atol=0)
    assert resumed.best == full.best


@pytest.mark.parametrize("kwargs, match", [
    (dict(q=0), "q must be"), (dict(n_init=1), "n_init"), (dict(surrogate="forest"), "surrogate must be"),
    (dict(acquisition="qlognehvi"), "acquisition must be"), (dict(problem="rosenbrock"), "problem must be"),
])
def test_bad_input_fails_before_any_evaluation(kwargs, match):
    args = dict(problem="branin", surrogate="gp", progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run_bo(args.pop("problem"), args.pop("surrogate"), **args)
