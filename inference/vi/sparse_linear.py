"""Linear layers whose weight matrix has a fixed number of active entries, stored and multiplied sparsely (CSR).

A :class:`SparseLayout` holds the positions of the ``nnz`` active entries of an ``out x in`` matrix in *slots*
(slot ``k`` is the flat position ``index[k] = row * in + col``); values live per slot, so an optimiser's state
stays attached to its coordinate while SSVI swaps coordinates in and out of slots. Products go through CSR
matrices built from the slots' values (cost ``~ nnz x batch`` instead of ``out x in x batch``, memory ``~ nnz``):

- :func:`sparse_linear` ``x (B, in) -> x W^T (B, out)`` with gradients for the values (a sampled dense-dense
  product at the active entries) and for ``x`` (a product with the transposed CSR matrix);
- :func:`sparse_linear_per_draw` ``h (S, n, in) -> (S, n, out)`` with one weight matrix per draw, as one product
  with a block-diagonal CSR matrix (prediction).

Above a density of ``DENSE_ABOVE`` a CSR product is slower on CPU than a dense one (``benchmarks/vi.py``: 0.88x at
density 0.5, 1.3x faster at 0.2), so there both multiply a dense copy of the weights formed for the product (the
stored values stay packed).
"""

from __future__ import annotations

import torch
from torch import Tensor


#: Density above which products go through a dense copy of the weights.
DENSE_ABOVE = 0.3


class SparseLayout:
    """Active entries of an ``out x in`` matrix: ``index`` ``(nnz,)`` flat positions, one per slot (distinct).

    Attributes:
        order: Slots in row-major (CSR) order.
        crow, col: CSR structure of the matrix; ``crow_t``, ``col_t``, ``order_t``: of its transpose.
    """

    def __init__(self, index: Tensor, shape: tuple[int, int]):
        self.index = index.to(torch.long)
        self.shape = (int(shape[0]), int(shape[1]))
        out, inn = self.shape
        rows, cols = self.index // inn, self.index % inn
        self.order = torch.argsort(self.index)
        self.crow = _crow(rows[self.order], out)
        self.col = cols[self.order]
        self.order_t = torch.argsort(cols * out + rows)
        self.crow_t = _crow(cols[self.order_t], inn)
        self.col_t = rows[self.order_t]

    @property
    def nnz(self) -> int:
        return self.index.shape[0]

    @property
    def multiplies_dense(self) -> bool:
        return self.nnz > DENSE_ABOVE * self.shape[0] * self.shape[1]

    def csr(self, values: Tensor) -> Tensor:
        """The matrix with slot values ``values`` ``(nnz,)`` as a CSR tensor ``out x in``."""
        return _csr(self.crow, self.col, values[self.order], self.shape)

    def csr_t(self, values: Tensor) -> Tensor:
        """Its transpose, ``in x out``."""
        return _csr(self.crow_t, self.col_t, values[self.order_t], self.shape[::-1])

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


def sparse_linear_per_draw(values: Tensor, h: Tensor, layout: SparseLayout) -> Tensor:
    """``h_s W_s^T`` for ``S`` weight draws ``values`` ``(S, nnz)`` and inputs ``h`` ``(S, n, in)`` (or ``(n, in)``
    shared by the draws): ``(S, n, out)``, as one product with a block-diagonal (or stacked) CSR matrix."""
    if layout.multiplies_dense:
        return h @ layout.dense(values).transpose(-1, -2)
    num_draws = values.shape[0]
    out, inn = layout.shape
    nnz = layout.nnz
    offsets = torch.arange(num_draws, device=values.device) * nnz
    crow = torch.cat([layout.crow.new_zeros(1), (layout.crow[1:].unsqueeze(0) + offsets.unsqueeze(1)).reshape(-1)])
    vals = values[:, layout.order].reshape(-1)
    if h.dim() == 2:  # the same input for every draw: stack the draws' matrices, (S * out) x in
        matrix = _csr(crow, layout.col.repeat(num_draws), vals, (num_draws * out, inn))
        return (matrix @ h.T).reshape(num_draws, out, h.shape[0]).transpose(1, 2)
    col = (layout.col.unsqueeze(0) + (torch.arange(num_draws, device=values.device) * inn).unsqueeze(1)).reshape(-1)
    matrix = _csr(crow, col, vals, (num_draws * out, num_draws * inn))
    stacked = h.transpose(1, 2).reshape(num_draws * inn, h.shape[1])
    return (matrix @ stacked).reshape(num_draws, out, h.shape[1]).transpose(1, 2)
