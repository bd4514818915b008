"""Train one of the PFNs that ship with probnets (``probnets.pfn.configs.CONFIGS``) and write its checkpoint.

Reproducible: the same name, seed and step count give the same weights (one torch generator drives the task
draws; a run killed midway resumes from ``<out>.partial`` with identical results).

Usage::

    python scripts/train_pfn.py gp-rbf-1d [--steps N] [--seed 0] [--threads 1]
                                          [--out probnets/pfn/checkpoints/gp-rbf-1d.pt]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inference.amortized import train_amortized
from probnets.pfn.bar_distribution import borders_from_samples
from probnets.pfn.configs import CONFIGS, task_prior
from probnets.pfn.model import PFN

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=None, help="override the configuration's step count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = CONFIGS[args.name]
    steps = args.steps or config["num_steps"]
    out = Path(args.out) if args.out else ROOT / "probnets" / "pfn" / "checkpoints" / f"{args.name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)

    prior = task_prior(args.name)
    generator = torch.Generator().manual_seed(args.seed)
    draws = prior.sample(4000, num_context=0, num_target=prior.max_points, generator=generator,
                         dtype=torch.float64).y
    borders = borders_from_samples(draws, config["num_buckets"]).float()
    torch.manual_seed(args.seed)
    model = PFN(borders, **config["model"])
    start = time.perf_counter()
    result = train_amortized(model, prior, num_steps=steps, batch_size=config["batch_size"], lr=config["lr"],
                             seed=args.seed, checkpoint=out.with_suffix(".partial"), checkpoint_every=500)
    wall = time.perf_counter() - start
    torch.save({"state_dict": model.state_dict(), "borders": borders, "model": config["model"],
                "name": args.name, "num_steps": steps, "seed": args.seed}, out)
    losses = result.losses
    summary = {"name": args.name, "num_steps": steps, "seed": args.seed, "wall_time_s": round(wall, 1),
               "final_loss_mean_last_500": float(losses[-500:].nanmean()), "skipped_steps": result.skipped_steps}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    out.with_suffix(".partial").unlink(missing_ok=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
