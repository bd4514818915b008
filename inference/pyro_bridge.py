"""Sample any Pyro model with probnets' samplers through Pyro's potential function."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pyro
import torch
from pyro.distributions.util import scale_and_mask
from torch import Tensor

from probnets.model import LogDensity
from probnets.spec import ParamSpec


class PyroTarget(LogDensity):
    """The log posterior of a Pyro model in unconstrained coordinates, batched over chains.

    ``theta`` ``(..., D)`` holds every latent site, unconstrained and flattened in trace order (see
    ``spec``); ``constrain`` maps draws back to the sites' supports. The log density is minus Pyro's
    potential energy, so it includes the log-Jacobians of the constraining transforms.

    All chains are evaluated in one call when the model allows it, chosen once at the first evaluation and
    checked against the chain-by-chain potential: ``"plate"``, the model run once inside an extra outer
    ``pyro.plate`` over the chains (as Pyro's ``vectorize_particles``), which works when every tensor the model
    builds broadcasts over a new leftmost batch dimension; else ``"vmap"`` (``torch.func.vmap`` of the
    potential); else ``"loop"``, one potential call per chain, with a ``UserWarning`` saying why. ``batching``
    holds the path in use (``None`` before the first evaluation).
    """

    def __init__(self, potential_fn: Callable[[dict[str, Tensor]], Tensor], spec: ParamSpec, transforms: dict,
                 plated: Callable[[Tensor], Tensor] | None = None):
        self.potential_fn = potential_fn
        self.spec = spec
        self.dtype = torch.get_default_dtype()  # of the model's sites, set by from_pyro
        self.last_error: Exception | None = None  # the last model error reported as -inf
        self.transforms = transforms
        self.batching: str | None = None
        self._plated = plated
        self._batched: Callable[[Tensor], Tensor] | None = None
        super().__init__(self._logdensity, spec.dim)

    def _single(self, theta: Tensor) -> Tensor:
        return -self.potential_fn(self.spec.unflatten(theta))

    def _guarded(self, theta: Tensor) -> Tensor:
        """One chain's log density; a model error at an extreme point (e.g. a scale underflowing to 0) is
        numerical trouble, reported as ``-inf`` (a divergence for the sampler) instead of raised."""
        try:
            return self._single(theta)
        except (ValueError, RuntimeError) as exc:
            self.last_error = exc
            return 0.0 * theta.sum() - torch.inf

    def _logdensity(self, theta: Tensor) -> Tensor:
        flat = theta.reshape(-1, self.spec.dim)
        with pyro.validation_enabled(False):
            if self.batching is None:
                self._choose_batching(flat)
            if self._batched is not None:
                try:
                    return self._batched(flat).reshape(theta.shape[:-1])
                except (ValueError, RuntimeError):
                    pass  # e.g. a scale underflowing at one chain's extreme point: per chain, that one gets -inf
            return torch.stack([self._guarded(t) for t in flat]).reshape(theta.shape[:-1])

    def _choose_batching(self, flat: Tensor) -> None:
        """The first path that reproduces the chain-by-chain potential on these points (class docstring)."""
        probe = flat[:2] if flat.shape[0] >= 2 else flat
        try:
            expected = torch.stack([self._single(t) for t in probe])
        except (ValueError, RuntimeError):
            return  # the model fails at these points: no reference yet, this call runs chain by chain
        problems = []
        candidates = ([("plate", self._plated)] if self._plated is not None else []) + \
            [("vmap", torch.func.vmap(self._single))]
        for name, batched in candidates:
            try:
                value = batched(probe)
                if value.shape == expected.shape and torch.allclose(value, expected, equal_nan=True):
                    self.batching, self._batched = name, batched
                    return
                problems.append(f"{name}: values differ from the chain-by-chain potential")
            except Exception as exc:  # noqa: BLE001 - any failure means this path does not apply to the model
                problems.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        self.batching = "loop"
        warnings.warn("from_pyro: the model is evaluated chain by chain (slow); it does not broadcast over an extra "
                      "leftmost batch dimension (" + "; ".join(problems) + "). Write its tensors so that they "
                      "broadcast (sample sites inside pyro.plate, no in-place reshapes of latents) to vectorise "
                      "the chains.", UserWarning, stacklevel=4)

    def constrain(self, theta: Tensor) -> dict[str, Tensor]:
        """Constrained site values ``(..., *site_shape)`` for unconstrained draws ``theta`` ``(..., D)``."""
        named = self.spec.unflatten(theta)
        # Pyro's transforms map constrained -> unconstrained values; their inverses constrain.
        return {k: self.transforms[k].inv(v) if k in self.transforms else v for k, v in named.items()}

    def init_theta(self, num: int, *, generator: torch.Generator | None = None, dtype=None, radius: float = 2.0) -> Tensor:
        """Stan-style starting points: Uniform(-radius, radius) in unconstrained space, ``num x D`` (in the
        dtype of the model's sites unless ``dtype`` is given)."""
        dtype = dtype or self.dtype
        return (2 * torch.rand((num, self.spec.dim), generator=generator, dtype=dtype) - 1) * radius


def _plated_logdensity(model: Callable, args, kwargs, trace, spec: ParamSpec,
                       transforms: dict) -> Callable[[Tensor], Tensor]:
    """The log density of ``C`` chains ``theta`` ``C x D`` from one run of ``model`` inside an outer plate of size
    ``C``, left of its own plates: latent values conditioned as ``C x 1 ... 1 x site shape``, every site's scaled
    and masked ``log_prob`` summed per chain, plus the constraining transforms' log-Jacobians."""
    nesting = max((-frame.dim for site in trace.nodes.values() if site["type"] == "sample"
                   for frame in site["cond_indep_stack"] if frame.vectorized), default=0)
    batch_dims = {name: len(trace.nodes[name]["fn"].batch_shape) for name in spec.names}

    def logdensity(theta: Tensor) -> Tensor:
        chains = theta.shape[0]
        values, log_jacobian = {}, theta.new_zeros(chains)
        for name, u in spec.unflatten(theta).items():
            transform = transforms.get(name)
            x = u if transform is None else transform.inv(u)
            if transform is not None:
                jacobian = transform.inv.log_abs_det_jacobian(u, x)
                log_jacobian = log_jacobian + jacobian.reshape(chains, -1).sum(-1)
            values[name] = x.reshape(chains, *(1,) * (nesting - batch_dims[name]), *x.shape[1:])
        with pyro.plate("_probnets_chains", chains, dim=-nesting - 1):
            run = pyro.poutine.trace(pyro.poutine.condition(model, data=values)).get_trace(*args, **kwargs)
        total = log_jacobian
        for site in run.nodes.values():
            if site["type"] != "sample":
                continue
            lp = scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
            if torch.is_tensor(lp) and lp.dim() > nesting and lp.shape[0] == chains:  # differs between chains
                total = total + lp.reshape(chains, -1).sum(-1)
            else:
                total = total + torch.as_tensor(lp).sum()
        return total

    return logdensity


def from_pyro(model: Callable, *args, **kwargs) -> PyroTarget:
    """Turn a Pyro model (called with ``*args, **kwargs``) into a target for ``inference.sample``.

    Discrete latent sites with a finite support are summed out by Pyro's enumeration; one that cannot be
    enumerated, or whose enumeration fails or changes the shape of a continuous site, is a ``ValueError``
    here, before any sampling. The target's ``dtype`` is that of the model's sites; ``inference.sample``
    samples in it by default.

    Example:
        >>> target = from_pyro(model, x, y)
        >>> post = inference.sample(target, method="nuts", num_chains=4)
        >>> target.constrain(post.samples)["sigma"].mean()
    """
    from pyro.infer.mcmc.util import initialize_model

    with torch.random.fork_rng(devices=[]):  # tracing draws from the global generator: leave it as it was
        plain = pyro.poutine.trace(model).get_trace(*args, **kwargs)
        discrete = _discrete_latents(plain)
        try:
            init_params, potential_fn, transforms, _ = initialize_model(model, model_args=args, model_kwargs=kwargs)
        except (ValueError, RuntimeError, IndexError, TypeError) as exc:
            if not discrete:
                raise
            reason = " ".join(str(exc).split())
            raise ValueError(f"enumerating the discrete latent site(s) {sorted(discrete)} failed "
                             f"({type(exc).__name__}: {reason}). {_ENUMERATION_RULES}") from exc
    if not init_params:
        raise ValueError("the Pyro model has no latent sample sites to infer")
    for name, value in init_params.items():
        site = plain.nodes.get(name)
        if site is None or not discrete:
            continue
        expected = transforms[name](site["value"]).shape if name in transforms else site["value"].shape
        if value.shape != expected:
            raise ValueError(f"enumerating the discrete latent site(s) {sorted(discrete)} changes the shape of the "
                             f"continuous site {name!r} from {tuple(expected)} to {tuple(value.shape)}. "
                             f"{_ENUMERATION_RULES}")
    spec = ParamSpec(tuple(init_params), tuple(v.shape for v in init_params.values()))
    transforms = {k: transforms[k] for k in transforms}
    plated = None if discrete else _plated_logdensity(model, args, kwargs, plain, spec, transforms)
    target = PyroTarget(potential_fn, spec, transforms, plated)
    target.dtype = next(iter(init_params.values())).dtype
    return target


_ENUMERATION_RULES = ("Discrete latent sites are summed out by Pyro's parallel enumeration, which evaluates the model "
                      "at all their values at once in a new batch dimension left of the plates: continuous sites "
                      "must not depend on a discrete value for their shape, and data dimensions must be pyro.plate "
                      "dimensions (not .expand(...).to_event(...)); see https://pyro.ai/examples/enumeration.html. "
                      "probnets samples continuous latents only.")


def _discrete_latents(trace) -> dict[str, str]:
    """Discrete latent sites of a trace, by name (their distribution's name); a ``ValueError`` for one whose
    support cannot be enumerated (e.g. Poisson): no sampler here can handle it."""
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        support = getattr(site["fn"], "support", None)  # plates' subsample sites have none
        if support is None or not support.is_discrete:
            continue
        fn = site["fn"]
        base = getattr(fn, "base_dist", fn)
        if not getattr(base, "has_enumerate_support", False):
            raise ValueError(f"the Pyro model's latent site {name!r} is discrete ({type(base).__name__}) with a "
                             "support that cannot be enumerated, so it cannot be summed out, and probnets samples "
                             "continuous latents only: marginalise it by hand, bound its support (e.g. Categorical), "
                             "or observe it")
        out[name] = type(base).__name__
    return out
