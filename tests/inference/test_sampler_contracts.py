"""Every registered sampler keeps the sampler contract (``tests/conformance/sampler_contract.py``)."""

import ast
from pathlib import Path

import torch
from sampler_contract import SamplerContract

from inference import registry


class TestNUTS(SamplerContract):
    method = "nuts"
    gaussian = dict(num_chains=4, num_warmup=500, num_samples=1000)
    regression = dict(num_chains=4, num_warmup=400, num_samples=600)


class TestHMC(SamplerContract):
    method = "hmc"
    gaussian = dict(num_chains=4, num_warmup=500, num_samples=1000, num_steps=16)
    regression = dict(num_chains=4, num_warmup=400, num_samples=1000, num_steps=16)


class TestChEES(SamplerContract):
    method = "chees"
    gaussian = dict(num_chains=32, num_warmup=400, num_samples=300)
    regression = dict(num_chains=32, num_warmup=300, num_samples=150)


class TestSGHMC(SamplerContract):
    """No Metropolis correction: second moments may carry the discretisation bias, measured at 2-4% at these
    step sizes (full batch and batches of 10); 10% is allowed, as in ``test_sghmc.py``."""

    method = "sghmc"
    variance_bias = 0.1
    gaussian = dict(num_chains=64, num_warmup=1000, num_samples=5000, thin=5, step_size=0.1)
    regression = dict(num_chains=64, num_warmup=1000, num_samples=5000, thin=5, step_size=0.05)
    minibatch_regression = dict(regression, batch_size=10)


#: Short runs of the SG-MCMC family: a step large enough to cross into the NaN region of the divergence test.
SGMCMC_SHORT = dict(SamplerContract.short, step_size=0.1)


class TestSGLD(SamplerContract):
    """No Metropolis correction. The exact stationary covariance of SGLD on a Gaussian (a discrete Lyapunov
    equation) is 6.8% too wide in the first coordinate of the correlated Gaussian at step 0.1 and 5.4% in the
    regression at step 5e-4; measured with 512 chains (seed 100): 9.9%, 5.6% and 7.9% with batches of 10.
    10% is allowed."""

    method = "sgld"
    variance_bias = 0.1
    gaussian = dict(num_chains=64, num_warmup=3000, num_samples=5000, thin=5, step_size=0.1)
    regression = dict(num_chains=64, num_warmup=300, num_samples=2000, thin=5, step_size=5e-4)
    minibatch_regression = dict(regression, batch_size=10)
    short = SGMCMC_SHORT


class TestPSGLD(SamplerContract):
    """No Metropolis correction: second-moment bias measured with 512 chains (seed 100) at these settings: 2.8%
    (Gaussian), 6.2% (regression), 5.8% (batches of 10). 10% is allowed."""

    method = "psgld"
    variance_bias = 0.1
    gaussian = dict(num_chains=64, num_warmup=3000, num_samples=5000, thin=5, step_size=0.1)
    regression = dict(num_chains=64, num_warmup=300, num_samples=2000, thin=5, step_size=0.02)
    minibatch_regression = dict(regression, batch_size=10)
    short = SGMCMC_SHORT


class TestCSGLD(SamplerContract):
    """No Metropolis correction: second-moment bias measured with 512 chains (seed 100) at these settings (half
    of every cycle samples): 3.9% (Gaussian), 3.9% (regression), 5.0% (batches of 10, a shorter run to keep the
    test within seconds). 10% is allowed."""

    method = "csgld"
    variance_bias = 0.1
    gaussian = dict(num_chains=64, num_warmup=3000, num_samples=6000, thin=2, step_size=0.2, cycle_length=500,
                    exploration=0.5)
    regression = dict(num_chains=64, num_warmup=300, num_samples=3000, thin=2, step_size=1e-3, cycle_length=100,
                      exploration=0.5)
    minibatch_regression = dict(regression, num_warmup=200, num_samples=2000, batch_size=10)
    short = dict(SGMCMC_SHORT, cycle_length=10)


class TestCSGHMC(SamplerContract):
    """No Metropolis correction: second-moment bias measured with 512 chains (seed 100) at these settings (half
    of every cycle samples): 6.0% (Gaussian), 3.3% (regression), 5.9% (batches of 10, one warm-up and three
    sampling cycles to keep the test within seconds). 10% is allowed."""

    method = "csghmc"
    variance_bias = 0.1
    gaussian = dict(num_chains=64, num_warmup=1000, num_samples=6000, thin=2, step_size=0.1, cycle_length=500,
                    exploration=0.5)
    regression = dict(num_chains=64, num_warmup=1000, num_samples=5000, thin=2, step_size=0.025, cycle_length=500,
                      exploration=0.5)
    minibatch_regression = dict(regression, num_warmup=500, num_samples=1500, batch_size=10)
    # At step 0.1 the drift carried all four chains of the divergence test away from the NaN region within a few
    # steps (no divergence, the test failed once); a step of 1 overshoots into it.
    short = dict(SamplerContract.short, step_size=1.0, cycle_length=10)


