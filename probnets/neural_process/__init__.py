"""Neural processes: amortized regression models that map a context set to a predictive over target inputs.

Every model here takes contexts ``B x n x d``, ``B x n x 1`` and targets ``B x m x d`` in ``forward`` (giving
means and standard deviations ``S x B x m x 1``), trains on :class:`~probnets.priors.TaskBatch` es through
``loss`` and :func:`~inference.amortized.train_amortized`, and returns a :class:`~probnets.Predictive` from
``predict(context_x, context_y, x)``, or from ``predict(x)`` after ``inference.fit(model, (context_x,
context_y))`` (the conditioned-model contract, :class:`~probnets.conditioned.ContextConditioned`).

* Conditional: :class:`CNP`, :class:`CANP`.
* Latent variable: :class:`NP`, :class:`ANP`.
* Martingale posterior: :class:`MPNP`, :class:`MPANP`.
"""

from probnets.neural_process.base import NeuralProcess
from probnets.neural_process.conditional import CANP, CNP, ConditionalNP
from probnets.neural_process.latent import ANP, NP, LatentNP
from probnets.neural_process.martingale import MPANP, MPNP, MartingaleNP

__all__ = ["ANP", "CANP", "CNP", "ConditionalNP", "LatentNP", "MPANP", "MPNP", "MartingaleNP", "NP",
           "NeuralProcess"]
