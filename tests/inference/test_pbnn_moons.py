"""Two moons (scikit-learn ``make_moons``, noise 0.3): open-horizon SMC's partial BNN predicts held-out points at
least as well (test NLPD) as the MAP estimate of the same network.

The protocol is the paper's own moons experiment (spdes/pbnn ``experiments/moon/ohsmc.py`` and ``map_hmc.py``):
100 training, 100 validation and 100 test points drawn one after the other from one ``RandomState`` per run; the
moons network (2-100-20 | 20-5 | 5-1, GELU, N(0, 1) prior on the stochastic block); batches of 20, 100 epochs,
J = 1000 particles, RW jitter of variance 1e-2, stratified resampling at every step, Adam 1e-2; MAP = Adam 1e-2 on
the log posterior of the whole network. Both keep the state of best validation NLPD, checked after every step (the
paper's MAP checks its validation loss, the negative log posterior; the NLPD is the criterion both are judged by).
The paper averages 100 such runs; here runs 0-9. Rule, fixed before the first run of this protocol: the mean over
the ten runs of NLPD(OHSMC) - NLPD(MAP) is at most 0.

First run of the rule (2026-12-07): differences -0.0195, -0.0163, +0.0013, -0.0693, -0.0122, +0.0322, -0.0074,
+0.0127, +0.0836, -0.0805; mean -0.0076 (PASS), with a standard error of 0.015 over the runs: the direction holds
at this size, but by less than its Monte Carlo error. About 13 s per OHSMC run and 1.5 s per MAP run on one core.

History. An earlier protocol of our own (200/100/1000 points, batches of 50, 60 epochs, J = 200, one run) missed
twice, with validation checked once per epoch (OHSMC 0.238, MAP 0.207) and after every step (0.2381 vs 0.2081),
and was kept as a strict xfail. Its diagnostics: J = 1000 gave 0.234, a smaller jitter (variance 1e-3) 0.223. It
was replaced by the paper's protocol above, which is what the method notes ask this check to reproduce; the
paper's setting has half the training data, where a posterior over the block has more to add over a point estimate.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.datasets import make_moons

from inference.minibatch import Minibatches
from inference.smc.open_horizon import fit_open_horizon
from probnets.partial_bnn import paper_mlp

RUNS = range(10)
N, BATCH, EPOCHS = 100, 20, 100


def moons(run):
    """Train, validation and test sets of ``N`` points each, drawn in turn from one ``RandomState``."""
    rng = np.random.RandomState(run)
    sets = []
    for _ in range(3):
        x, y = make_moons(N, noise=0.3, random_state=rng)
        sets.append((torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)))
    return sets


def nlpd(model, phi, data):
    return -float(model.predictive(phi, data[0]).log_prob(data[1]).mean())


def map_nlpd(run, train, validation, test):
    model = paper_mlp("moons", 2, generator=torch.Generator().manual_seed(run), dtype=torch.float64)
    phi = model.init_theta(1, generator=torch.Generator().manual_seed(10_000 + run),
                           dtype=torch.float64).requires_grad_(True)
    optimizer = torch.optim.Adam([phi, *model.psi_parameters()], lr=1e-2)
    rows = Minibatches(N, BATCH, torch.Generator().manual_seed(20_000 + run))
    best, best_test = math.inf, math.nan
    for _ in range(EPOCHS):
        for _ in range(rows.num_batches):
            r = rows.next()
            loss = -(model.log_prior(phi).sum() + N * model.log_likelihood(phi, (train[0][r], train[1][r])).mean()) / N
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                val = nlpd(model, phi, validation)
                if val < best:
                    best, best_test = val, nlpd(model, phi, test)
    return best_test


def ohsmc_nlpd(run, train, validation, test):
    model = paper_mlp("moons", 2, generator=torch.Generator().manual_seed(run), dtype=torch.float64)
    post = fit_open_horizon(model, train, num_particles=1000, num_epochs=EPOCHS, batch_size=BATCH,
                            validation=validation, seed=run, progress=False)
    return -float(post.predictive(model, test[0]).log_prob(test[1]).mean())


def test_ohsmc_nlpd_at_most_map():
    differences = []
    for run in RUNS:
        train, validation, test = moons(run)
        differences.append(ohsmc_nlpd(run, train, validation, test) - map_nlpd(run, train, validation, test))
    assert float(np.mean(differences)) <= 0.0, differences
