"""Parameter groups of structured SG-MCMC: a partition of the ``D`` coordinates of ``theta`` into ``K`` groups,
given as one group id per coordinate (``D`` integers in ``0 .. K - 1``, every group non-empty).

Partitions (Alexos, Boyd and Mandt 2022):

- ``"layer"``: one group per layer, from the ``ParamSpec`` names (``layers.0.weight`` and ``layers.0.bias`` share
  the layer ``layers.0``; the likelihood's parameters form the layer ``likelihood``).
- ``"neuron"``: one group per output unit of every layer: index ``j`` along the first dimension of every tensor
  of the layer (row ``j`` of a ``Linear`` weight and its bias ``j``; output channel ``j`` of a conv kernel);
  a scalar parameter is a group of its own.
- ``"random"``: every coordinate in a uniformly random group of ``K``.
- ``"permuted"``: a random permutation of the coordinates dealt round-robin into ``K`` groups, which are then
  balanced (sizes differ by at most one).

``K = 1`` puts all coordinates in one group: ordinary SG-MCMC.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probnets.spec import ParamSpec
from probnets.validation import check_positive_int

PARTITIONS = ("layer", "neuron", "random", "permuted")
#: ``K`` of the random partitions unless given (fewer when ``D`` is smaller).
DEFAULT_NUM_GROUPS = 4


def by_layer(spec: ParamSpec) -> Tensor:
    """One group per layer (the parameter name up to its last dot), in order of first appearance; ``D``."""
    layers = [name.rsplit(".", 1)[0] if "." in name else name for name in spec.names]
    ids = {layer: k for k, layer in enumerate(dict.fromkeys(layers))}
    return torch.cat([torch.full((torch.Size(shape).numel(),), ids[layer], dtype=torch.long)
                      for layer, shape in zip(layers, spec.shapes)])


def by_neuron(spec: ParamSpec) -> Tensor:
    """One group per (layer, index along the first dimension); ``D``."""
    layers = [name.rsplit(".", 1)[0] if "." in name else name for name in spec.names]
    keys, parts = {}, []
    for name, layer, shape in zip(spec.names, layers, spec.shapes):
        shape = torch.Size(shape)
        if len(shape) == 0:
            units = [keys.setdefault((name, 0), len(keys))]
            parts.append(torch.tensor(units, dtype=torch.long))
            continue
        units = torch.tensor([keys.setdefault((layer, j), len(keys)) for j in range(shape[0])], dtype=torch.long)
        parts.append(units.repeat_interleave(shape[1:].numel()))
    return torch.cat(parts)


def random(dim: int, num_groups: int, generator: torch.Generator) -> Tensor:
    """Every coordinate in a uniformly random group; empty groups are dropped (so ``K`` may shrink); ``D``."""
    return compact(torch.randint(num_groups, (dim,), generator=generator))


def permuted(dim: int, num_groups: int, generator: torch.Generator) -> Tensor:
    """Round-robin over a random permutation: groups of ``D // K`` or ``D // K + 1`` coordinates; ``D``."""
    ids = torch.empty(dim, dtype=torch.long)
    ids[torch.randperm(dim, generator=generator)] = torch.arange(dim) % num_groups
    return ids


def compact(ids: Tensor) -> Tensor:
    """Relabel group ids to ``0 .. K - 1`` (in increasing order of the given ids), dropping unused ids."""
    return torch.unique(ids, return_inverse=True)[1]


def resolve(groups: str | Tensor, num_groups: int | None, dim: int, spec: ParamSpec | None, seed: int) -> Tensor:
    """The group id of every coordinate, ``D`` longs in ``0 .. K - 1`` with every group non-empty.

    Args:
        groups: One of ``PARTITIONS``, or explicit ids (``D`` integers; relabelled to ``0 .. K - 1``).
        num_groups: ``K`` for ``"random"`` and ``"permuted"`` (``None``: ``min(4, D)``); must be ``None`` otherwise
            (the partition fixes it).
        dim: ``D``.
        spec: The parameter layout (needed by ``"layer"`` and ``"neuron"``).
        seed: Seeds the random partitions.
    """
    if isinstance(groups, Tensor):
        if num_groups is not None:
            raise ValueError("num_groups is set by explicit group ids; leave it None")
        if groups.shape != (dim,) or groups.dtype.is_floating_point or groups.dtype == torch.bool:
            raise ValueError(f"groups as a tensor must hold one integer id per coordinate, shape ({dim},), got "
                             f"shape {tuple(groups.shape)} and dtype {groups.dtype}")
        return compact(groups.to(torch.long).cpu())
    if groups not in PARTITIONS:
        raise ValueError(f"groups must be one of {PARTITIONS} or a tensor of {dim} group ids, got {groups!r}")
    if groups in ("layer", "neuron"):
        if num_groups is not None:
            raise ValueError(f"num_groups is set by groups={groups!r}; leave it None")
        if spec is None or spec.dim != dim:
            raise ValueError(f"groups={groups!r} needs the parameter layout (a ProbModel, or a log density with a "
                             "matching .spec); use groups='permuted' or explicit ids for a bare log density")
        return by_layer(spec) if groups == "layer" else by_neuron(spec)
    num_groups = check_positive_int(num_groups if num_groups is not None else min(DEFAULT_NUM_GROUPS, dim),
                                    "num_groups")
    if num_groups > dim:
        raise ValueError(f"num_groups ({num_groups}) exceeds the number of parameters D ({dim})")
    generator = torch.Generator().manual_seed(int(seed))
    return random(dim, num_groups, generator) if groups == "random" else permuted(dim, num_groups, generator)
