"""inference: the shared engine (registered samplers: NUTS, HMC, ChEES, the SG-MCMC family; fitting conditioned
models; diagnostics, metrics)."""

from inference import diagnostics, importance, metrics, registry
from inference.base import Algorithm, as_logdensity
from inference.fit import fit
from inference.mcmc.masked_gibbs import sample_masked
from inference.posterior import SamplePosterior
from inference.pyro_bridge import from_pyro
from inference.runner import run
from inference.sample import METHODS, sample

__all__ = ["METHODS", "Algorithm", "SamplePosterior", "as_logdensity", "diagnostics", "fit", "from_pyro",
           "importance", "metrics", "registry", "run", "sample", "sample_masked"]
