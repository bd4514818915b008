"""Sample a Pyro model with probnets' vectorised NUTS: the eight schools (non-centred).

Rubin's (1981) eight schools: estimated effects ``y_j`` of coaching programmes with known standard errors
``sigma_j``, modelled hierarchically with ``theta_j = mu + tau * theta_tilde_j`` (the non-centred form, which
NUTS samples without the funnel's divergences). ``inference.from_pyro`` turns the model into a target for
``inference.sample``; sites are sampled unconstrained (``tau`` on the log scale) and summarised on their
constrained supports.

Outputs in --out: ``eight_schools.nc`` (ArviZ InferenceData as NetCDF; open with ``arviz.from_netcdf``).

Run:
    python examples/sample_pyro_model.py            # a few seconds
    python examples/sample_pyro_model.py --quick
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

import inference
from inference.diagnostics import ConvergenceWarning

Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)


def eight_schools(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", sigma.shape[0]):
        theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples_output", help="output folder (default: examples_output/)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    target = inference.from_pyro(eight_schools, SIGMA, Y)
    print(f"Latent sites (unconstrained, in order): {dict(zip(target.spec.names, map(tuple, target.spec.shapes)))}")
    # Pyro's potential function is not vmappable, so chains are evaluated one after another: keep the
    # quick run small.
    settings = ({"num_chains": 2, "num_warmup": 50, "num_samples": 50} if args.quick
                else {"num_chains": 4, "num_warmup": 1000, "num_samples": 1000})
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always", ConvergenceWarning)  # printed below with the summary instead
        posterior = inference.sample(target, method="nuts", seed=args.seed, dtype=torch.float64, target_accept=0.9,
                                     progress=not args.quick, print_summary=False, **settings)

    print(f"\nNUTS, {posterior.num_chains} chains x {posterior.num_draws} draws, "
          f"{posterior.info['wall_time']:.1f} s, {posterior.num_divergences} divergences")
    print(posterior.summary().to_string())
    params = posterior.params()
    theta = params["mu"][..., None] + params["tau"][..., None] * params["theta_tilde"]
    print("\nSchool effects theta_j = mu + tau * theta_tilde_j (posterior mean):",
          " ".join(f"{v:.1f}" for v in theta.mean((0, 1)).tolist()))
    problems = posterior.warnings()
    print("\nConvergence warnings:" if problems else "\nConvergence warnings: none")
    for message in problems:
        print(f"  - {message}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "eight_schools.nc"
    posterior.to_arviz().to_netcdf(str(path))
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
