"""Posteriors represented by draws (MCMC, SG-MCMC, SMC, ensembles)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from probnets.model import Batch, ProbModel
from probnets.predictive import Predictive
from probnets.spec import ParamSpec

_FORMAT = 1


class SamplePosterior:
    """Draws ``chains x draws x D`` of the flat parameter vector, with per-draw sampler statistics.

    Args:
        samples: ``C x S x D`` draws.
        sample_stats: ArviZ-named statistics (``lp``, ``acceptance_rate``, ``step_size``, ``n_steps``,
            ``tree_depth``, ``diverging``, ``energy``), each ``C x S``.
        warmup_stats: The same statistics for warm-up iterations, each ``C x num_warmup``.
        spec: Parameter layout for named views (optional).
        info: Plain run metadata (method, settings, wall time, ...).
        log_weights: Optional importance log weights ``C x S`` (SMC); uniform when ``None``.
        final_state: The sampler state after the last iteration (to continue or warm-start a run).
        constrain: Optional map from unconstrained draws ``(..., D)`` to named constrained values (Pyro
            models); used by ``params``, ``summary`` and ``to_arviz``.
    """

    def __init__(self, samples: Tensor, sample_stats: dict[str, Tensor] | None = None, *,
                 warmup_stats: dict[str, Tensor] | None = None, spec: ParamSpec | None = None,
                 info: dict[str, Any] | None = None, log_weights: Tensor | None = None, final_state: Any = None,
                 constrain=None):
        if samples.dim() != 3:
            raise ValueError(f"samples must have shape (chains, draws, D), got {tuple(samples.shape)}")
        if spec is not None and spec.dim != samples.shape[-1]:
            raise ValueError(f"spec has dimension {spec.dim} but samples have {samples.shape[-1]}")
        if log_weights is not None and log_weights.shape != samples.shape[:2]:
            raise ValueError(f"log_weights must have shape {tuple(samples.shape[:2])}, got {tuple(log_weights.shape)}")
        self.samples = samples
        self.sample_stats = dict(sample_stats or {})
        self.warmup_stats = dict(warmup_stats or {})
        self.spec = spec
        self.info = dict(info or {})
        self.log_weights = log_weights
        self.final_state = final_state
        self.constrain = constrain

    def __repr__(self) -> str:
        return f"SamplePosterior(chains={self.num_chains}, draws={self.num_draws}, dim={self.samples.shape[-1]})"

    @property
    def num_chains(self) -> int:
        return self.samples.shape[0]

    @property
    def num_draws(self) -> int:
        return self.samples.shape[1]

    @property
    def num_divergences(self) -> int:
        d = self.sample_stats.get("diverging")
        return int(d.sum()) if d is not None else 0

    @property
    def num_grad_evals(self) -> int:
        """Leapfrog steps (gradient evaluations) summed over chains, warm-up and sampling."""
        return sum(int(s["n_steps"].sum()) for s in (self.sample_stats, self.warmup_stats) if "n_steps" in s)

    def flat_samples(self) -> Tensor:
        """All draws as ``(C * S) x D``."""
        return self.samples.reshape(-1, self.samples.shape[-1])

    def params(self) -> dict[str, Tensor]:
        """Named draws ``C x S x *shape`` (constrained when the posterior has a ``constrain`` map)."""
        if self.constrain is not None:
            return self.constrain(self.samples)
        if self.spec is None:
            raise ValueError("this posterior has no ParamSpec; named views are unavailable")
        return self.spec.unflatten(self.samples)

    def _named(self) -> dict[str, Tensor]:
        return self.params() if (self.spec is not None or self.constrain is not None) else {"theta": self.samples}

    def sample(self, sample_shape: Sequence[int] = (), *, generator: torch.Generator | None = None) -> Tensor:
        """Resample draws (with replacement, by weight if weighted): ``*sample_shape x D``."""
        flat = self.flat_samples()
        n = int(torch.Size(sample_shape).numel())
        weights = torch.ones(flat.shape[0]) if self.log_weights is None else torch.softmax(self.log_weights.reshape(-1).double(), 0)
        idx = torch.multinomial(weights, n, replacement=True, generator=generator)
        return flat[idx.to(flat.device)].reshape(*sample_shape, flat.shape[-1])

    def predictive(self, model: ProbModel, x: Tensor, *, num_samples: int | None = None,
                   generator: torch.Generator | None = None, chunk_size: int | None = None) -> Predictive:
        """Mixture predictive over the draws (all of them, or ``num_samples`` chosen without replacement)."""
        theta = self.flat_samples()
        log_w = None if self.log_weights is None else self.log_weights.reshape(-1)
        if num_samples is not None and num_samples < theta.shape[0]:
            idx = torch.randperm(theta.shape[0], generator=generator)[:num_samples].to(theta.device)
            theta = theta[idx]
            log_w = None if log_w is None else log_w[idx]
        return model.predictive(theta, x, log_weights=log_w, chunk_size=chunk_size)

    def f_draws(self, model: ProbModel, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Latent outputs per chain and draw, ``C x S x n x m`` (for diagnostics in function space)."""
        return model.predict_f(self.samples, x, chunk_size=chunk_size)

    def summary(self, names: Sequence[str] | None = None, *, prob: float = 0.9):
        """ArviZ-style table (mean, sd, interval, MCSE, bulk/tail ESS, R-hat) of named parameters."""
        from inference import diagnostics

        draws = self._named()
        if names is not None:
            draws = {n: draws[n] for n in names}
        return diagnostics.summary(draws, prob=prob)

    def warnings(self) -> list[str]:
        """Convergence warnings: a single chain, divergences, R-hat > 1.01, low ESS, stuck chains, saturated
        NUTS trees, warm-up divergences (``inference.sampling_problems``)."""
        from inference import diagnostics
        from inference.sampling_problems import sampling_warnings

        return diagnostics.convergence_warnings(self._named(), diverging=self.sample_stats.get("diverging"),
                                                num_chains=self.num_chains) + sampling_warnings(self)

    def to_arviz(self, model: ProbModel | None = None, batch: Batch | None = None, *, chunk_size: int = 256):
        """ArviZ ``InferenceData`` with ``posterior``, ``sample_stats`` and, given a model and its data,
        ``log_likelihood`` and ``observed_data`` groups."""
        if model is None or batch is None:
            return self.inference_data()
        x, y = model.prepare_batch(batch)
        flat = self.flat_samples()
        ll = torch.cat([model.log_likelihood(c, (x.to(flat.dtype), y)) for c in flat.split(chunk_size)])
        return self.inference_data(ll.reshape(self.num_chains, self.num_draws, -1), y)

    def inference_data(self, log_likelihood: Tensor | None = None, observed: Tensor | None = None):
        """ArviZ ``InferenceData`` with ``posterior`` and ``sample_stats`` (with the importance ``log_weight`` of
        every draw when the posterior is weighted) and, when given, a ``log_likelihood``
        group (per draw and datum, ``C x S x n``) and the ``observed_data`` ``y`` it scores (``n x ...``): the
        export of :meth:`to_arviz` for posteriors that compute their log-likelihood themselves."""
        import arviz as az

        groups: dict[str, Any] = {
            "posterior": {k: v.detach().cpu().numpy() for k, v in self._named().items()},
            "sample_stats": {k: v.detach().cpu().numpy() for k, v in self.sample_stats.items()},
        }
        if self.log_weights is not None:  # ArviZ's own summaries ignore it: use this posterior's summary()
            groups["sample_stats"]["log_weight"] = self.log_weights.detach().cpu().numpy()
        if (log_likelihood is None) != (observed is None):
            raise ValueError("log_likelihood and observed must be given together")
        if log_likelihood is not None:
            if log_likelihood.shape[:2] != self.samples.shape[:2] or log_likelihood.dim() != 3:
                raise ValueError(f"log_likelihood must have shape ({self.num_chains}, {self.num_draws}, n), got "
                                 f"{tuple(log_likelihood.shape)}")
            groups["log_likelihood"] = {"y": log_likelihood.detach().cpu().numpy()}
            groups["observed_data"] = {"y": observed.detach().cpu().numpy()}
        attrs = {"inference_library": "probnets", "inference_library_version": _version(),
                 **{k: (int(v) if isinstance(v, bool) else v) for k, v in self.info.items()
                    if isinstance(v, (int, float, str))}}  # NetCDF attributes have no boolean type
        return az.from_dict(**groups, attrs=attrs)

    def save(self, path: str | os.PathLike) -> None:
        """Save draws, statistics, layout and metadata (``torch.load(weights_only=True)``-safe)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(self._payload(), path)

    def _payload(self) -> dict[str, Any]:
        """What ``save`` writes (subclasses add their own entries)."""
        return {
            "format": _FORMAT,
            "kind": f"{type(self).__module__}.{type(self).__qualname__}",
            "samples": self.samples.detach().cpu(),
            "sample_stats": {k: v.cpu() for k, v in self.sample_stats.items()},
            "warmup_stats": {k: v.cpu() for k, v in self.warmup_stats.items()},
            "log_weights": None if self.log_weights is None else self.log_weights.cpu(),
            "spec": None if self.spec is None else {"names": list(self.spec.names),
                                                    "shapes": [list(s) for s in self.spec.shapes]},
            "info": {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool, type(None)))},
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> SamplePosterior:
        """A posterior saved by :meth:`save`; a file saved by a subclass of ``cls`` (SMC particles, a partial
        BNN) loads as that subclass, so its weights and extra state keep their meaning."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        saved = _saved_class(payload)
        return (saved if saved is not None and issubclass(saved, cls) else cls)._from_saved(payload, path)

    @classmethod
    def _from_saved(cls, payload: dict[str, Any], path) -> SamplePosterior:
        """The posterior of a loaded ``payload`` (subclasses with extra state override this)."""
        return cls._from_payload(payload, path)

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], path, **extra: Any) -> SamplePosterior:
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT or "samples" not in payload:
            other = ("; it holds a GaussianPosterior (load it with GaussianPosterior.load)"
                     if isinstance(payload, dict) and "scale" in payload else "")
            raise ValueError(f"{path} is not a probnets SamplePosterior file{other}")
        spec = payload["spec"]
        return cls(payload["samples"], payload["sample_stats"], warmup_stats=payload["warmup_stats"],
                   spec=None if spec is None else ParamSpec(tuple(spec["names"]), tuple(torch.Size(s) for s in spec["shapes"])),
                   info=payload["info"], log_weights=payload["log_weights"], **extra)


def _saved_class(payload: Any) -> type | None:
    """The ``SamplePosterior`` class a payload names (only classes of this package), else ``None``."""
    kind = payload.get("kind") if isinstance(payload, dict) else None
    module, _, name = kind.rpartition(".") if isinstance(kind, str) else ("", "", "")
    if not module.startswith("inference."):
        return None
    saved = getattr(importlib.import_module(module), name, None)
    return saved if isinstance(saved, type) and issubclass(saved, SamplePosterior) else None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("probnets")
    except Exception:  # noqa: BLE001 - metadata absent in a source checkout
        return "unknown"
