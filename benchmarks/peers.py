"""Peer runners for benchmark protocol H1 on the identical BNN: NumPyro NUTS, Pyro NUTS and BlackJAX ChEES-HMC.

Protocol H1
-----------
* Data: scikit-learn diabetes, fixed 90/10 split (seed 0), x and y standardised with training statistics
  (``probnets.datasets.diabetes()``).
* Model: BNN 10-50-1 with tanh; N(0, 1) priors on every weight and bias; Gaussian likelihood whose noise
  scale has the prior ``sigma ~ LogNormal(-1, 1)``.
* Peers: NUTS with 2 chains in parallel, 500 warm-up and 500 draws per chain, target acceptance 0.8, all
  other settings at the library defaults (diagonal mass-matrix adaptation, max tree depth 10, multinomial
  NUTS, ``init_to_uniform`` with radius 2 in both libraries, float32 in both libraries).

API
---
``run_numpyro_nuts(split, ...)`` and ``run_pyro_nuts(split, ...)`` return a dict with

* ``f_test``: float64 array (chains, draws, n_test), latent network output at ``x_test`` for every
  posterior draw (standardised units, computed in float64 numpy from the float32 draws, outside the timer);
* ``sigma``: float64 array (chains, draws), noise scales;
* ``wall_time``: seconds, see "Isolation and timing" below; ``cpu_time``: CPU seconds of the same region
  (all threads; Pyro: plus the chain worker processes), useful when the machine is shared;
* ``grad_evals``: total number of leapfrog steps (one potential-energy gradient each) over all chains,
  warm-up plus sampling; ``grad_evals_warmup`` / ``grad_evals_sampling`` split it, ``grad_evals_note``
  says exactly what was counted (see "Gradient counting");
* ``num_steps``: int array (chains, draws), leapfrog steps per post-warm-up draw;
* ``num_divergences`` (post-warm-up, all chains) and ``num_divergences_per_chain``;
* ``step_size``: float64 array (chains,), adapted step size per chain;
* ``mean_steps_per_draw`` and ``mean_tree_depth`` (post-warm-up; tree depth of a draw is recovered
  exactly from its step count as ``bit_length(num_steps)``, i.e. the number of trajectory doublings);
* ``mean_accept_prob`` (post-warm-up mean of the NUTS acceptance statistic);
* ``settings``: what was run (sampler settings, dtype, chain mechanism, library versions, load average);
* ``library_version``: e.g. ``"numpyro 0.22.0 (jax 0.10.2)"``; ``peer``: ``"numpyro_nuts"``/``"pyro_nuts"``.

``summarise(result, split)`` computes the figures the CLI prints (min bulk ESS and max R-hat of f_test via
ArviZ, test RMSE of the predictive mean and the mixture-predictive NLL, both in standardised units).

Isolation and timing
--------------------
Each peer runs in a fresh Python subprocess (``python benchmarks/peers.py _worker ...``), so that JAX's
``XLA_FLAGS=--xla_force_host_platform_device_count=<chains>`` (needed for ``chain_method="parallel"`` and
only honoured if set before jax is imported) and Pyro's torch thread settings / worker processes cannot
interact with each other or with the calling benchmark process.  Data go in and results come out through
``.npz``/JSON files in a temporary directory.  ``wall_time`` is measured *inside* the child, so it excludes
interpreter start-up and library imports but includes everything else: model setup, initialisation, JIT
compilation (NumPyro), starting the chain worker processes (Pyro), warm-up, sampling, and materialising the
draws as host arrays.  The posterior predictive ``f_test`` is computed afterwards, outside the timer.

* NumPyro: ``MCMC(NUTS(model, target_accept_prob=...), chain_method="parallel", progress_bar=False)``;
  the child sets ``XLA_FLAGS`` to force ``num_chains`` host devices so the chains run under ``pmap``.
  The progress bar is off because it is implemented with host callbacks that slow the sampler.
* BlackJAX: ``chees_adaptation`` (Adam 0.025 on the trajectory length, dual averaging on the step size from 0.1,
  Halton jitter; unit metric by default, its ensemble-estimated diagonal metric with ``mass_matrix="diagonal"``)
  then ``dynamic_hmc`` with the adapted parameters, the chains as one vmapped ensemble under ``jax.jit``, the
  log joint written directly in JAX over the same unconstrained parameters (``log sigma``); warm-up and sampling
  integration steps are both counted in the timed run.
* Pyro: ``pyro.infer.MCMC(..., num_chains=2)`` on a 2-core machine silently runs the chains
  *sequentially* (it reserves one core for the main process: parallel only if
  ``num_chains <= cpu_count() - 1``).  To honour "2 chains in parallel" the child therefore does what
  Pyro's own ``_MultiSampler`` does -- one forked worker process per chain -- and in each worker runs a
  single-chain ``pyro.infer.MCMC(NUTS(...), num_chains=1)`` with seed ``seed + chain`` and
  ``torch.set_num_threads(1)`` (two workers on two cores; intra-op threads would only oversubscribe).
  Pyro's default ``jit_compile=False`` is used unless ``jit_compile=True`` is passed.

Gradient counting
-----------------
``grad_evals`` counts leapfrog steps of the NUTS trajectories, warm-up and sampling, all chains: each
leapfrog step costs exactly one gradient of the potential energy in both libraries.  Not included (both
libraries): the gradient at the initial point and the few gradient evaluations of the "find a reasonable
step size" heuristic run at initialisation and after each mass-matrix window -- a few dozen per chain.

* NumPyro: the timed run collects ``extra_fields=("num_steps", ...)`` for the post-warm-up draws only
  (collecting warm-up fields requires splitting ``run`` into ``warmup`` + ``run``, which compiles the
  sampler twice and costs several CPU seconds, i.e. a large fraction of this peer's run time).  The warm-up
  steps therefore come from a separate, untimed counting run with the same seed, split into
  ``mcmc.warmup(key, collect_warmup=True, extra_fields=("num_steps",))`` followed by
  ``mcmc.run(mcmc.post_warmup_state.rng_key, ...)``.  That reproduces the random stream of the single
  ``run`` exactly; the child checks that the counting run's post-warm-up step counts *and* draws equal the
  timed run's bit for bit and reports ``grad_evals_warmup_exact=True`` if so (it was, on this machine).
  If they differ, the warm-up count is still reported but flagged ``grad_evals_warmup_exact=False``.
  Pass ``count_warmup=False`` to skip the counting run (``grad_evals_warmup`` is then ``None``).
* Pyro: a ``NUTS`` subclass counts calls of ``_build_basetree`` (one ``velocity_verlet`` leapfrog step
  each) per iteration and phase, in the timed run itself (integer increments; no measurable overhead).
  It also wraps the potential function and counts every call made with gradient-requiring inputs, i.e.
  every potential-energy gradient after model initialisation (leapfrog steps, the initial gradient and the
  step-size heuristic): reported as ``grad_evals_all`` for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

N_HIDDEN = 50
PRIOR_SCALE = 1.0
SIGMA_LOG_LOC = -1.0
SIGMA_LOG_SCALE = 1.0
_PEERS = ("numpyro", "pyro", "blackjax")
#: BlackJAX ChEES warm-up optimiser: Adam on the log trajectory length with this learning rate (the ChEES paper's
#: and TFP's choice), from this initial step size.
CHEES_LEARNING_RATE = 0.025
CHEES_INITIAL_STEP_SIZE = 0.1


# ----------------------------------------------------------------------------------------------------------
# Public API (runs in the caller's process; the samplers run in a child process)
# ----------------------------------------------------------------------------------------------------------

def run_numpyro_nuts(split, *, num_chains: int = 2, num_warmup: int = 500, num_samples: int = 500,
                     target_accept: float = 0.8, seed: int = 0, count_warmup: bool = True,
                     timeout: float | None = None) -> dict:
    """NumPyro NUTS on protocol H1's BNN, chains in parallel (pmap over forced host devices).

    ``split`` needs ``x_train``, ``y_train``, ``x_test`` (torch tensors or arrays, standardised).  See the
    module docstring for the returned dict, the timing and how gradient evaluations are counted.
    """
    cfg = dict(num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples,
               target_accept=target_accept, seed=seed, count_warmup=count_warmup)
    return _run_in_child("numpyro", split, cfg, timeout=timeout)


def run_pyro_nuts(split, *, num_chains: int = 2, num_warmup: int = 500, num_samples: int = 500,
                  target_accept: float = 0.8, seed: int = 0, jit_compile: bool = False,
                  timeout: float | None = None) -> dict:
    """Pyro NUTS on protocol H1's BNN, one forked worker process per chain (as Pyro's own parallel MCMC).

    See the module docstring for the returned dict, the timing and how gradient evaluations are counted.
    """
    cfg = dict(num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples,
               target_accept=target_accept, seed=seed, jit_compile=jit_compile)
    return _run_in_child("pyro", split, cfg, timeout=timeout)


def run_blackjax_chees(split, *, num_chains: int = 16, num_warmup: int = 300, num_samples: int = 1000,
                       target_accept: float = 0.651, seed: int = 0, mass_matrix: str | None = None,
                       timeout: float | None = None) -> dict:
    """BlackJAX ChEES-HMC on protocol H1's BNN: ``chees_adaptation`` (Adam on the trajectory length, dual averaging
    on the step size, Halton jitter) for ``num_warmup`` steps, then ``dynamic_hmc`` with the adapted parameters,
    all chains as one vmapped ensemble.

    ``mass_matrix``: ``None`` (BlackJAX's default, unit metric) or ``"diagonal"`` (its ensemble-estimated diagonal
    metric with the trajectory-length floor). Same returned dict as :func:`run_numpyro_nuts`; ``num_steps`` are
    the post-warm-up integration steps, and warm-up steps are counted in the timed run itself.
    """
    cfg = dict(num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples,
               target_accept=target_accept, seed=seed, mass_matrix=mass_matrix)
    return _run_in_child("blackjax", split, cfg, timeout=timeout)


def summarise(result: dict, split) -> dict:
    """Min bulk ESS / max rank-normalised split R-hat of f_test (ArviZ), test RMSE of the posterior-mean
    prediction and NLL of the mixture predictive, all in standardised units.

    NLL = -mean over test points of log(mean over all draws of Normal(y | f, sigma)).
    """
    import arviz as az
    from scipy.special import logsumexp

    f = np.asarray(result["f_test"], dtype=np.float64)           # (C, D, n)
    sigma = np.asarray(result["sigma"], dtype=np.float64)        # (C, D)
    y = _to_numpy(split.y_test).reshape(-1)
    ds = az.convert_to_dataset({"f": f, "sigma": sigma})
    ess_ds, rhat_ds = az.ess(ds, method="bulk"), az.rhat(ds, method="rank")
    ess, rhat = np.asarray(ess_ds["f"]), np.asarray(rhat_ds["f"])
    ess_sigma, rhat_sigma = float(ess_ds["sigma"]), float(rhat_ds["sigma"])
    f_flat = f.reshape(-1, f.shape[-1])                           # (S, n)
    s_flat = sigma.reshape(-1, 1)                                 # (S, 1)
    rmse = float(np.sqrt(np.mean((f_flat.mean(0) - y) ** 2)))
    logp = -0.5 * ((y - f_flat) / s_flat) ** 2 - np.log(s_flat) - 0.5 * np.log(2 * np.pi)
    nll = float(-np.mean(logsumexp(logp, axis=0) - np.log(f_flat.shape[0])))
    return dict(min_ess_f=float(ess.min()), max_rhat_f=float(rhat.max()), ess_sigma=ess_sigma,
                rhat_sigma=rhat_sigma, rmse=rmse, nll=nll)


# ----------------------------------------------------------------------------------------------------------
# Parent side: launch the child and collect its output
# ----------------------------------------------------------------------------------------------------------

def _to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _child_env(num_chains: int) -> dict:
    env = os.environ.copy()
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", "")).strip()
    env["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={max(1, num_chains)}").strip()
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run_in_child(peer: str, split, cfg: dict, *, timeout: float | None) -> dict:
    if peer not in _PEERS:
        raise ValueError(f"unknown peer {peer!r}")
    with tempfile.TemporaryDirectory(prefix=f"peers_{peer}_") as tmp:
        in_path = os.path.join(tmp, "in.npz")
        out_path = os.path.join(tmp, "out.npz")
        np.savez(in_path, x_train=_to_numpy(split.x_train), y_train=_to_numpy(split.y_train).reshape(-1),
                 x_test=_to_numpy(split.x_test), cfg=np.array(json.dumps(cfg)))
        cmd = [sys.executable, os.path.abspath(__file__), "_worker", peer, "--data", in_path, "--out", out_path]
        proc = subprocess.run(cmd, env=_child_env(cfg["num_chains"]), capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(out_path):
            tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-40:])
            raise RuntimeError(f"{peer} peer failed (exit code {proc.returncode}):\n{tail}")
        with np.load(out_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"]))
    result: dict[str, Any] = dict(meta)
    for k, v in arrays.items():
        result[k] = v
    result["f_test"] = result["f_test"].astype(np.float64)
    result["sigma"] = result["sigma"].astype(np.float64)
    result["step_size"] = np.asarray(result["step_size"], dtype=np.float64)
    return result


# ----------------------------------------------------------------------------------------------------------
# Child side (runs in a fresh interpreter)
# ----------------------------------------------------------------------------------------------------------

def _forward_np(x: np.ndarray, w1, b1, w2, b2) -> np.ndarray:
    """Batched 10-50-1 tanh network in float64: params with leading (C, D) dims -> (C, D, n)."""
    w1, b1, w2, b2 = (np.asarray(a, dtype=np.float64) for a in (w1, b1, w2, b2))
    h = np.tanh(np.einsum("nk,cdkh->cdnh", x, w1) + b1[:, :, None, :])
    return np.einsum("cdnh,cdh->cdn", h, w2) + b2[:, :, None]


def _tree_depth(num_steps: np.ndarray) -> np.ndarray:
    # after k completed doublings a trajectory has 2^k - 1 steps; the (k+1)-th adds 1..2^k
    return np.floor(np.log2(np.maximum(num_steps, 1))).astype(np.int64) + 1


def _common_stats(num_steps: np.ndarray, step_size, diverging: np.ndarray, accept: np.ndarray) -> dict:
    num_steps = np.asarray(num_steps, dtype=np.int64)
    div_per_chain = np.asarray(diverging, dtype=bool).sum(axis=1)
    return dict(
        num_divergences=int(div_per_chain.sum()),
        num_divergences_per_chain=[int(v) for v in div_per_chain],
        mean_steps_per_draw=float(num_steps.mean()),
        mean_tree_depth=float(_tree_depth(num_steps).mean()),
        mean_accept_prob=float(np.mean(accept)),
        step_size=[float(s) for s in np.asarray(step_size).reshape(-1)],
    )


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _numpyro_child(data: dict, cfg: dict) -> tuple[dict, dict]:
    chains = cfg["num_chains"]
    flag = f"--xla_force_host_platform_device_count={chains}"
    if flag not in os.environ.get("XLA_FLAGS", ""):  # must happen before jax is imported
        os.environ.update(_child_env(chains))
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    def model(x, y=None):
        d_in = x.shape[1]
        w1 = numpyro.sample("w1", dist.Normal(0.0, PRIOR_SCALE).expand([d_in, N_HIDDEN]).to_event(2))
        b1 = numpyro.sample("b1", dist.Normal(0.0, PRIOR_SCALE).expand([N_HIDDEN]).to_event(1))
        w2 = numpyro.sample("w2", dist.Normal(0.0, PRIOR_SCALE).expand([N_HIDDEN]).to_event(1))
        b2 = numpyro.sample("b2", dist.Normal(0.0, PRIOR_SCALE))
        sigma = numpyro.sample("sigma", dist.LogNormal(SIGMA_LOG_LOC, SIGMA_LOG_SCALE))
        f = jnp.tanh(x @ w1 + b1) @ w2 + b2
        numpyro.sample("y", dist.Normal(f, sigma).to_event(1), obs=y)

    x = jnp.asarray(data["x_train"], dtype=jnp.float32)
    y = jnp.asarray(data["y_train"], dtype=jnp.float32)
    fields = ("num_steps", "diverging", "accept_prob")
    chain_method = "parallel" if jax.local_device_count() >= chains else "sequential"
    load_before = _loadavg()

    def make():
        return MCMC(NUTS(model, target_accept_prob=cfg["target_accept"]), num_warmup=cfg["num_warmup"],
                    num_samples=cfg["num_samples"], num_chains=chains, chain_method=chain_method,
                    progress_bar=False)

    # ---- timed run ----
    t0, c0 = time.perf_counter(), time.process_time()
    mcmc = make()
    mcmc.run(jax.random.PRNGKey(cfg["seed"]), x, y, extra_fields=fields)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    step_size = np.asarray(mcmc.last_state.adapt_state.step_size)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    num_steps = extra["num_steps"].astype(np.int64)
    grad_sampling = int(num_steps.sum())

    # ---- untimed counting run for the warm-up leapfrog steps ----
    grad_warmup, exact, count_wall = None, None, None
    if cfg.get("count_warmup", True):
        tc = time.perf_counter()
        counter = make()
        counter.warmup(jax.random.PRNGKey(cfg["seed"]), x, y, extra_fields=fields, collect_warmup=True)
        warm_steps = np.asarray(counter.get_extra_fields(group_by_chain=True)["num_steps"]).astype(np.int64)
        counter.run(counter.post_warmup_state.rng_key, x, y, extra_fields=fields)
        check_steps = np.asarray(counter.get_extra_fields(group_by_chain=True)["num_steps"]).astype(np.int64)
        check_samples = counter.get_samples(group_by_chain=True)
        exact = bool(np.array_equal(check_steps, num_steps) and all(
            np.array_equal(np.asarray(check_samples[k]), samples[k]) for k in samples))
        grad_warmup = int(warm_steps.sum())
        count_wall = time.perf_counter() - tc

    f_test = _forward_np(np.asarray(data["x_test"], dtype=np.float64),
                         samples["w1"], samples["b1"], samples["w2"], samples["b2"])
    meta = dict(
        peer="numpyro_nuts",
        library_version=f"numpyro {numpyro.__version__} (jax {jax.__version__})",
        wall_time=wall, cpu_time=cpu,
        grad_evals=None if grad_warmup is None else grad_warmup + grad_sampling,
        grad_evals_warmup=grad_warmup, grad_evals_sampling=grad_sampling,
        grad_evals_warmup_exact=exact,
        grad_evals_note=(
            "leapfrog steps (1 gradient each), all chains, warm-up + sampling; sampling-phase steps from the "
            "timed run's extra_fields num_steps; warm-up steps from an untimed counting run "
            "(warmup(collect_warmup=True) + run with the same seed), "
            + ("verified bit-identical to the timed run" if exact else "NOT verified identical to the timed run")
            + "; excludes the initial gradient and find_reasonable_step_size calls"),
        counting_run_wall_time=count_wall,
        **_common_stats(num_steps, step_size, extra["diverging"], extra["accept_prob"]),
        settings=dict(
            num_chains=chains, num_warmup=cfg["num_warmup"], num_samples=cfg["num_samples"],
            target_accept_prob=cfg["target_accept"], seed=cfg["seed"], max_tree_depth=10,
            dense_mass=False, adapt_mass_matrix=True, init_strategy="init_to_uniform(radius=2)",
            chain_method=chain_method, local_device_count=jax.local_device_count(), dtype="float32",
            progress_bar=False, xla_flags=os.environ.get("XLA_FLAGS", ""),
            model="BNN 10-50-1 tanh, N(0,1) weights/biases, y ~ N(f, sigma), sigma ~ LogNormal(-1,1)",
            numpyro=numpyro.__version__, jax=jax.__version__, loadavg_before=load_before,
            loadavg_after=_loadavg(), timing="inside child; excludes interpreter start-up and imports; "
            "includes model setup, JIT compilation, warm-up, sampling and host transfer of draws",
        ),
    )
    arrays = dict(f_test=f_test, sigma=samples["sigma"].astype(np.float64), num_steps=num_steps)
    return meta, arrays


def _pyro_chain(args) -> dict:
    """One Pyro NUTS chain in a forked worker process."""
    chain, data, cfg = args
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import MCMC, NUTS

    torch.set_num_threads(1)

    class CountingNUTS(NUTS):
        """NUTS that records leapfrog steps per iteration and all potential-gradient calls."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.n_leapfrog = 0
            self.n_grad_calls = 0
            self.iter_steps = {"warmup": [], "sample": []}
            self.sample_diverging = []
            self.sample_accept = []
            self.final_step_size = None

        def _initialize_model_properties(self, model_args, model_kwargs):
            super()._initialize_model_properties(model_args, model_kwargs)
            fn = self.potential_fn

            def counted(z):
                if any(torch.is_tensor(v) and v.requires_grad for v in z.values()):
                    self.n_grad_calls += 1
                return fn(z)

            self.potential_fn = counted

        def _build_basetree(self, *a, **k):
            self.n_leapfrog += 1
            return super()._build_basetree(*a, **k)

        def sample(self, params):
            phase = "warmup" if self._t < self._warmup_steps else "sample"
            n0, d0, acc0 = self.n_leapfrog, len(self._divergences), self._mean_accept_prob
            out = super().sample(params)
            self.iter_steps[phase].append(self.n_leapfrog - n0)
            if phase == "sample":
                self.sample_diverging.append(len(self._divergences) > d0)
                n = self._t - self._warmup_steps  # running mean -> this iteration's accept prob
                self.sample_accept.append(n * self._mean_accept_prob - (n - 1) * acc0)
                self.final_step_size = float(self.step_size)
            return out

    def model(x, y):
        d_in = x.shape[1]
        w1 = pyro.sample("w1", dist.Normal(0.0, PRIOR_SCALE).expand([d_in, N_HIDDEN]).to_event(2))
        b1 = pyro.sample("b1", dist.Normal(0.0, PRIOR_SCALE).expand([N_HIDDEN]).to_event(1))
        w2 = pyro.sample("w2", dist.Normal(0.0, PRIOR_SCALE).expand([N_HIDDEN]).to_event(1))
        b2 = pyro.sample("b2", dist.Normal(0.0, PRIOR_SCALE))
        sigma = pyro.sample("sigma", dist.LogNormal(SIGMA_LOG_LOC, SIGMA_LOG_SCALE))
        f = torch.tanh(x @ w1 + b1) @ w2 + b2
        pyro.sample("y", dist.Normal(f, sigma).to_event(1), obs=y)

    dtype = torch.get_default_dtype()
    x = torch.as_tensor(data["x_train"], dtype=dtype)
    y = torch.as_tensor(data["y_train"], dtype=dtype)
    pyro.set_rng_seed(cfg["seed"] + chain)
    kernel = CountingNUTS(model, target_accept_prob=cfg["target_accept"], jit_compile=cfg["jit_compile"],
                          ignore_jit_warnings=True)
    mcmc = MCMC(kernel, num_samples=cfg["num_samples"], warmup_steps=cfg["num_warmup"], num_chains=1,
                disable_progbar=True)
    mcmc.run(x, y)
    s = {k: v.detach().numpy() for k, v in mcmc.get_samples().items()}
    return dict(samples=s, warm_steps=kernel.iter_steps["warmup"], sample_steps=kernel.iter_steps["sample"],
                n_grad_calls=kernel.n_grad_calls, diverging=kernel.sample_diverging,
                accept=kernel.sample_accept, step_size=kernel.final_step_size, dtype=str(dtype))


