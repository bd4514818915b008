"""Run a checkpointed sampling job (used by test_checkpoint.py, which kills it with SIGKILL)."""

import sys
import time

import inference
from inference.testing import GaussianTarget, correlated_gaussian_2d

SETTINGS = dict(num_chains=4, num_warmup=60, num_samples=90, seed=5, progress=False, checkpoint_every=7)
#: Cycles short enough for the cyclical samplers to keep draws in these 150 iterations.
OPTIONS = {"csgld": dict(cycle_length=30), "csghmc": dict(cycle_length=30)}


class SlowTarget(GaussianTarget):
    """A Gaussian that sleeps in every gradient call, so that the parent can kill the run midway."""

    def __init__(self, delay: float):
        base = correlated_gaussian_2d()
        super().__init__(base.mean, base.cov)
        self.delay = delay

    def value_and_grad(self, theta):
        time.sleep(self.delay)
        return super().value_and_grad(theta)


def run(method: str, path=None, delay: float = 0.0):
    return inference.sample(SlowTarget(delay), dim=2, method=method, checkpoint=path, **SETTINGS,
                            **OPTIONS.get(method, {}))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], float(sys.argv[3]))
