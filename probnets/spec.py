"""Flat <-> named views of a model's stochastic parameters."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class ParamSpec:
    """Layout of the stochastic parameters inside a flat vector ``theta``.

    Engines work on ``theta`` of shape ``(..., D)`` where the leading dimensions are chains,
    particles or draws. ``unflatten`` returns views into ``theta`` (no copies).

    Args:
        names: Parameter names, e.g. ``("layers.0.weight", "layers.0.bias")``.
        shapes: Event shape of each parameter, in the same order.

    Example:
        >>> spec = ParamSpec.from_shapes({"w": (2, 3), "b": (3,)})
        >>> spec.dim
        9
        >>> spec.unflatten(torch.zeros(4, 9))["w"].shape
        torch.Size([4, 2, 3])
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    dim: int = field(init=False)
    offsets: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        shapes = tuple(torch.Size(s) for s in self.shapes)
        if len(names) != len(shapes):
            raise ValueError(f"names and shapes must have equal length, got {len(names)} and {len(shapes)}")
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names}")
        offsets, total = [], 0
        for s in shapes:
            offsets.append(total)
            total += math.prod(s)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "dim", total)
        object.__setattr__(self, "offsets", tuple(offsets))

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, Iterable[int]]) -> ParamSpec:
        return cls(tuple(shapes), tuple(torch.Size(s) for s in shapes.values()))

    def __add__(self, other: ParamSpec) -> ParamSpec:
        return ParamSpec(self.names + other.names, self.shapes + other.shapes)

    def slice(self, name: str) -> slice:
        """The slice of ``theta[..., :]`` holding parameter ``name``."""
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + math.prod(self.shapes[i]))

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """Concatenate named parameters ``(..., *shape)`` into ``theta`` of shape ``(..., D)``."""
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(f"params is missing {missing}")
        parts = []
        for name, shape in zip(self.names, self.shapes):
            p = params[name]
            nb = p.dim() - len(shape)
            if nb < 0 or p.shape[nb:] != shape:
                raise ValueError(f"params[{name!r}] has shape {tuple(p.shape)}, expected (..., {', '.join(map(str, shape))})")
            parts.append(p.reshape(*p.shape[:nb], -1))
        batches = {q.shape[:-1] for q in parts}
        if len(batches) > 1:
            raise ValueError(f"params have different batch shapes {sorted(map(tuple, batches))}")
        return torch.cat(parts, dim=-1)

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Named views of ``theta`` ``(..., D)``: a dict of ``(..., *shape)`` tensors."""
        if theta.shape[-1] != self.dim:
            raise ValueError(f"theta has last dimension {theta.shape[-1]}, expected {self.dim}")
        batch = theta.shape[:-1]
        return {
            name: theta[..., off : off + math.prod(shape)].reshape((*batch, *shape))
            for name, shape, off in zip(self.names, self.shapes, self.offsets)
        }
