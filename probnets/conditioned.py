"""The one contract of conditioned models: scale mixtures, deep kernel machines, neural processes and PFNs.

A conditioned model is fitted to data ``(x, y)`` and then predicts at new inputs: ``predict(x) -> Predictive``.
The model states *what* fitting means (:meth:`ConditionedModel.condition` stores the data; ``fit_settings``,
:meth:`~ConditionedModel.fit_parameters` and :meth:`~ConditionedModel.fit_loss` say what to optimise and how
by default); the engine runs the optimisation (``probnets`` never imports the engine):

    >>> import inference
    >>> model = inference.fit(StudentTProcess(), (x_train, y_train))       # condition + empirical Bayes
    >>> pred = model.predict(x_test)                                      # a probnets.Predictive
    >>> pred.mean, pred.interval(0.9)

Amortized models (:class:`ContextConditioned`: neural processes, PFNs) have nothing to optimise at fit time:
fitting stores the context, and ``predict(x)`` conditions on it; ``predict(context_x, context_y, x)`` still
takes an explicit context.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from probnets.predictive import Predictive
from probnets.validation import check_context_query

__all__ = ["ConditionedModel", "ContextConditioned", "FitSettings"]


@dataclass(frozen=True)
class FitSettings:
    """How the engine fits a model by default; ``inference.fit`` overrides any of them per call.

    Attributes:
        optimizer: ``"lbfgs"`` or ``"adam"``.
        num_steps: Steps (Adam) or iterations (L-BFGS) of a full-batch fit.
        lr: Default learning rate per optimizer name.
        num_epochs: Passes over the data of a minibatch fit (``batch_size`` set).
        batch_size: Minibatch size; ``None`` for full-batch fits (``fit_loss`` gets ``rows=None``).
        betas: Adam's moment decay rates.
        keep_best: End at the hyperparameters with the lowest loss evaluated (deterministic losses).
        stop_on: Exception types of ``fit_loss`` (e.g. a failed Cholesky factorisation) that end the fit with a
            warning at the best hyperparameters found.
        lbfgs: Further ``torch.optim.LBFGS`` settings (``history_size``, ``tolerance_grad``,
            ``tolerance_change``).
    """

    optimizer: str
    lr: Mapping[str, float]
    num_steps: int = 100
    num_epochs: int | None = None
    batch_size: int | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    keep_best: bool = False
    stop_on: tuple[type[Exception], ...] = ()
    lbfgs: Mapping[str, Any] = field(default_factory=dict)


class ConditionedModel(ABC):
    """A model fitted to ``(x, y)`` that predicts at new inputs.

    Subclasses implement :meth:`condition`, :attr:`is_conditioned` and :meth:`predict`; models with parameters
    to fit also set ``fit_settings`` and implement :meth:`fit_loss` (and :meth:`fit_parameters` when not every
    trainable parameter is fitted), which ``inference.fit`` minimises after conditioning.

    Example (a model's side of the contract; the engine's ``inference.fit`` runs the loop):
        >>> class MyGP(torch.nn.Module, ConditionedModel):
        ...     fit_settings = FitSettings("lbfgs", lr={"lbfgs": 1.0}, num_steps=50)
        ...     def condition(self, x, y): self.x, self.y = x, y; return self
        ...     is_conditioned = property(lambda self: hasattr(self, "x"))
        ...     def fit_loss(self, rows, *, generator=None): return -self.log_marginal_likelihood()
        ...     def predict(self, x, *, generator=None): return Predictive(...)   # f: S x t x m
    """

    #: Default fit of the model; ``None``: fitting is conditioning only.
    fit_settings: FitSettings | None = None
    #: Advice in the error of :meth:`check_fitted`.
    divergence_hint = "try fewer steps or a smaller lr"
    #: The engine's record of the last fit (``inference.fit.FitResult``: the loss of every step, ...).
    fit_result = None

    @abstractmethod
    def condition(self, x, y) -> ConditionedModel:
        """Validate and store the training data (no optimisation).

        Args:
            x: Training inputs, ``n x ...``.
            y: Training targets or labels, ``n`` or ``n x m``.

        Returns:
            ``self``.

        Raises:
            ValueError, TypeError: On bad data (NaN, wrong shape, empty), naming the argument.
        """

    @property
    @abstractmethod
    def is_conditioned(self) -> bool:
        """Whether the model holds training data (models whose predictive needs it raise a ``RuntimeError`` in
        ``predict`` before)."""

    def fit_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters that fitting optimises: by default every trainable parameter (``nn.Module`` models)."""
        return [p for p in self.parameters() if p.requires_grad]

    def fit_loss(self, rows: Tensor | None, *, generator: torch.Generator | None = None, **options) -> Tensor:
        """The scalar that fitting minimises on the stored data.

        Args:
            rows: Indices of a minibatch of the training data, or ``None`` for all of it.
            generator: Source of the loss's randomness (Monte Carlo draws).
            **options: Model-specific settings of the loss.
        """
        raise NotImplementedError(f"{type(self).__name__} has no loss to fit: fitting is conditioning only")

    def check_fitted(self) -> None:
        """Raise a ``RuntimeError`` when fitting left non-finite parameters (``nn.Module`` models)."""
        bad = [name for name, p in self.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise RuntimeError(f"fitting diverged: non-finite parameters {bad}; {self.divergence_hint}")

    def _require_conditioned(self) -> None:
        if not self.is_conditioned:
            raise RuntimeError(f"{type(self).__name__} has no data: call fit first, inference.fit(model, (x, y))")

    @abstractmethod
    def predict(self, x, *, generator: torch.Generator | None = None) -> Predictive:
        """The predictive at inputs ``x`` (``t x ...``): a :class:`~probnets.Predictive` over ``t`` points."""


class ContextConditioned(ConditionedModel):
    """An amortized model: conditioning stores a context that :meth:`predict` conditions on, no optimisation.

    Subclasses provide ``input_dim``, ``context_dtype`` and ``_predict(context_x, context_y, x, **options)``.
    """

    context_x: Tensor | None = None
    context_y: Tensor | None = None

    def condition(self, x, y) -> ContextConditioned:
        """Store the context: inputs ``n x d`` and outputs ``n`` or ``n x 1`` (``n`` may be 0)."""
        query = torch.zeros(1, self.input_dim, dtype=self.context_dtype)
        self.context_x, self.context_y, _ = check_context_query(x, y, query, self.input_dim, self.context_dtype)
        return self

    @property
    def is_conditioned(self) -> bool:
        return self.context_x is not None

    def predict(self, *args, **options) -> Predictive:
        """Predictive at ``x`` (``m x d``) given the stored context (``predict(x)``) or an explicit one
        (``predict(context_x, context_y, x)``); ``options`` as the model's ``_predict``."""
        if len(args) == 1:
            self._require_conditioned()
            return self._predict(self.context_x, self.context_y, args[0], **options)
        if len(args) == 3:
            return self._predict(*args, **options)
        raise TypeError(f"predict takes x (after conditioning) or context_x, context_y, x; got {len(args)} "
                        "positional arguments")

    @property
    @abstractmethod
    def input_dim(self) -> int:
        """Input dimension ``d``."""

    @property
    @abstractmethod
    def context_dtype(self) -> torch.dtype:
        """The dtype the model computes in."""

    @abstractmethod
    def _predict(self, context_x: Tensor, context_y: Tensor, x: Tensor, **options) -> Predictive:
        """Predictive at ``x`` given the context (validated by the implementation)."""