def _pyro_child(data: dict, cfg: dict) -> tuple[dict, dict]:
    import multiprocessing as mp
    import resource

    import pyro
    import torch

    chains = cfg["num_chains"]
    load_before = _loadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    ctx = mp.get_context("fork")  # Pyro's own parallel chains use the platform default (fork on Linux)
    with ctx.Pool(processes=chains) as pool:
        outs = pool.map(_pyro_chain, [(c, data, cfg) for c in range(chains)], chunksize=1)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # the (joined) chain workers
    cpu = time.process_time() - c0 + ru.ru_utime + ru.ru_stime

    samples = {k: np.stack([o["samples"][k] for o in outs]) for k in outs[0]["samples"]}
    num_steps = np.array([o["sample_steps"] for o in outs], dtype=np.int64)
    warm_steps = np.array([o["warm_steps"] for o in outs], dtype=np.int64)
    f_test = _forward_np(np.asarray(data["x_test"], dtype=np.float64),
                         samples["w1"], samples["b1"], samples["w2"], samples["b2"])
    meta = dict(
        peer="pyro_nuts",
        library_version=f"pyro-ppl {pyro.__version__} (torch {torch.__version__})",
        wall_time=wall, cpu_time=cpu,
        grad_evals=int(warm_steps.sum() + num_steps.sum()),
        grad_evals_warmup=int(warm_steps.sum()), grad_evals_sampling=int(num_steps.sum()),
        grad_evals_warmup_exact=True,
        grad_evals_all=int(sum(o["n_grad_calls"] for o in outs)),
        grad_evals_note=(
            "leapfrog steps (1 gradient each; calls of NUTS._build_basetree), all chains, warm-up + sampling, "
            "counted in the timed run; grad_evals_all also counts the initial gradient and the step-size "
            "heuristic (every potential-energy call with gradient-requiring inputs after model init)"),
        **_common_stats(num_steps, [o["step_size"] for o in outs], np.array([o["diverging"] for o in outs]),
                        np.array([o["accept"] for o in outs])),
        settings=dict(
            num_chains=chains, num_warmup=cfg["num_warmup"], num_samples=cfg["num_samples"],
            target_accept_prob=cfg["target_accept"], seed=cfg["seed"], chain_seeds=[cfg["seed"] + c for c in range(chains)],
            max_tree_depth=10, full_mass=False, adapt_mass_matrix=True, init_strategy="init_to_uniform(radius=2)",
            jit_compile=cfg["jit_compile"], dtype=outs[0]["dtype"].replace("torch.", ""),
            chain_method="one forked worker process per chain (multiprocessing fork Pool), "
                         "single-chain pyro.infer.MCMC in each; torch.set_num_threads(1) per worker",
            model="BNN 10-50-1 tanh, N(0,1) weights/biases, y ~ N(f, sigma), sigma ~ LogNormal(-1,1)",
            pyro=pyro.__version__, torch=torch.__version__, loadavg_before=load_before,
            loadavg_after=_loadavg(), timing="inside child; excludes interpreter start-up and imports; "
            "includes forking the chain workers, model setup, warm-up, sampling and collecting the draws",
        ),
    )
    arrays = dict(f_test=f_test, sigma=samples["sigma"].astype(np.float64), num_steps=num_steps)
    return meta, arrays


