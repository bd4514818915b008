"""Every surrogate kind passes the surrogate contract; fit_surrogate's input checks; HMC warm starts."""

import pytest
import torch
from botorch.posteriors.ensemble import EnsemblePosterior
from surrogate_contract import BOUNDS, SurrogateContract, toy_data

from probnets import BNN
from probnets.neural_process import CNP
from surrogates import KINDS, SampleEnsembleModel, fit_surrogate

TINY_HMC = {"widths": (16,), "num_chains": 4, "num_warmup": 60, "num_samples": 8, "pretrain_steps": 100}


class TestGP(SurrogateContract):
    kind = "gp"


class TestGPDimensionScaledPrior(SurrogateContract):
    kind = "gp"
    options = {"prior": "dimension-scaled"}


class TestIBNN(SurrogateContract):
    kind = "ibnn"

    def test_variances_stay_fixed_unless_fitted(self):
        X, Y = toy_data(torch.float64)
        fixed = fit_surrogate(X, Y, "ibnn", bounds=BOUNDS)
        weight_var, bias_var = fixed.covar_module.weight_var.detach(), fixed.covar_module.bias_var.detach()
        torch.testing.assert_close(weight_var, torch.full_like(weight_var, 10.0))
        torch.testing.assert_close(bias_var, torch.full_like(bias_var, 1.6))
        fitted = fit_surrogate(X, Y, "ibnn", bounds=BOUNDS, fit_variances=True).covar_module.weight_var.detach()
        assert not torch.isclose(fitted, torch.full_like(fitted, 10.0)).any()


class TestIBNNFittedVariances(SurrogateContract):
    kind = "ibnn"
    options = {"fit_variances": True}


def test_gp_priors():
    X, Y = toy_data(torch.float64)
    study = fit_surrogate(X, Y, "gp", bounds=BOUNDS)
    assert type(study.covar_module.base_kernel).__name__ == "MaternKernel"
    assert study.covar_module.base_kernel.nu == 2.5
    assert type(study.likelihood.noise_covar.noise_prior).__name__ == "GammaPrior"
    current = fit_surrogate(X, Y, "gp", bounds=BOUNDS, prior="dimension-scaled")
    assert type(current.covar_module).__name__ == "RBFKernel"
    assert type(current.likelihood.noise_covar.noise_prior).__name__ == "LogNormalPrior"
    with pytest.raises(ValueError, match="prior must be one of"):
        fit_surrogate(X, Y, "gp", bounds=BOUNDS, prior="flat")


class TestStudentT(SurrogateContract):
    kind = "student-t"
    options = {"num_steps": 30}

    def test_multi_output(self):
        X, Y = toy_data(torch.float64)
        with pytest.raises(ValueError, match="one output"):
            fit_surrogate(X, Y, "student-t", bounds=BOUNDS)

    def test_posterior_moments_are_the_student_t_predictive(self):
        model, _ = self.fitted(torch.float64)
        x = torch.tensor([[0.2, 0.7], [-0.5, 1.9]], dtype=torch.float64)
        post = model.posterior(x, observation_noise=True)
        pred = model.process.predict(model.input_transform(x))
        torch.testing.assert_close(post.mean.squeeze(-1), model.y_mean + model.y_std * pred.mean.squeeze(-1))
        torch.testing.assert_close(post.variance.squeeze(-1), model.y_std**2 * pred.variance.squeeze(-1))


class TestDKL(SurrogateContract):
    kind = "dkl"
    options = {"widths": (16, 8), "steps": 200}


class TestHMCBNN(SurrogateContract):
    kind = "hmc-bnn"
    options = TINY_HMC


class TestSGHMCBNN(SurrogateContract):
    kind = "sghmc-bnn"
    options = {"widths": (16,), "num_chains": 4, "num_burnin": 200, "num_samples": 8}


class TestDeepEnsemble(SurrogateContract):
    kind = "ensemble"
    options = {"widths": (16,), "num_members": 4, "steps": 300}


class TestMFVIBNN(SurrogateContract):
    kind = "mfvi-bnn"
    options = {"widths": (16,), "num_steps": 500, "lr": 0.03, "num_draws": 32}


class TestNeuralProcess(SurrogateContract):
    kind = "np"
    options = {"model_class": "canp", "steps": 500, "width": 32}

    def test_conditioning_extends_the_context(self):
        model, X = self.fitted(torch.float64)
        x_new = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
        before = model.posterior(x_new).mean.item()
        conditioned = model.condition_on_observations(x_new, torch.tensor([[before + 3.0]], dtype=torch.float64))
        assert conditioned.context_x.shape[0] == X.shape[0] + 1
        assert conditioned.posterior(x_new).mean.item() > before + 0.1  # moves towards the new observation
        torch.testing.assert_close(model.posterior(x_new).mean.item(), before)  # the original is unchanged

    def test_meta_training_is_shared_across_fit_seeds(self):
        # run_bo changes the fit seed every iteration; the meta-trained model must be trained once
        model, X = self.fitted(torch.float64)
        _, Y = toy_data(torch.float64)
        again = fit_surrogate(X, Y[:, :1], self.kind, bounds=BOUNDS, seed=7, **self.options)
        assert again.model is model.model and again.seed == 7


