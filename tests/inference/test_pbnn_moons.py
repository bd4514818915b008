"""Two moons (scikit-learn ``make_moons``): open-horizon SMC's partial BNN predicts held-out points at least as
well (test NLPD) as the MAP estimate of the same network.

Fixed before running: 200 training, 100 validation, 1000 test points (noise 0.3, ``random_state`` 0/1/2); the
paper's moons network (2-100-20 | 20-5 | 5-1, GELU) and settings except J = 200 particles; 60 epochs of
batches of 50 for both; MAP = Adam (lr 1e-2) on the log posterior with the same N(0, 1) prior on the stochastic
block, both keeping the state of best validation NLPD. Rule: NLPD(OHSMC) <= NLPD(MAP).

Every run of the rule (budget and seeds unchanged throughout):

1. Validation checked once per epoch for both: OHSMC 0.238, MAP 0.207 (FAIL).
2. After aligning with the paper's code (spdes/pbnn ``experiments/moon/ohsmc.py`` and ``map_hmc.py`` check the
   validation NLPD after every minibatch step, for OHSMC and MAP alike; ``fit_open_horizon`` now does so by
   default, and this file's MAP too): OHSMC 0.2381 (best state at step 184 of 240, an epoch boundary, so the
   same state as run 1), MAP 0.2081 (FAIL).

So the claim does NOT hold at this budget and the test is a strict xfail (it fails as soon as the claim starts to
hold, e.g. after a fix, and must then become a plain test). A check of the rest of the step against the paper's
code found no other deviation: RW jitter ``phi + sqrt(1e-2) N(0, I)`` before reweighting, stratified resampling
at every step, Fisher-identity gradient with the normalised weights (the paper averages over the resampled
particles: the same expectation), Adam 1e-2, prior-draw initial particles, Xavier-normal ``psi``, prediction as
the particle mixture. Diagnostics run after run 1's miss (not part of the rule): with J = 1000 OHSMC gives 0.234,
with a smaller jitter (variance 1e-3) 0.223; choosing the state by the test NLPD itself (an oracle) gives OHSMC
0.215 vs MAP 0.205. The paper's RW jitter (variance 1e-2 on each of the 105 stochastic weights, norm ~1 per step)
keeps the particle cloud broader than the posterior, and MAP with early stopping is already close to the noise
floor of these moons.
"""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import make_moons

from inference.minibatch import Minibatches
from inference.smc.open_horizon import fit_open_horizon
from probnets.partial_bnn import paper_mlp


def moons(n, seed):
    x, y = make_moons(n, noise=0.3, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)


def map_nlpd(train, validation, test, epochs):
    model = paper_mlp("moons", 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    phi = model.init_theta(1, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_(True)
    params = [phi, *model.psi_parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    rows = Minibatches(len(train[1]), 50, torch.Generator().manual_seed(2))
    n = len(train[1])
    best, best_test = math.inf, math.nan
    for _ in range(epochs):
        for _ in range(rows.num_batches):
            r = rows.next()
            loss = -(model.log_prior(phi).sum() + n * model.log_likelihood(phi, (train[0][r], train[1][r])).mean()) / n
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                val = -float(model.predictive(phi, validation[0]).log_prob(validation[1]).mean())
                if val < best:
                    best, best_test = val, -float(model.predictive(phi, test[0]).log_prob(test[1]).mean())
    return best_test


@pytest.mark.xfail(strict=True, reason="OHSMC test NLPD 0.238 > MAP 0.208 at the fixed budget (see module docstring)")
def test_ohsmc_nlpd_at_most_map():
    train, validation, test = moons(200, 0), moons(100, 1), moons(1000, 2)
    model = paper_mlp("moons", 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    post = fit_open_horizon(model, train, num_particles=200, num_epochs=60, batch_size=50, validation=validation,
                            seed=0, progress=False)
    ohsmc = -float(post.predictive(model, test[0]).log_prob(test[1]).mean())
    assert ohsmc <= map_nlpd(train, validation, test, 60)
