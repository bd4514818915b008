"""The engine's one optimisation loop: Adam, AdamW (optionally with a warm-up + cosine schedule) and L-BFGS.

Every gradient-based fit of the package runs through :func:`minimize`: empirical Bayes of the scale mixtures,
SVSP and DKM training (through :func:`inference.fit`), the BO MAP pre-training and the amortized
meta-training. It gives all of them the same

- progress bar (:class:`~inference.progress.ProgressBar`) with the live loss;
- non-finite handling: a step whose loss or gradient is not finite is counted and skipped (Adam, AdamW), and
  a non-finite evaluation inside an L-BFGS line search ends the run with a ``RuntimeWarning`` at the best
  parameters evaluated, so a NaN never reaches the parameters;
- optional gradient-norm clipping (Adam, AdamW);
- atomic checkpoints (:mod:`inference.checkpoint`) of the parameters, optimiser, schedule, generator, torch's
  global generator and step, from which a run resumes bit for bit.

Example:
    >>> theta = torch.zeros(3, requires_grad=True)
    >>> result = minimize(lambda: (theta - 1).square().sum(), [theta], method="lbfgs", num_steps=20)
    >>> theta                                  # ~ [1, 1, 1]; result.losses: the loss at every evaluation
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from inference import checkpoint as checkpoint_io
from inference.progress import ProgressBar
from probnets.validation import check_positive_float, check_positive_int

__all__ = ["METHODS", "OptimResult", "minimize", "supplied_gradient", "warmup_cosine"]

METHODS = ("adam", "adamw", "lbfgs")
_DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "lbfgs": 1.0}


class OptimResult(NamedTuple):
    """Attributes:
        losses: ``float64``; Adam/AdamW: the loss of every step, ``num_steps`` (NaN where a step was skipped);
            L-BFGS: the loss of every evaluation (one or more per iteration, line search included).
        num_steps: Steps (Adam, AdamW) or iterations (L-BFGS) of the whole run.
        resumed_from: Step the run resumed at (0 for a fresh run).
        skipped_steps: Steps whose loss or gradient was not finite (no update was made); for L-BFGS, 1 when a
            non-finite evaluation ended the run.
    """

    losses: Tensor
    num_steps: int
    resumed_from: int
    skipped_steps: int


def warmup_cosine(step: int, num_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear from ``1 / warmup_steps`` to 1 over the warm-up, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, num_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


class _SuppliedGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value: Tensor, param: Tensor, grad: Tensor) -> Tensor:
        ctx.save_for_backward(grad)
        return value.detach().clone()

    @staticmethod
    def backward(ctx, upstream: Tensor):
        (grad,) = ctx.saved_tensors
        return None, upstream * grad, None


def supplied_gradient(value: Tensor, param: Tensor, grad: Tensor) -> Tensor:
    """The scalar ``value`` as a loss whose gradient with respect to ``param`` is ``grad`` (same shape as
    ``param``): for objectives whose gradient comes from an analytic or fused kernel rather than autograd."""
    if grad.shape != param.shape:
        raise ValueError(f"grad must have the shape of param {tuple(param.shape)}, got {tuple(grad.shape)}")
    return _SuppliedGradient.apply(value, param, grad)


class _NonFinite(Exception):
    """A non-finite loss inside an L-BFGS evaluation."""


def minimize(loss_fn: Callable[[], Tensor], params: Sequence[Tensor], *, method: str = "adam", num_steps: int,
             lr: float | None = None, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0,
             warmup_fraction: float | None = None, grad_clip: float | None = None, keep_best: bool = False,
             stop_on: tuple[type[Exception], ...] = (), history_size: int = 100, tolerance_grad: float = 1e-7,
             tolerance_change: float = 1e-9, generator: torch.Generator | None = None,
             state: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None,
             checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100, progress: bool = False,
             description: str = "optimising", callback: Callable[[int, float], None] | None = None,
             step_hook: Callable[[int, torch.optim.Optimizer], None] | None = None) -> OptimResult:
    """Minimise ``loss_fn()`` over ``params`` in place.

    Args:
        loss_fn: Returns the scalar loss at the current parameters (differentiable in them); called once per
            step (Adam, AdamW) or once per evaluation (L-BFGS). Stochastic losses draw from ``generator``.
        params: Tensors with ``requires_grad``, updated in place.
        method: ``"adam"``, ``"adamw"`` or ``"lbfgs"`` (strong Wolfe line search).
        num_steps: Steps (Adam, AdamW) or iterations (L-BFGS, which stops earlier once converged); 0 does nothing.
        lr: Learning rate (peak rate under a schedule); default 1e-3 for Adam/AdamW, 1 for L-BFGS.
        betas: Adam's moment decay rates.
        weight_decay: AdamW's decoupled weight decay (AdamW only).
        warmup_fraction: Adam/AdamW: ``None`` keeps ``lr`` constant; a number in ``[0, 1)`` is the fraction of
            the steps with a linear warm-up, followed by cosine decay to 0 (:func:`warmup_cosine`).
        grad_clip: Largest gradient norm (Adam/AdamW; ``None``: no clipping).
        keep_best: End at the parameters with the lowest loss evaluated (deterministic losses).
        stop_on: Exception types of ``loss_fn`` (e.g. a failed Cholesky factorisation) that end the run with a
            ``RuntimeWarning`` at the parameters with the lowest loss evaluated.
        history_size, tolerance_grad, tolerance_change: L-BFGS settings (see ``torch.optim.LBFGS``).
        generator: The generator ``loss_fn`` draws from; its state is checkpointed.
        state: Further objects with ``state_dict``/``load_state_dict`` to checkpoint, by name (e.g. the module
            with its buffers, an ``inference.minibatch.Minibatches``).
        settings: Settings of the caller that a resumed run must share (checked on resume).
        checkpoint: Path of a checkpoint file, written every ``checkpoint_every`` steps and at the end; if it
            exists, the run resumes from it and ends bit for bit where an uninterrupted run would. L-BFGS runs
            in segments of ``checkpoint_every`` iterations then (one ``LBFGS.step`` each, its curvature history
            carried over), without a checkpoint in one segment.
        checkpoint_every: Steps (iterations) between checkpoints.
        progress: Show a progress bar with the live loss.
        description: The progress bar's text.
        callback: Called as ``callback(step, loss)`` after every step (Adam, AdamW) or evaluation (L-BFGS).
        step_hook: Adam/AdamW: called as ``step_hook(step, optimizer)`` after every step, before its checkpoint, to
            edit the parameters and the optimiser's state in place (SSVI's subspace updates).

    Returns:
        :class:`OptimResult`.

    Raises:
        ValueError: On an unknown ``method``, an option that ``method`` does not take, or invalid values.
        TypeError: When ``params`` are not tensors that require gradients.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    params = list(params)
    if not params:
        raise ValueError("params must hold at least one tensor")
    if not all(isinstance(p, Tensor) and p.requires_grad for p in params):
        raise TypeError("params must be tensors with requires_grad=True")
    num_steps = check_positive_int(num_steps, "num_steps", minimum=0)
    lr = _DEFAULT_LR[method] if lr is None else check_positive_float(lr, "lr")
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    if method == "lbfgs":
        for name, value, unused in (("weight_decay", weight_decay, 0.0), ("warmup_fraction", warmup_fraction, None),
                                    ("grad_clip", grad_clip, None)):
            if value != unused:
                raise ValueError(f"{name} is an Adam/AdamW option; method='lbfgs' does not take it")
        history_size = check_positive_int(history_size, "history_size")
    else:
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        if weight_decay and method != "adamw":
            raise ValueError(f"weight_decay is decoupled weight decay, an option of method='adamw', not {method!r}")
        if warmup_fraction is not None and (isinstance(warmup_fraction, bool)
                                            or not isinstance(warmup_fraction, (int, float))
                                            or not 0 <= warmup_fraction < 1):
            raise ValueError(f"warmup_fraction must be None or a number in [0, 1), got {warmup_fraction!r}")
        if grad_clip is not None:
            grad_clip = check_positive_float(grad_clip, "grad_clip")
    state = dict(state or {})
    for name, obj in state.items():
        if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
            raise TypeError(f"state[{name!r}] must have state_dict and load_state_dict, got {type(obj).__name__}")
    settings = {**(settings or {}), "method": method, "num_steps": num_steps, "lr": lr}
    if method == "lbfgs" and checkpoint is not None:
        settings["checkpoint_every"] = checkpoint_every

    if step_hook is not None and method == "lbfgs":
        raise ValueError("step_hook is an Adam/AdamW option; method='lbfgs' does not take it")
    loop = _Loop(loss_fn, params, method, num_steps, lr, keep_best or bool(stop_on) or method == "lbfgs",
                 generator, state, settings, checkpoint, checkpoint_every, callback)
    loop.step_hook = step_hook
    if method == "lbfgs":
        loop.optimizer = torch.optim.LBFGS(params, lr=lr, max_iter=num_steps, history_size=history_size,
                                           tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                                           line_search_fn="strong_wolfe")
    else:
        optimizer_class = torch.optim.AdamW if method == "adamw" else torch.optim.Adam
        loop.optimizer = optimizer_class(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
        if warmup_fraction is not None:
            warmup_steps = max(1, round(warmup_fraction * num_steps)) if warmup_fraction > 0 else 0
            loop.scheduler = torch.optim.lr_scheduler.LambdaLR(
                loop.optimizer, lambda s: warmup_cosine(s, num_steps, warmup_steps))
    loop.resume()
    with ProgressBar(num_steps, initial=loop.step, description=description, enabled=progress) as bar:
        try:
            if method == "lbfgs":
                loop.run_lbfgs(bar)
            else:
                loop.run_adam(bar, grad_clip)
        except stop_on as exc:
            loop.stop_early(exc)
    if keep_best or loop.stopped:
        loop.restore_best()
    if loop.skipped and method != "lbfgs":
        warnings.warn(f"{loop.skipped} of {num_steps} steps were skipped: their loss or gradient was not finite",
                      RuntimeWarning, stacklevel=2)
    return OptimResult(torch.tensor(loop.losses, dtype=torch.float64) if method == "lbfgs" else loop.step_losses,
                       num_steps, loop.resumed_from, loop.skipped)


class _Loop:
    """The state of one :func:`minimize` run: steps, losses, best parameters, and its checkpoints."""

    def __init__(self, loss_fn, params, method, num_steps, lr, track_best, generator, state, settings, checkpoint,
                 checkpoint_every, callback):
        self.loss_fn, self.params, self.method, self.num_steps = loss_fn, params, method, num_steps
        self.lr, self.track_best, self.generator, self.state = lr, track_best, generator, state
        self.settings, self.checkpoint, self.checkpoint_every, self.callback = (settings, checkpoint,
                                                                                 checkpoint_every, callback)
        self.optimizer = None
        self.scheduler = None
        self.step_hook = None
        self.step = self.resumed_from = self.skipped = 0
        self.stopped = False
        self.losses: list[float] = []  # L-BFGS: every evaluation
        self.step_losses = torch.full((num_steps,), math.nan, dtype=torch.float64)  # Adam: every step
        self.best_loss = math.inf
        self.best_params = [p.detach().clone() for p in params] if track_best else None

    def record(self, value: float) -> None:
        if self.track_best and value < self.best_loss:
            self.best_loss, self.best_params = value, [p.detach().clone() for p in self.params]

    def run_adam(self, bar: ProgressBar, grad_clip: float | None) -> None:
        running = None
        for step in range(self.step, self.num_steps):
            loss = self.loss_fn()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.params, grad_clip if grad_clip is not None else math.inf)
            value = loss.item()
            if math.isfinite(value) and bool(torch.isfinite(norm)):
                self.record(value)
                self.optimizer.step()
                self.step_losses[step] = value
                running = value if running is None else 0.98 * running + 0.02 * value
            else:
                self.skipped += 1
            if self.scheduler is not None:
                self.scheduler.step()
            self.step = step + 1
            if self.callback is not None:
                self.callback(step, value)
            if self.step_hook is not None:
                self.step_hook(step, self.optimizer)
            stats = {"loss": running} if running is not None else {}
            if self.scheduler is not None:
                stats["lr"] = f"{self.scheduler.get_last_lr()[0]:.2e}"
            bar.update(1, **stats, skipped=self.skipped)
            if self.step % self.checkpoint_every == 0 and self.step < self.num_steps:
                self.save()
        self.save()

    def run_lbfgs(self, bar: ProgressBar) -> None:
        optimizer = self.optimizer
        lbfgs_state = optimizer.state[optimizer.param_groups[0]["params"][0]]
        shown = self.step

        def closure() -> Tensor:
            nonlocal shown
            optimizer.zero_grad()
            loss = self.loss_fn()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise _NonFinite(f"the loss is {value}")
            self.record(value)
            self.losses.append(value)
            loss.backward()
            if self.callback is not None:
                self.callback(lbfgs_state["n_iter"], value)
            bar.update(lbfgs_state["n_iter"] - shown, loss=value)
            shown = lbfgs_state["n_iter"]
            return loss

        segment = self.num_steps if self.checkpoint is None else self.checkpoint_every
        while self.step < self.num_steps:
            iterations = min(segment, self.num_steps - self.step)
            max_eval = iterations * 5 // 4
            optimizer.param_groups[0].update(max_iter=iterations, max_eval=max_eval)
            evals_before = lbfgs_state.get("func_evals", 0)
            try:
                optimizer.step(closure)
            except _NonFinite as exc:
                self.skipped += 1
                self.stop_early(exc)
                return
            done = lbfgs_state["n_iter"] - self.step
            # A call that ends before its iterations are used up has converged, unless (between checkpoints) it
            # used up its segment's evaluations: the next segment goes on then.
            out_of_evals = self.checkpoint is not None and lbfgs_state["func_evals"] - evals_before >= max_eval
            converged = done == 0 or (done < iterations and not out_of_evals)
            self.step = self.num_steps if converged else self.step + done
            self.save()

    def stop_early(self, exc: Exception) -> None:
        self.stopped = True
        warnings.warn(f"{self.method} stopped early ({exc}); keeping the best parameters found "
                      f"(loss {self.best_loss:.6g})", RuntimeWarning, stacklevel=4)

    def restore_best(self) -> None:
        with torch.no_grad():
            for p, value in zip(self.params, self.best_params):
                p.copy_(value)

    def save(self) -> None:
        if self.checkpoint is None:
            return
        payload = {"settings": self.settings, "params": [p.detach() for p in self.params],
                   "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "step": self.step,
                   "skipped_steps": self.skipped, "losses": torch.tensor(self.losses, dtype=torch.float64),
                   "step_losses": self.step_losses, "best_loss": self.best_loss, "best_params": self.best_params,
                   "state": {name: obj.state_dict() for name, obj in self.state.items()}}
        if self.scheduler is not None:
            payload["scheduler"] = self.scheduler.state_dict()
        if self.generator is not None:
            payload["generator"] = self.generator.get_state()
        checkpoint_io.save(self.checkpoint, payload)

    def resume(self) -> None:
        if self.checkpoint is None or not os.path.exists(self.checkpoint):
            return
        saved = checkpoint_io.load(self.checkpoint)
        if saved["settings"] != self.settings:
            raise ValueError(f"checkpoint {os.fspath(self.checkpoint)!r} was written with settings "
                             f"{saved['settings']}, not {self.settings}")
        with torch.no_grad():
            for p, value in zip(self.params, saved["params"]):
                p.copy_(value)
        for name, obj in self.state.items():
            obj.load_state_dict(saved["state"][name])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        if self.generator is not None:
            self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        self.step = self.resumed_from = int(saved["step"])
        self.skipped = int(saved["skipped_steps"])
        self.losses = saved["losses"].tolist()
        self.step_losses = saved["step_losses"].clone()
        self.best_loss, self.best_params = float(saved["best_loss"]), saved["best_params"]