class TestPFN(TestNeuralProcess):
    kind = "pfn"
    options = {"steps": 300, "width": 32}

    def test_posterior_is_in_observation_units(self):
        # 300 meta-training steps are too few for the contract's fit-quality proxy (the PFN explains ~10% of the
        # variance at the observed points), so the units are checked exactly: mean = y_mean + y_std * PFN mean.
        model, X = self.fitted(torch.float64)
        _, Y = toy_data(torch.float64)
        mean, variance = model.moments(model.transform_inputs(X))
        post = model.posterior(X)
        y_mean, y_std = Y[:, 0].mean(), Y[:, 0].std()
        torch.testing.assert_close(post.mean[..., 0], y_mean + y_std * mean[..., 0])
        torch.testing.assert_close(post.variance[..., 0], y_std**2 * variance[..., 0])
        assert float(((post.mean[:, 0] - Y[:, 0]) ** 2).mean()) < float(Y[:, 0].var())


def test_every_kind_inherits_the_contract():
    covered = {cls.kind for cls in globals().values()
               if isinstance(cls, type) and issubclass(cls, SurrogateContract) and cls is not SurrogateContract}
    assert covered == set(KINDS)


def test_amortized_surrogate_checks_the_model():
    X, Y = toy_data(torch.float64)
    with pytest.raises(ValueError, match="3-dimensional inputs"):
        fit_surrogate(X, Y[:, :1], "np", model=CNP(3, width=8))
    with pytest.raises(TypeError, match="NeuralProcess or a PFN"):
        fit_surrogate(X, Y[:, :1], "np", model=torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match="model_class"):
        fit_surrogate(X, Y[:, :1], "np", model_class="gp")


def test_sample_ensemble_model_matches_predict_f():
    bnn = BNN(2, (5,))
    theta = bnn.init_theta(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = SampleEnsembleModel(bnn, theta)
    X = torch.randn(3, 4, 2, dtype=torch.float64)
    post = model.posterior(X)
    assert isinstance(post, EnsemblePosterior)
    values = post.values                                   # 3 x 6 x 4 x 1
    assert values.shape == (3, 6, 4, 1)
    for b in range(3):
        torch.testing.assert_close(values[b], bnn.predict_f(theta, X[b]))
    torch.testing.assert_close(post.mean, values.mean(-3))


def test_weighted_members():
    bnn = BNN(1, (3,))
    theta = bnn.init_theta(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = SampleEnsembleModel(bnn, theta, log_weights=torch.tensor([0.0, -1e9, -1e9], dtype=torch.float64))
    x = torch.linspace(-1, 1, 5, dtype=torch.float64).unsqueeze(-1)
    torch.testing.assert_close(model.posterior(x).mean, bnn.predict_f(theta[0], x))
    with pytest.raises(ValueError, match="log_weights"):
        SampleEnsembleModel(bnn, theta, log_weights=torch.zeros(2))


def test_hmc_surrogate_samples_until_converged_within_a_budget():
    X, Y = toy_data(torch.float64)
    with pytest.warns(UserWarning, match="time budget"):
        model = fit_surrogate(X, Y[:, :1], "hmc-bnn", bounds=BOUNDS, until_converged=True, max_time=1e-6,
                              **TINY_HMC)
    outcome = model.posterior_samples.info["until_converged"]
    assert outcome["reason"] == "max_time" and outcome["rounds"] == 1


def test_hmc_warm_start_is_used():
    X, Y = toy_data(torch.float64)
    first = fit_surrogate(X, Y[:, :1], "hmc-bnn", bounds=BOUNDS, **TINY_HMC)
    assert first.warm_start.shape == (4, first.model.spec.dim)
    second = fit_surrogate(X, Y[:, :1], "hmc-bnn", bounds=BOUNDS, warm_start=first.warm_start,
                           warm_start_warmup=20, **TINY_HMC)
    assert second.posterior_samples.info["num_warmup"] == 20


@pytest.mark.parametrize("bad, match", [
    (dict(train_X=torch.full((5, 2), float("nan"))), "train_X"),
    (dict(train_Y=torch.tensor([[1.0], [float("nan")], [0.0], [1.0], [2.0]])), "train_Y"),
    (dict(train_Y=torch.zeros(4, 1)), "same number of rows"),
    (dict(train_X=torch.zeros(5)), "train_X must be 2-D"),
    (dict(kind="forest"), "kind must be one of"),
    (dict(bounds=torch.zeros(2, 3)), "bounds"),
    (dict(kind="hmc-bnn", prior="laplace"), "prior must be"),
])
def test_bad_input(bad, match):
    args = dict(train_X=torch.rand(5, 2), train_Y=torch.rand(5, 1), kind="gp", bounds=None)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        fit_surrogate(args.pop("train_X"), args.pop("train_Y"), args.pop("kind"), **args)


class TestSMCPartialBNN(SurrogateContract):
    kind = "smc-pbnn"
    options = {"widths": (16,), "num_particles": 64, "num_epochs": 150}


class TestMPGELUBNN(SurrogateContract):
    kind = "mp-gelu-bnn"
    options = {"widths": (32,), "num_steps": 500}

    def test_observation_noise_adds_the_expected_noise_variance(self):
        model, X = self.fitted(torch.float64)
        latent, noisy = model.posterior(X).variance, model.posterior(X, observation_noise=True).variance
        assert bool((noisy > latent).all())


class TestReLUMomentBNN(SurrogateContract):
    kind = "mp-gelu-bnn"
    options = {"widths": (16,), "num_steps": 500, "activation": "relu"}


class TestExactGELUMomentBNN(SurrogateContract):
    kind = "mp-gelu-bnn"
    options = {"widths": (16,), "num_steps": 500, "activation": "exact-gelu"}

    def test_fits_the_gelu_mp_method(self):
        model, _ = self.fitted(torch.float64)
        assert model.moment_posterior.info["method"] == "gelu-mp"
        assert model.network.activation.activation == "exact-gelu"
