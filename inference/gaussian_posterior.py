"""Gaussian posteriors over the flat parameter vector (mean-field or low-rank-plus-diagonal): VI and SSVI."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from inference.posterior import SamplePosterior
from probnets.model import Batch, ProbModel
from probnets.predictive import Predictive
from probnets.spec import ParamSpec
from probnets.validation import check_positive_int

_FORMAT = 1


class GaussianPosterior:
    """An equally weighted mixture of ``C`` Gaussians ``N(mean_c, diag(scale_c^2) + factor_c factor_c^T)`` over
    ``theta`` (``C`` = the restarts kept by the fit, usually 1).

    Args:
        mean: ``C x D``.
        scale: ``C x D`` standard deviations (0 where a coordinate is pruned, e.g. outside SSVI's subspace).
        factor: Optional low-rank factor ``C x D x K``.
        spec: Parameter layout for named views (optional).
        info: Plain run metadata (method, settings, ELBO, wall time, ...).
        mask: Optional ``C x D`` boolean: the active coordinates (SSVI); inactive ones are exactly 0.
    """

    def __init__(self, mean: Tensor, scale: Tensor, factor: Tensor | None = None, *, spec: ParamSpec | None = None,
                 info: dict[str, Any] | None = None, mask: Tensor | None = None):
        if mean.dim() != 2:
            raise ValueError(f"mean must have shape (C, D), got {tuple(mean.shape)}")
        if scale.shape != mean.shape:
            raise ValueError(f"scale must have the shape of mean {tuple(mean.shape)}, got {tuple(scale.shape)}")
        if factor is not None and (factor.dim() != 3 or factor.shape[:2] != mean.shape):
            raise ValueError(f"factor must have shape ({mean.shape[0]}, {mean.shape[1]}, K), got {tuple(factor.shape)}")
        if mask is not None and mask.shape != mean.shape:
            raise ValueError(f"mask must have the shape of mean {tuple(mean.shape)}, got {tuple(mask.shape)}")
        if spec is not None and spec.dim != mean.shape[-1]:
            raise ValueError(f"spec has dimension {spec.dim} but mean has {mean.shape[-1]}")
        self.mean, self.scale, self.factor, self.mask = mean, scale, factor, mask
        self.spec = spec
        self.info = dict(info or {})

    def __repr__(self) -> str:
        rank = 0 if self.factor is None else self.factor.shape[-1]
        return f"GaussianPosterior(components={self.num_components}, dim={self.mean.shape[-1]}, rank={rank})"

    @property
    def num_components(self) -> int:
        return self.mean.shape[0]

    @property
    def dim(self) -> int:
        return self.mean.shape[1]

    def covariance(self) -> Tensor:
        """Per-component covariance ``C x D x D``."""
        cov = torch.diag_embed(self.scale.square())
        return cov if self.factor is None else cov + self.factor @ self.factor.transpose(-1, -2)

    @property
    def variance(self) -> Tensor:
        """Per-component marginal variances ``C x D``."""
        var = self.scale.square()
        return var if self.factor is None else var + self.factor.square().sum(-1)

    def draws(self, num_draws: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``num_draws`` draws of every component, ``C x S x D``."""
        num_draws = check_positive_int(num_draws, "num_draws")
        c, d = self.mean.shape
        eps = torch.randn((c, num_draws, d), generator=generator, dtype=self.mean.dtype).to(self.mean.device)
        theta = self.mean.unsqueeze(1) + self.scale.unsqueeze(1) * eps
        if self.factor is not None:
            z = torch.randn((c, num_draws, self.factor.shape[-1]), generator=generator,
                            dtype=self.mean.dtype).to(self.mean.device)
            theta = theta + z @ self.factor.transpose(-1, -2)
        return theta

    def sample(self, sample_shape: Sequence[int] = (), *, generator: torch.Generator | None = None) -> Tensor:
        """Draws ``*sample_shape x D`` from the mixture (each from a uniformly chosen component)."""
        n = int(torch.Size(sample_shape).numel())
        theta = self.draws(max(n, 1), generator=generator)[:, :n]
        if self.num_components > 1:
            component = torch.randint(self.num_components, (n,), generator=generator).to(theta.device)
            theta = theta[component, torch.arange(n, device=theta.device)]
        else:
            theta = theta[0]
        return theta.reshape(*sample_shape, self.dim)

    def predictive(self, model: ProbModel, x: Tensor, *, num_samples: int | None = None,
                   generator: torch.Generator | None = None, chunk_size: int | None = None) -> Predictive:
        """Monte Carlo predictive over ``num_samples`` draws (default 200)."""
        theta = self.sample((200 if num_samples is None else check_positive_int(num_samples, "num_samples"),),
                            generator=generator)
        return model.predictive(theta, x, chunk_size=chunk_size)

    def to_sample_posterior(self, num_draws: int = 200, *, generator: torch.Generator | None = None) -> SamplePosterior:
        """``num_draws`` draws per component as a ``SamplePosterior`` (components as chains), for code that
        works on draws (reports, function-space summaries)."""
        return SamplePosterior(self.draws(num_draws, generator=generator), spec=self.spec, info=self.info)

    def to_arviz(self, model: ProbModel | None = None, batch: Batch | None = None, *, num_draws: int = 200,
                 generator: torch.Generator | None = None):
        """ArviZ ``InferenceData`` of ``num_draws`` draws per component (see ``SamplePosterior.to_arviz``)."""
        return self.to_sample_posterior(num_draws, generator=generator).to_arviz(model, batch)

    def save(self, path: str | os.PathLike) -> None:
        """Save the moments, layout and metadata (``torch.load(weights_only=True)``-safe)."""
        payload = {
            "format": _FORMAT, "mean": self.mean.detach().cpu(), "scale": self.scale.detach().cpu(),
            "factor": None if self.factor is None else self.factor.detach().cpu(),
            "mask": None if self.mask is None else self.mask.cpu(),
            "spec": None if self.spec is None else {"names": list(self.spec.names),
                                                    "shapes": [list(s) for s in self.spec.shapes]},
            "info": {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool, type(None)))},
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GaussianPosterior:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT or "scale" not in payload:
            raise ValueError(f"{path} is not a probnets GaussianPosterior file")
        spec = payload["spec"]
        return cls(payload["mean"], payload["scale"], payload["factor"], mask=payload["mask"], info=payload["info"],
                   spec=None if spec is None else ParamSpec(tuple(spec["names"]),
                                                            tuple(torch.Size(s) for s in spec["shapes"])))
