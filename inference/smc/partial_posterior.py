"""The result of training a partial BNN: weighted particles of ``phi`` together with the trained ``psi``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from inference.posterior import SamplePosterior
from probnets.model import ProbModel
from probnets.predictive import Predictive


class PartialPosterior(SamplePosterior):
    """A :class:`~inference.posterior.SamplePosterior` over ``phi`` that also carries the deterministic ``psi``.

    Everything that evaluates the network (``predictive``, ``f_draws``, ``to_arviz``) first loads ``psi`` into
    the model (``model.load_state_dict(posterior.psi)``), so a posterior loaded from a file predicts with a
    freshly built model of the same architecture. ``save``/``load`` keep ``psi``.

    Args:
        samples, sample_stats, spec, info, log_weights, final_state: As for ``SamplePosterior``.
        psi: The model's ``state_dict()`` (deterministic parameters and buffers).
        trace: Per-step records of the run (loss, ESS, ...), each a 1-D tensor.
    """

    def __init__(self, samples: Tensor, sample_stats: dict[str, Tensor] | None = None, *,
                 psi: dict[str, Tensor], trace: dict[str, Tensor] | None = None, **kwargs: Any):
        super().__init__(samples, sample_stats, **kwargs)
        if not isinstance(psi, dict) or not all(isinstance(v, Tensor) for v in psi.values()):
            raise TypeError("psi must be a dict of tensors (the model's state_dict())")
        self.psi = {k: v.detach().clone() for k, v in psi.items()}
        self.trace = dict(trace or {})

    def __repr__(self) -> str:
        return (f"PartialPosterior(particles={self.num_chains * self.num_draws}, dim={self.samples.shape[-1]}, "
                f"psi={sum(v.numel() for v in self.psi.values())} values)")

    def apply_psi(self, model: ProbModel) -> ProbModel:
        """Load ``psi`` into ``model`` (in place) and return it."""
        if not callable(getattr(model, "load_state_dict", None)):
            raise TypeError(f"model must hold deterministic parameters (a PartialBNN), got {type(model).__name__}")
        current = model.state_dict()
        if any(k not in current or not torch.equal(current[k], v.to(current[k])) for k, v in self.psi.items()):
            model.load_state_dict({k: v.to(current[k]) for k, v in self.psi.items()})
        return model

    def predictive(self, model: ProbModel, x: Tensor, **kwargs: Any) -> Predictive:
        # psi is fitted: track gradients only towards inputs that ask for them
        with torch.set_grad_enabled(bool(getattr(x, "requires_grad", False))):
            return super().predictive(self.apply_psi(model), x, **kwargs)

    def f_draws(self, model: ProbModel, x: Tensor, **kwargs: Any) -> Tensor:
        with torch.set_grad_enabled(bool(getattr(x, "requires_grad", False))):
            return super().f_draws(self.apply_psi(model), x, **kwargs)

    def to_arviz(self, model: ProbModel | None = None, batch=None, **kwargs: Any):
        return super().to_arviz(None if model is None else self.apply_psi(model), batch, **kwargs)

    def _payload(self) -> dict[str, Any]:
        return {**super()._payload(), "psi": {k: v.cpu() for k, v in self.psi.items()},
                "trace": {k: v.cpu() for k, v in self.trace.items()}}

    @classmethod
    def _from_saved(cls, payload: dict[str, Any], path) -> PartialPosterior:
        if "psi" not in payload:
            raise ValueError(f"{path} holds no psi: it is a SamplePosterior file, not a PartialPosterior one")
        return cls._from_payload(payload, path, psi=payload["psi"], trace=payload.get("trace"))


__all__ = ["PartialPosterior"]