def _jax_log_density(x_train: np.ndarray, y_train: np.ndarray):
    """H1's log joint in JAX (float32) over one flat unconstrained vector ``(w1, b1, w2, b2, log sigma)``, up to a
    constant: ``(logdensity, unflatten, D)``; ``unflatten`` maps ``... x D`` to the named arrays."""
    import jax.numpy as jnp

    x, y = jnp.asarray(x_train, dtype=jnp.float32), jnp.asarray(y_train, dtype=jnp.float32)
    shapes = dict(w1=(x.shape[1], N_HIDDEN), b1=(N_HIDDEN,), w2=(N_HIDDEN,), b2=(), log_sigma=())
    sizes = [int(np.prod(shape)) for shape in shapes.values()]

    def unflatten(theta):  # BlackJAX's ChEES criterion wants one (chains, D) leaf
        parts = jnp.split(theta, np.cumsum(sizes)[:-1], axis=-1)
        return {k: part.reshape(*theta.shape[:-1], *shape) for (k, shape), part in zip(shapes.items(), parts)}

    def logdensity(theta):
        # sigma's LogNormal(m, s) prior with the log Jacobian is Normal(m, s) on log sigma
        p = unflatten(theta)
        f = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        weights = sum(jnp.sum(jnp.square(p[k])) for k in ("w1", "b1", "w2", "b2")) / PRIOR_SCALE**2
        log_sigma = p["log_sigma"]
        prior = -0.5 * weights - 0.5 * jnp.square((log_sigma - SIGMA_LOG_LOC) / SIGMA_LOG_SCALE)
        return prior - 0.5 * jnp.sum(jnp.square((y - f) * jnp.exp(-log_sigma))) - y.shape[0] * log_sigma

    return logdensity, unflatten, sum(sizes)


