"""Train one of the PFNs that ship with probnets (``probnets.pfn.configs.CONFIGS``) and write its checkpoint.

Reproducible: the same name, seed and step count give the same weights (one torch generator drives the task
draws; a run killed midway resumes from ``<out>.partial`` with identical results).

Usage::

    python scripts/train_pfn.py gp-rbf-1d [--steps N] [--seed 0] [--threads 1]
                                          [--out probnets/pfn/checkpoints/gp-rbf-1d.pt] [--from-stage1 CKPT]

A configuration may add fine-tuning stages (``finetune``: a list of ``{num_steps, lr}``), each a fresh warm-up and
cosine decay on fresh tasks, run after the first stage.
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
    parser.add_argument("--steps", type=int, default=None, help="override the first stage's step count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--from-stage1", default=None,
                        help="a checkpoint this script wrote after the first stage: start from it and run only the "
                             "fine-tuning stage")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = CONFIGS[args.name]
    stages = [dict(num_steps=args.steps or config["num_steps"], lr=config["lr"])] + config.get("finetune", [])
    out = Path(args.out) if args.out else ROOT / "probnets" / "pfn" / "checkpoints" / f"{args.name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)

    prior = task_prior(args.name)
    generator = torch.Generator().manual_seed(args.seed)
    draws = prior.sample(4000, num_context=0, num_target=prior.max_points, generator=generator,
                         dtype=torch.float64).y
    borders = borders_from_samples(draws, config["num_buckets"]).float()
    torch.manual_seed(args.seed)
    model = PFN(borders, **config["model"])
    first = 0
    if args.from_stage1:
        state = torch.load(args.from_stage1, weights_only=True)
        if not torch.equal(state["borders"], borders):
            raise ValueError(f"{args.from_stage1} was not written by this configuration (its borders differ)")
        model.load_state_dict(state["state_dict"])
        first = 1
    summary = {"name": args.name, "seed": args.seed, "stages": []}
    for index, stage in enumerate(stages[first:], start=first):
        start = time.perf_counter()
        # each stage draws fresh tasks (seed + stage index) and has its own warm-up and cosine decay
        result = train_amortized(model, prior, num_steps=stage["num_steps"], batch_size=config["batch_size"],
                                 lr=stage["lr"], seed=args.seed + index,
                                 checkpoint=out.with_suffix(f".stage{index}.partial"), checkpoint_every=500)
        summary["stages"].append({**stage, "wall_time_s": round(time.perf_counter() - start, 1),
                                  "final_loss_mean_last_500": float(result.losses[-500:].nanmean()),
                                  "skipped_steps": result.skipped_steps})
        out.with_suffix(f".stage{index}.partial").unlink(missing_ok=True)
    torch.save({"state_dict": model.state_dict(), "borders": borders, "model": config["model"],
                "name": args.name, "stages": stages, "seed": args.seed}, out)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
