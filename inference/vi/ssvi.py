"""Sparse subspace variational inference (SSVI; Li, Miao, Qiu, Zhang, ICLR 2024) for a ``BNN``.

Every weight matrix keeps a fixed number ``nnz_l = round(density * out * in)`` of active coordinates with
``q(theta_i) = N(mean_i, softplus(rho_i)^2)``; the others are exactly 0 (a point mass, outside the KL). Biases and
the likelihood's parameters are dense mean-field Gaussians. The subspace starts at random, with the model's initial
weights rescaled to the fan-in each unit keeps (:func:`sparse_init`). Training alternates

- Adam steps on the ELBO (local reparameterisation through the sparse layers, KL warm-up, temperature), and
- every ``update_every`` steps until ``update_until * num_steps``: in every layer, the ``k_l = floor(nnz_l * alpha / 2
  * (1 + cos(pi t / T_end)))`` active coordinates with the lowest removal score (:mod:`inference.vi.pruning`)
  leave, and as many inactive ones with the largest ``|d log-lik / d W|`` (dense gradient at the mean weights,
  on the step's batch) enter with ``mean = 0`` and ``rho`` the mean ``rho`` of the layer's remaining coordinates;
  their Adam moments start at 0. ``rho``'s subspace is ``mean``'s (one index per slot serves both).

Beyond the paper, the active coordinates are stored packed (a value per slot, no dense ``out x in`` tensors) and
multiplied as CSR matrices (:mod:`inference.vi.sparse_linear`), so the time and memory of a step and of
prediction fall with the density (``benchmarks/vi.py``); only a subspace update forms one dense gradient per layer.
The update follows the Adam step of its iteration (the paper's update replaces that iteration's step).

Example:
    >>> posterior = fit_vi(BNN(64, [256, 256], 10, likelihood=Categorical()), (x, labels), method="ssvi",
    ...                    density=0.1, num_epochs=20, batch_size=128)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from inference.vi.family import inverse_softplus
from inference.vi.mfvi import ElboTracker, optimise_elbo, prepare_data, resolve_steps, run_info
from inference.vi.pruning import CRITERIA, score
from inference.vi.sparse_linear import SparseLayout, sparse_linear
from inference.vi.sparse_posterior import SparseGaussianPosterior
from probnets import priors as priors_lib
from probnets.bnn import BNN
from probnets.validation import check_positive_float, check_positive_int


class Subspace:
    """The active coordinates of every weight matrix (one ``SparseLayout`` per layer); checkpointed with the run."""

    def __init__(self, layouts: list[SparseLayout]):
        self.layouts = layouts

    def state_dict(self) -> dict[str, Any]:
        return {"index": [layout.index.clone() for layout in self.layouts]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.layouts = [SparseLayout(index.to(old.index.device), old.shape)
                        for index, old in zip(state["index"], self.layouts)]


def update_fraction(step: int, alpha: float, end: int) -> float:
    """The fraction of a layer's active coordinates exchanged at ``step``: ``alpha / 2 (1 + cos(pi step / end))``."""
    return 0.5 * alpha * (1 + math.cos(math.pi * step / end))