class TestSMC(SamplerContract):
    """Weighted particles: moments are estimated per population and their MCSE is the spread across the 32
    independent populations. The correlated Gaussian needs the dense metric (with a diagonal one, the step
    size steered to 0.8 acceptance sits near the leapfrog's stability limit along the correlated direction
    and some last-stage moves diverge)."""

    method = "smc"
    gaussian = dict(num_chains=32, num_warmup=5, num_samples=500, dense_mass=True)
    regression = dict(num_chains=32, num_warmup=5, num_samples=500)


def test_every_registered_sampler_has_a_contract_class():
    """Scans the test tree for ``class ...(SamplerContract)`` with ``method = "..."``."""
    covered = set()
    for path in Path(__file__).resolve().parents[1].rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "SamplerContract" for b in node.bases):
                for item in node.body:
                    if (isinstance(item, ast.Assign) and getattr(item.targets[0], "id", None) == "method"
                            and isinstance(item.value, ast.Constant)):
                        covered.add(item.value.value)
    missing = set(registry.SAMPLERS) - covered
    assert not missing, f"registered samplers without a SamplerContract test class: {sorted(missing)}"


#: Structured SG-MCMC samples the mean-field approximation over its groups, so its posterior checks run with one
#: group (``num_groups=1``), where it is its base sampler bit for bit (``test_structured_sgmcmc.py``): the settings,
#: seeds and allowed bias are the base class's, so these runs repeat the base's draws. The short runs (determinism,
#: resume with the history in the checkpoint, divergences) use the default partition (two groups on the 2-D
#: Gaussian); the mean-field check uses one group per coordinate on the unit-scale Gaussian (one step size suits
#: both groups). Structured SGLD starts at the mean; the preconditioned bases cannot (their preconditioner starts
#: from the squared gradient, zero there, which makes the first steps huge), so they start within 0.1 mean-field
#: standard deviations of it.
STRUCTURED_MEAN_FIELD = dict(num_chains=256, num_warmup=4000, num_samples=6000, thin=10, num_groups=2,
                             history_length=1000, history_thin=4, plain_warmup=0)
NEAR_THE_MEAN = 0.1 * 0.19**0.5 * torch.randn(256, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
class TestStructuredSGLD(SamplerContract):
    method = "structured-sgld"
    variance_bias = 0.1
    gaussian = dict(TestSGLD.gaussian, num_groups=1)
    regression = dict(TestSGLD.regression, num_groups=1)
    minibatch_regression = dict(TestSGLD.minibatch_regression, num_groups=1)
    short = SGMCMC_SHORT
    # The setting of test_structured_mean_field.py with half the chains. Against the exact mean field 0.19: the
    # step size adds 5% (the discretised stationary variance is 0.1995) and the finite history ~2%.
    mean_field = dict(STRUCTURED_MEAN_FIELD, step_size=0.01)
    mean_field_scales = (1.0, 1.0)
    mean_field_bias = 0.1


class TestStructuredPSGLD(SamplerContract):
    method = "structured-psgld"
    variance_bias = 0.1
    gaussian = dict(TestPSGLD.gaussian, num_groups=1)
    regression = dict(TestPSGLD.regression, num_groups=1)
    minibatch_regression = dict(TestPSGLD.minibatch_regression, num_groups=1)
    short = SGMCMC_SHORT
    # Measured: variances 6-7% above the mean field (step size and gradient noise of the history draws),
    # correlation 0.03.
    mean_field = dict(STRUCTURED_MEAN_FIELD, step_size=0.02, init=NEAR_THE_MEAN)
    mean_field_scales = (1.0, 1.0)
    mean_field_bias = 0.15


class TestStructuredSGHMC(SamplerContract):
    method = "structured-sghmc"
    variance_bias = 0.1
    gaussian = dict(TestSGHMC.gaussian, num_groups=1)
    regression = dict(TestSGHMC.regression, num_groups=1)
    minibatch_regression = dict(TestSGHMC.minibatch_regression, num_groups=1)
    # As for csghmc: at small steps the drift can carry every chain away from the NaN region before it crosses
    # (one divergence at step 0.01 for sghmc, none for the structured chain); a step of 1 overshoots into it.
    short = dict(SamplerContract.short, step_size=1.0)
    # Measured: variances 7-8% above the mean field (step size and gradient noise of the history draws),
    # correlation 0.02.
    mean_field = dict(STRUCTURED_MEAN_FIELD, step_size=0.05, init=NEAR_THE_MEAN)
    mean_field_scales = (1.0, 1.0)
    mean_field_bias = 0.15
