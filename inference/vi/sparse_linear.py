"""Linear layers whose weight matrix has a fixed number of active entries, stored and multiplied sparsely (CSR).

A :class:`SparseLayout` holds the positions of the ``nnz`` active entries of an ``out x in`` matrix in *slots*
(slot ``k`` is the flat position ``index[k] = row * in + col``); values live per slot, so an optimiser's state
stays attached to its coordinate while SSVI swaps coordinates in and out of slots. Products go through CSR
matrices built from the slots' values (cost ``~ nnz x batch`` instead of ``out x in x batch``, memory ``~ nnz``):

- :func:`sparse_linear` ``x (B, in) -> x W^T (B, out)`` with gradients for the values (a sampled dense-dense
  product at the active entries) and for ``x`` (a product with the transposed CSR matrix);
- :func:`sparse_linear_per_draw` ``h (S, in, n) -> (S, out, n)`` (feature-major) with one weight matrix and bias
  per draw, as one product with a block-diagonal CSR matrix (prediction).

Above a density of ``DENSE_ABOVE`` a CSR product is slower on CPU than a dense one (``benchmarks/vi.py``: 0.88x at
density 0.5, 1.3x faster at 0.2), so there both multiply a dense copy of the weights formed for the product (the
stored values stay packed).
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor


#: Density above which products go through a dense copy of the weights.
DENSE_ABOVE = 0.3


class SparseLayout:
    """Active entries of an ``out x in`` matrix: ``index`` ``(nnz,)`` flat positions, one per slot (distinct).

    Attributes:
        order: Slots in row-major (CSR) order.
        crow, col: CSR structure of the matrix; ``transpose``: ``(crow, col, order)`` of its transpose (formed on
            first use: prediction does not need it).
    """

    def __init__(self, index: Tensor, shape: tuple[int, int]):
        self.index = index.to(torch.long)
        self.shape = (int(shape[0]), int(shape[1]))
        out, inn = self.shape
        self.order = torch.argsort(self.index)
        self._sorted = bool((self.index[1:] > self.index[:-1]).all())
        self.crow = _crow(self.index[self.order] // inn, out)
        self.col = self.index[self.order] % inn

    @cached_property
    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        out, inn = self.shape
        rows, cols = self.index // inn, self.index % inn
        order = torch.argsort(cols * out + rows)
        return _crow(cols[order], inn), rows[order], order

    @property
    def nnz(self) -> int:
        return self.index.shape[0]

    @property
    def multiplies_dense(self) -> bool:
        return self.nnz > DENSE_ABOVE * self.shape[0] * self.shape[1]

    def in_csr_order(self, values: Tensor) -> Tensor:
        """Slot values ``(..., nnz)`` in CSR order (the same tensor when the slots already are)."""
        return values if self._sorted else values[..., self.order]

    def csr(self, values: Tensor) -> Tensor:
        """The matrix with slot values ``values`` ``(nnz,)`` as a CSR tensor ``out x in``."""
        return _csr(self.crow, self.col, self.in_csr_order(values), self.shape)

    def csr_t(self, values: Tensor) -> Tensor:
        """Its transpose, ``in x out``."""
        crow, col, order = self.transpose
        return _csr(crow, col, values[order], self.shape[::-1])

    def dense(self, values: Tensor) -> Tensor:
        """The dense ``out x in`` matrix (zeros outside the active entries); ``values`` may have leading dims."""
        batch = values.shape[:-1]
        out = values.new_zeros((*batch, self.shape[0] * self.shape[1]))
        return out.index_copy(-1, self.index, values).reshape(*batch, *self.shape)


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape) -> Tensor:
    # the layouts are valid by construction: no invariant checks
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _crow(sorted_rows: Tensor, num_rows: int) -> Tensor:
    counts = torch.bincount(sorted_rows, minlength=num_rows)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, layout: SparseLayout) -> Tensor:
        ctx.save_for_backward(values, x)
        ctx.layout = layout
        return (layout.csr(values) @ x.T).T

    @staticmethod
    def backward(ctx, grad: Tensor):
        values, x = ctx.saved_tensors
        layout = ctx.layout
        grad_values = grad_x = None
        if ctx.needs_input_grad[0]:
            # d/dW_rc = sum_b grad[b, r] x[b, c], needed at the active entries only
            pattern = _csr(layout.crow, layout.col, values.new_zeros(layout.nnz), layout.shape)
            in_csr_order = torch.sparse.sampled_addmm(pattern, grad.T.contiguous(), x.contiguous(), beta=0.0).values()
            grad_values = torch.empty_like(in_csr_order).index_put((layout.order,), in_csr_order)
        if ctx.needs_input_grad[1]:
            grad_x = (layout.csr_t(values) @ grad.T).T
        return grad_values, grad_x, None


def sparse_linear(values: Tensor, x: Tensor, layout: SparseLayout) -> Tensor:
    """``x W^T`` for the sparse ``W`` with slot values ``values`` ``(nnz,)``: ``x`` ``(..., in)`` -> ``(..., out)``."""
    if layout.multiplies_dense:
        return x @ layout.dense(values).T
    flat = x.reshape(-1, x.shape[-1])
    return _SparseLinear.apply(values, flat, layout).reshape(*x.shape[:-1], layout.shape[0])


def sparse_linear_per_draw(values: Tensor, h: Tensor, layout: SparseLayout, bias: Tensor) -> Tensor:
    """``W_s h_s + b_s`` for ``S`` weight draws ``values`` ``(S, nnz)`` and bias draws ``bias`` ``(S, out)``, on inputs
    stored feature-major, ``h`` ``(S, in, n)`` (or ``(in, n)`` shared by the draws): ``(S, out, n)``.

    One product with a block-diagonal (or, for a shared input, stacked) CSR matrix, written into a copy of the bias.
    Feature-major activations are the CSR product's own operand and result layout, so a network's layers chain
    without transposed copies, and its activation functions run on contiguous memory.
    """
    num_draws = values.shape[0]
    out, inn = layout.shape
    n = h.shape[-1]
    if layout.multiplies_dense:
        return torch.baddbmm(bias.unsqueeze(-1), layout.dense(values), h.expand(num_draws, inn, n))
    offsets = torch.arange(num_draws, device=values.device) * layout.nnz
    crow = torch.cat([layout.crow.new_zeros(1), (layout.crow[1:].unsqueeze(0) + offsets.unsqueeze(1)).reshape(-1)])
    vals = layout.in_csr_order(values).reshape(-1)
    if h.dim() == 2:  # the draws' matrices stacked, (S * out) x in
        matrix = _csr(crow, layout.col.repeat(num_draws), vals, (num_draws * out, inn))
    else:
        col = (layout.col.unsqueeze(0) + (torch.arange(num_draws, device=values.device) * inn).unsqueeze(1))
        matrix = _csr(crow, col.reshape(-1), vals, (num_draws * out, num_draws * inn))
    start = bias.reshape(-1, 1).expand(num_draws * out, n)
    return torch.addmm(start, matrix, h.reshape(-1, n)).reshape(num_draws, out, n)
