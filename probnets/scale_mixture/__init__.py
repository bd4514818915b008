"""Scale mixtures of NNGPs (Lee, Yun, Yang & Lee, ICLR 2022): GP, Student-t process and any scale prior.

An infinitely wide network whose last-layer weights have variance ``s / n_L`` with a prior ``s ~ H`` on the
scale is the mixture ``f ~ int GP(0, s K) dH(s)`` over its NNGP kernel ``K``. For regression the observation
noise sits inside the mixture, ``y | s ~ N(0, s A)`` with ``A = K_DD + noise I`` (:mod:`.exact`).

Models (kernel: any GPyTorch kernel; by default the ReLU NNGP of depth 4 with ``weight_var = 2``,
``bias_var = 1``; float64 and a Cholesky factor of ``A`` with jitter as needed):

- :class:`GaussianProcess`: a point mass at the ML-II scale ``s = q / n`` (the "NNGP-GP" baseline);
- :class:`StudentTProcess`: ``H = InvGamma(alpha, beta)``, in closed form a Student-t process;
- :class:`ImportanceScaleMixture`: any ``H`` (Burr XII, half-Cauchy on ``sigma``, log-normal, ...) by
  self-normalised importance sampling over ``s``;
- :class:`SVSP`: sparse variational scale-mixture classification with ``q(s) = InvGamma(a, b)``.

All are :class:`~probnets.conditioned.ConditionedModel`: ``inference.fit(model, (x, y))`` conditions on the
data and fits the hyperparameters (empirical Bayes on those named in ``learn``; the variational parameters of
SVSP), and ``model.predict(x) -> Predictive``, so that ``inference.metrics.nll(model.predict(x), y)`` scores it.

Example:
    >>> import inference
    >>> model = inference.fit(StudentTProcess(alpha=2.0, beta=2.0), (x_train, y_train))   # x: n x d, y: n
    >>> pred = model.predict(x_test)             # Predictive over a Student-t per test point (t x d -> t x 1)
    >>> pred.mean, pred.interval(0.9)
"""

from probnets.scale_mixture.closed_form import GaussianProcess, StudentTProcess, student_t_process_log_marginal
from probnets.scale_mixture.exact import ExactScaleMixture, default_kernel
from probnets.scale_mixture.importance import ImportanceScaleMixture, posterior_inverse_gamma
from probnets.scale_mixture.svsp import SVSP, inverse_gamma_kl

__all__ = [
    "ExactScaleMixture", "GaussianProcess", "ImportanceScaleMixture", "SVSP", "StudentTProcess", "default_kernel",
    "inverse_gamma_kl", "posterior_inverse_gamma", "student_t_process_log_marginal",
]
