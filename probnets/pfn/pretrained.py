"""PFNs that ship inside the package: ``load_pretrained(name)`` gives instant offline inference."""

from __future__ import annotations

from pathlib import Path

import torch

from probnets.pfn.configs import CONFIGS
from probnets.pfn.model import PFN

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def available() -> list[str]:
    """Names of the pretrained PFNs present in this installation."""
    return sorted(p.stem for p in CHECKPOINTS.glob("*.pt"))


def load_pretrained(name: str = "gp-rbf-1d", *, map_location: str | torch.device = "cpu") -> PFN:
    """Load a shipped PFN in evaluation mode.

    Args:
        name: One of :func:`available` (``probnets.pfn.configs.CONFIGS`` describes each one's task prior;
            ``scripts/train_pfn.py NAME`` retrains it).
        map_location: Device of the returned model.
    """
    path = CHECKPOINTS / f"{name}.pt"
    if not path.exists():
        known = available()
        raise ValueError(f"no pretrained PFN named {name!r}; available: {known}"
                         + ("" if name in known or name not in CONFIGS else
                            f" ({name!r} is configured but its checkpoint is missing: run scripts/train_pfn.py {name})"))
    state = torch.load(path, map_location=map_location, weights_only=True)
    config = dict(state["model"])
    if name in CONFIGS:  # checkpoints written before symmetries were recorded take them from the configuration
        config.setdefault("symmetries", CONFIGS[name]["model"].get("symmetries"))
    model = PFN(state["borders"], **config)
    model.load_state_dict(state["state_dict"])
    return model.eval()