def _blackjax_child(data: dict, cfg: dict) -> tuple[dict, dict]:
    import blackjax
    import jax
    import jax.numpy as jnp
    import optax

    chains = cfg["num_chains"]
    logdensity, unflatten, dim = _jax_log_density(data["x_train"], data["y_train"])
    load_before = _loadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    key_init, key_warmup, key_sample = jax.random.split(jax.random.PRNGKey(cfg["seed"]), 3)
    positions = jax.random.uniform(key_init, (chains, dim), minval=-2.0, maxval=2.0)  # as init_to_uniform(2)
    warmup = blackjax.chees_adaptation(logdensity, chains, target_acceptance_rate=cfg["target_accept"],
                                       mass_matrix_estimation=cfg["mass_matrix"])
    (states, parameters), warm_info = warmup.run(key_warmup, positions, CHEES_INITIAL_STEP_SIZE,
                                                 optax.adam(CHEES_LEARNING_RATE), cfg["num_warmup"])
    step = jax.vmap(blackjax.dynamic_hmc(logdensity, **parameters).step)

    @jax.jit
    def sample(states, key):
        def one(states, key):
            states, info = step(jax.random.split(key, chains), states)
            return states, (states.position, info.num_integration_steps, info.is_divergent, info.acceptance_rate)
        return jax.lax.scan(one, states, jax.random.split(key, cfg["num_samples"]))[1]

    draws, num_steps, diverging, accept = jax.block_until_ready(sample(states, key_sample))
    draws = {k: np.asarray(v) for k, v in unflatten(jnp.swapaxes(draws, 0, 1)).items()}  # (chains, draws, ...)
    num_steps, diverging, accept = (np.swapaxes(np.asarray(a), 0, 1) for a in (num_steps, diverging, accept))
    warm_steps = np.asarray(warm_info.info.num_integration_steps).astype(np.int64)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    f_test = _forward_np(np.asarray(data["x_test"], dtype=np.float64), draws["w1"], draws["b1"], draws["w2"],
                         draws["b2"])
    meta = dict(
        peer="blackjax_chees" + ("_diag" if cfg["mass_matrix"] else ""),
        library_version=f"blackjax {blackjax.__version__} (jax {jax.__version__})",
        wall_time=wall, cpu_time=cpu,
        grad_evals=int(warm_steps.sum() + num_steps.sum()), grad_evals_warmup=int(warm_steps.sum()),
        grad_evals_sampling=int(num_steps.sum()), grad_evals_warmup_exact=True,
        grad_evals_note="integration steps (1 gradient each), all chains, warm-up + sampling, from the timed run",
        **_common_stats(num_steps, np.full(chains, float(parameters["step_size"])), diverging, accept),
        settings=dict(
            num_chains=chains, num_warmup=cfg["num_warmup"], num_samples=cfg["num_samples"],
            target_acceptance_rate=cfg["target_accept"], seed=cfg["seed"], mass_matrix=cfg["mass_matrix"] or "unit",
            optimiser=f"adam({CHEES_LEARNING_RATE})", initial_step_size=CHEES_INITIAL_STEP_SIZE,
            init_strategy="uniform(-2, 2) on the unconstrained space (as init_to_uniform(radius=2))",
            chain_method="one vmapped ensemble (ChEES adapts across chains)", dtype="float32",
            model="BNN 10-50-1 tanh, N(0,1) weights/biases, y ~ N(f, sigma), sigma ~ LogNormal(-1,1)",
            blackjax=blackjax.__version__, jax=jax.__version__, loadavg_before=load_before,
            loadavg_after=_loadavg(), timing="inside child; excludes interpreter start-up and imports; "
            "includes JIT compilation, warm-up, sampling and host transfer of draws",
        ),
    )
    arrays = dict(f_test=f_test, sigma=np.exp(draws["log_sigma"]).astype(np.float64), num_steps=num_steps)
    return meta, arrays