def fit(model: BNN, data, *, density: float | Sequence[float] = 0.1, criterion: str = "abs_snr", lam: float = 1.0,
        update_every: int = 100, alpha: float = 0.3, update_until: float = 0.75, static: bool = False,
        num_steps: int | None = None, num_epochs: int | None = None, batch_size: int | None = None,
        num_samples: int = 4, lr: float = 1e-2, warmup_fraction: float | None = None, grad_clip: float | None = None,
        init_scale: float = 1e-2, kl_warmup: float = 0.0, temperature: float = 1.0, seed: int = 0,
        dtype: torch.dtype | None = None, checkpoint=None, checkpoint_every: int = 100,
        progress: bool = True) -> SparseGaussianPosterior:
    """Fit SSVI to a ``BNN`` on ``data``.

    Args:
        model: A ``BNN`` (its priors on weights must be one distribution per layer, batch shape ``()``).
        data: ``(x, y)`` tensors or a ``DataLoader``.
        density: Fraction of every weight matrix that is active, in ``(0, 1]``, or one per layer (the paper keeps
            its first layer dense: ``(1.0, 0.1, 0.1)``).
        criterion: Removal score, one of ``pruning.CRITERIA`` (default ``"abs_snr"``, the paper's default).
        lam: ``lambda`` of the exponential criteria.
        update_every: Steps between subspace updates (``Delta T``).
        alpha: Initial exchanged fraction of the cosine schedule.
        update_until: Fraction of the run after which the subspace is fixed (``T_end``).
        static: Keep the initial random subspace (no updates; the paper's static-mask ablation).
        num_steps, num_epochs, batch_size, num_samples, lr, warmup_fraction, grad_clip, init_scale, kl_warmup,
        temperature, seed, dtype, checkpoint, checkpoint_every, progress: As in :func:`inference.vi.mfvi.fit`.

    Returns:
        A ``SparseGaussianPosterior`` (mean and scale 0 outside the subspace, ``mask`` the subspace), whose
        predictive multiplies sparsely.
    """
    if not isinstance(model, BNN):
        raise TypeError(f"SSVI needs a probnets BNN (sparse linear layers), got {type(model).__name__}")
    densities = list(density) if isinstance(density, Sequence) else [density] * model.num_layers
    if len(densities) != model.num_layers or any(
            isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= 1 for d in densities):
        raise ValueError(f"density must be a number in (0, 1] or {model.num_layers} of them (one per layer), "
                         f"got {density!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    lam = check_positive_float(lam, "lam")
    update_every = check_positive_int(update_every, "update_every")
    for name, value in (("alpha", alpha), ("update_until", update_until)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    num_samples = check_positive_int(num_samples, "num_samples")
    init_scale = check_positive_float(init_scale, "init_scale")
    temperature = check_positive_float(temperature, "temperature")
    if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, (int, float)) or not 0 <= kl_warmup < 1:
        raise ValueError(f"kl_warmup must be a number in [0, 1), got {kl_warmup!r}")
    weight_names = [f"layers.{layer}.weight" for layer in range(model.num_layers)]
    for name in weight_names:
        if model.priors[name].batch_shape != torch.Size():
            raise ValueError(f"SSVI needs one prior distribution per weight matrix (batch shape ()), "
                             f"{name} has batch shape {tuple(model.priors[name].batch_shape)}")
    next_batch, num_data, stream, dtype = prepare_data(model, data, batch_size, seed, dtype)
    num_steps = resolve_steps(num_steps, num_epochs, stream)

    generator = torch.Generator().manual_seed(seed)
    init = model.init_theta(1, generator=generator, dtype=dtype)[0]
    layouts, w_mean, w_rho = [], [], []
    for name, layer_density in zip(weight_names, densities):
        shape = model.spec.shapes[model.spec.names.index(name)]
        size = shape[0] * shape[1]
        nnz = max(1, round(layer_density * size))
        index = torch.randperm(size, generator=generator)[:nnz].to(init.device)
        layouts.append(SparseLayout(index, shape))
        w_mean.append(sparse_init(init[model.spec.slice(name)][index], layouts[-1]).requires_grad_(True))
        w_rho.append(inverse_softplus(torch.full((nnz,), init_scale, dtype=dtype, device=init.device))
                     .requires_grad_(True))
    subspace = Subspace(layouts)
    dense_index = torch.cat([torch.arange(model.spec.dim, device=init.device)[model.spec.slice(n)]
                             for n in model.spec.names if n not in weight_names])
    d_mean = init[dense_index].clone().requires_grad_(True)
    d_rho = inverse_softplus(torch.full_like(d_mean, init_scale)).requires_grad_(True)
    dense_spec_names = [n for n in model.spec.names if n not in weight_names]
    dense_sizes = [math.prod(model.spec.shapes[model.spec.names.index(n)]) for n in dense_spec_names]
    tracker = ElboTracker(num_steps, round(kl_warmup * num_steps), 1)
    num_lik = model.likelihood.spec.dim
    last: dict[str, Any] = {}

    def split_dense(values: Tensor) -> dict[str, Tensor]:
        return dict(zip(dense_spec_names, values.split(dense_sizes, -1)))

    def loss_fn() -> Tensor:
        x, y = next_batch()
        last["batch"] = (x, y)
        d_scale = F.softplus(d_rho)
        dense_draw = d_mean + d_scale * torch.randn((num_samples, d_mean.shape[0]), generator=generator,
                                                    dtype=dtype).to(d_mean.device)
        bias_mean, bias_var = split_dense(d_mean), split_dense(d_scale.square())
        h = x
        for layer, layout in enumerate(subspace.layouts):
            scale = F.softplus(w_rho[layer])
            bias = f"layers.{layer}.bias"
            mu = sparse_linear(w_mean[layer], h, layout) + bias_mean[bias]
            var = sparse_linear(scale.square(), h.square(), layout) + bias_var[bias]
            eps = torch.randn((num_samples, *mu.shape[-2:]), generator=generator, dtype=dtype).to(mu.device)
            h = mu + var.sqrt() * eps
            if layer < model.num_layers - 1:
                h = model.activation(h)
        phi = model.likelihood.spec.unflatten(dense_draw[:, dense_draw.shape[1] - num_lik:]) if num_lik else {}
        ll = model.likelihood.log_prob(h, y, phi).sum(-1)
        # E_q[log p(theta)] on fresh draws of the active weights and the dense part; the entropy in closed form
        log_prior = model.likelihood.log_prior(phi) if num_lik else torch.zeros((), dtype=dtype)
        entropy = torch.log(d_scale).sum()
        drawn = split_dense(dense_draw)
        for layer, name in enumerate(weight_names):
            scale = F.softplus(w_rho[layer])
            values = w_mean[layer] + scale * torch.randn((num_samples, scale.shape[0]), generator=generator,
                                                         dtype=dtype).to(scale.device)
            log_prior = log_prior + model.priors[name].log_prob(values).sum(-1)
            bias = f"layers.{layer}.bias"
            log_prior = log_prior + priors_lib.log_prob(model.priors[bias], drawn[bias], 1)
            entropy = entropy + torch.log(scale).sum()
        count = d_mean.shape[0] + sum(layout.nnz for layout in subspace.layouts)
        entropy = entropy + 0.5 * count * (1 + math.log(2 * math.pi))
        elbo = (num_data / (x.shape[0] * temperature)) * ll.mean() + tracker.beta() * (log_prior.mean() + entropy)
        tracker.record(elbo.reshape(1))
        return -elbo / num_data

    end = max(1, round(update_until * num_steps))

    def update_subspace(step: int, optimizer: torch.optim.Optimizer) -> None:
        t = step + 1
        if static or t % update_every or t >= end:
            return
        fraction = update_fraction(t, alpha, end)
        grads = _dense_weight_gradients(model, subspace, w_mean, d_mean, split_dense, last["batch"], num_lik)
        for layer, layout in enumerate(subspace.layouts):
            k = math.floor(layout.nnz * fraction)
            if k and layout.nnz < layout.shape[0] * layout.shape[1]:  # a dense layer has nothing to exchange
                drop, subspace.layouts[layer] = exchange(layout, w_mean[layer], w_rho[layer], grads[layer], k,
                                                         criterion, lam)
                with torch.no_grad():
                    for param in (w_mean[layer], w_rho[layer]):
                        for moment in optimizer.state.get(param, {}).values():
                            if torch.is_tensor(moment) and moment.shape == param.shape:
                                moment[drop] = 0.0

    state: dict[str, Any] = {"tracker": tracker, "subspace": subspace}
    if stream is not None:
        state["batches"] = stream
    settings = {"vi": "ssvi", "density": densities[0] if len(set(densities)) == 1 else str(densities),
                "criterion": criterion, "lam": lam, "update_every": update_every,
                "alpha": alpha, "update_until": update_until, "static": static, "num_samples": num_samples,
                "kl_warmup": kl_warmup, "temperature": temperature,
                "batch_size": None if stream is None else batch_size, "seed": seed, "dtype": str(dtype),
                "dim": model.spec.dim}
    result, wall_time = optimise_elbo(loss_fn, [*w_mean, *w_rho, d_mean, d_rho], tracker, num_steps=num_steps,
                                      lr=lr, warmup_fraction=warmup_fraction, grad_clip=grad_clip,
                                      generator=generator, state=state, settings=settings, checkpoint=checkpoint,
                                      checkpoint_every=checkpoint_every, progress=progress, description="ssvi",
                                      step_hook=update_subspace)
    with torch.no_grad():
        mean = torch.zeros(model.spec.dim, dtype=dtype, device=d_mean.device)
        scale = torch.zeros_like(mean)
        mask = torch.zeros(model.spec.dim, dtype=torch.bool, device=mean.device)
        mean[dense_index], scale[dense_index], mask[dense_index] = d_mean, F.softplus(d_rho), True
        for layer, (name, layout) in enumerate(zip(weight_names, subspace.layouts)):
            at = model.spec.slice(name).start + layout.index
            mean[at], scale[at], mask[at] = w_mean[layer], F.softplus(w_rho[layer]), True
        posterior = SparseGaussianPosterior(
            mean.unsqueeze(0), scale.unsqueeze(0), spec=model.spec, mask=mask.unsqueeze(0),
            info=run_info(settings, result, tracker, torch.zeros(1, dtype=torch.long), num_steps, lr, wall_time))
    posterior.elbo_trace = -result.losses * num_data
    return posterior


def sparse_init(values: Tensor, layout: SparseLayout) -> Tensor:
    """Initial means of the active entries: the model's initial weights rescaled to the fan-in each unit keeps.

    ``BNN.init_theta`` draws ``N(0, 1/in)``, which keeps a dense layer's pre-activations at the scale of its inputs.
    Kept as they are at ``k < in`` active inputs, they would shrink the pre-activations by ``sqrt(k / in)``, a
    factor ``sqrt(density)`` per layer: a deep sparse net then starts with outputs near 0, where the KL term holds
    it (64-1024-1024-10 on digits at density 0.1: chance accuracy after 100 epochs). Every row is therefore scaled
    by ``sqrt(in / k_row)`` (variance ``1 / k_row``: the sparsity-aware initialisation of Evci et al., AAAI 2022).
    Li et al. (2024) draw ``N(0, 0.01^2)`` in networks with batch normalisation, which does not depend on this scale.

    Args:
        values: The model's initial values at the active entries ``(nnz,)``, one per slot.
        layout: Their positions.

    Returns:
        The rescaled values ``(nnz,)``.
    """
    inn = layout.shape[1]
    rows = layout.index // inn
    fan_in = torch.bincount(rows, minlength=layout.shape[0])[rows].to(values.dtype)
    return values * (inn / fan_in).sqrt()


@torch.no_grad()
def exchange(layout: SparseLayout, mean: Tensor, rho: Tensor, grad: Tensor, k: int, criterion: str,
             lam: float = 1.0) -> tuple[Tensor, SparseLayout]:
    """One layer's subspace update, in place: the ``k`` active coordinates with the lowest removal score leave their
    slots to the ``k`` inactive ones with the largest ``|grad|``, which start at ``mean = 0`` and ``rho`` = the mean
    ``rho`` of the coordinates that stay.

    Args:
        layout: The layer's active coordinates.
        mean, rho: Their variational parameters ``(nnz,)``, edited in place.
        grad: Dense gradient ``out x in`` of the objective with respect to the weights.
        k: Coordinates to exchange (``1 <= k <= nnz``).

    Returns:
        The slots that changed coordinate ``(k,)`` and the new layout.
    """
    drop = torch.topk(score(mean, F.softplus(rho), criterion, lam=lam), k, largest=False).indices
    kept = torch.ones(layout.nnz, dtype=torch.bool, device=mean.device)
    kept[drop] = False
    candidates = grad.abs().reshape(-1).clone()
    candidates[layout.index[kept]] = -math.inf
    index = layout.index.clone()
    index[drop] = torch.topk(candidates, k).indices
    rho[drop] = rho[kept].mean() if bool(kept.any()) else rho.mean()
    mean[drop] = 0.0
    return drop, SparseLayout(index, layout.shape)


def _dense_weight_gradients(model: BNN, subspace: Subspace, w_mean, d_mean, split_dense, batch, num_lik):
    """``d log-lik / d W`` of every weight matrix, dense ``out x in``, at the mean weights on ``batch``."""
    x, y = batch
    bias_mean = split_dense(d_mean.detach())
    inputs, pre_activations = [], []
    with torch.enable_grad():
        h = x
        for layer, layout in enumerate(subspace.layouts):
            z = (sparse_linear(w_mean[layer].detach(), h, layout) + bias_mean[f"layers.{layer}.bias"]
                 ).requires_grad_(True)
            inputs.append(h)
            pre_activations.append(z)
            h = model.activation(z) if layer < model.num_layers - 1 else z
        phi = (model.likelihood.spec.unflatten(d_mean.detach()[d_mean.shape[0] - num_lik:].unsqueeze(0))
               if num_lik else {})
        ll = model.likelihood.log_prob(h.unsqueeze(0), y, phi).sum()
        grads = torch.autograd.grad(ll, pre_activations)
    return [g.T @ h_in for g, h_in in zip(grads, inputs)]