_CHILDREN = {"numpyro": _numpyro_child, "pyro": _pyro_child, "blackjax": _blackjax_child}


def _worker_main(peer: str, data_path: str, out_path: str) -> None:
    with np.load(data_path, allow_pickle=False) as z:
        data = {k: z[k] for k in ("x_train", "y_train", "x_test")}
        cfg = json.loads(str(z["cfg"]))
    meta, arrays = _CHILDREN[peer](data, cfg)
    tmp = out_path + ".part.npz"
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, out_path)


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_worker":
        p = argparse.ArgumentParser(prog="peers.py _worker")
        p.add_argument("peer", choices=_PEERS)
        p.add_argument("--data", required=True)
        p.add_argument("--out", required=True)
        a = p.parse_args(argv[1:])
        _worker_main(a.peer, a.data, a.out)
        return 0

    p = argparse.ArgumentParser(description="Run one protocol-H1 peer (NUTS on the diabetes BNN) and summarise.")
    p.add_argument("peer", choices=_PEERS)
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--target-accept", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jit-compile", action="store_true", help="Pyro only: NUTS(jit_compile=True)")
    p.add_argument("--no-count-warmup", action="store_true", help="NumPyro only: skip the counting run")
    p.add_argument("--mass-matrix", choices=["diagonal"], help="BlackJAX only: its diagonal ChEES metric")
    p.add_argument("--out", help="save the result (arrays + JSON metadata) to this .npz file")
    a = p.parse_args(argv)

    from probnets.datasets import diabetes

    split = diabetes()
    kw = dict(num_chains=a.num_chains, num_warmup=a.num_warmup, num_samples=a.num_samples,
              target_accept=a.target_accept, seed=a.seed)
    if a.peer == "numpyro":
        res = run_numpyro_nuts(split, count_warmup=not a.no_count_warmup, **kw)
    elif a.peer == "blackjax":
        res = run_blackjax_chees(split, mass_matrix=a.mass_matrix, **kw)
    else:
        res = run_pyro_nuts(split, jit_compile=a.jit_compile, **kw)
    summ = summarise(res, split)
    ge = res["grad_evals"]
    print(f"{res['peer']}  [{res['library_version']}]  dtype={res['settings']['dtype']}")
    print(f"  wall time      {res['wall_time']:.2f} s   (cpu {res['cpu_time']:.2f} s; "
          f"load avg before/after {res['settings']['loadavg_before']} / {res['settings']['loadavg_after']})")
    print(f"  grad evals     {ge if ge is not None else 'n/a'}  (warm-up {res['grad_evals_warmup']}, "
          f"sampling {res['grad_evals_sampling']}; warm-up exact: {res['grad_evals_warmup_exact']})")
    print(f"  steps/draw     {res['mean_steps_per_draw']:.1f}   mean tree depth {res['mean_tree_depth']:.2f}   "
          f"step size {np.round(res['step_size'], 4).tolist()}   divergences {res['num_divergences']}   "
          f"accept {res['mean_accept_prob']:.3f}")
    print(f"  f_test         min bulk ESS {summ['min_ess_f']:.0f}   max R-hat {summ['max_rhat_f']:.4f}")
    print(f"  sigma          mean {res['sigma'].mean():.4f}   ESS {summ['ess_sigma']:.0f}   "
          f"R-hat {summ['rhat_sigma']:.4f}")
    print(f"  test (std.)    RMSE {summ['rmse']:.4f}   NLL {summ['nll']:.4f}")
    if a.out:
        arrays = {k: v for k, v in res.items() if isinstance(v, np.ndarray)}
        meta = {k: v for k, v in res.items() if not isinstance(v, np.ndarray)}
        meta["summary"] = summ
        np.savez(a.out, meta=np.array(json.dumps(meta)), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
