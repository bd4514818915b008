"""The Gaussian posterior of SSVI: a ``GaussianPosterior`` whose weight matrices are mostly exactly zero, with a
predictive that multiplies only the active weights (block-diagonal CSR products over the draws)."""

from __future__ import annotations

import torch

from inference.gaussian_posterior import GaussianPosterior
from inference.vi.sparse_linear import SparseLayout, sparse_linear_per_draw
from probnets.bnn import BNN
from probnets.model import ProbModel
from probnets.predictive import Predictive
from probnets.validation import as_tensor, check_positive_int


#: Default size of one draw chunk's hidden activations: at a few MB (about a core's L2 cache) the bias copies,
#: products and activation functions of a chunk do not stream through main memory (32 draws of ``benchmarks/vi.py``'s
#: 64-1024-1024-10 net on 360 inputs at density 0.1, load ~3: 0.30 s in one chunk, 0.19 s in chunks of 2 draws).
CHUNK_BYTES = 4 * 2**20


class SparseGaussianPosterior(GaussianPosterior):
    """A one-component ``GaussianPosterior`` with a ``mask`` of active coordinates (mean and scale 0 elsewhere).

    ``predictive`` with the ``BNN`` it was fitted to evaluates the draws through sparse products (time and
    memory ``~`` active weights); with any other model it falls back to dense draws.
    """

    def predictive(self, model: ProbModel, x, *, num_samples: int | None = None,
                   generator: torch.Generator | None = None, chunk_size: int | None = None) -> Predictive:
        if not isinstance(model, BNN) or self.mask is None or model.spec != self.spec:
            return super().predictive(model, x, num_samples=num_samples, generator=generator, chunk_size=chunk_size)
        num_samples = 200 if num_samples is None else check_positive_int(num_samples, "num_samples")
        x = as_tensor(x, "x")
        if x.dim() != 2 or x.shape[1] != model.in_features:
            raise ValueError(f"x must have shape (n, {model.in_features}), got {tuple(x.shape)}")
        mean, scale, mask = self.mean[0], self.scale[0], self.mask[0]
        x = x.to(dtype=mean.dtype, device=mean.device)
        if chunk_size is None:
            width = max(model.widths, default=model.num_latent) * x.shape[0] * x.element_size()
            chunk = max(1, min(num_samples, CHUNK_BYTES // width))
        else:
            chunk = check_positive_int(chunk_size, "chunk_size")
        parts = []
        for layer in range(model.num_layers):
            w = model.spec.slice(f"layers.{layer}.weight")
            b = model.spec.slice(f"layers.{layer}.bias")
            index = mask[w].nonzero().squeeze(-1)
            shape = model.spec.shapes[model.spec.names.index(f"layers.{layer}.weight")]
            parts.append((SparseLayout(index, shape), mean[w][index], scale[w][index], mean[b], scale[b]))
        k = model.likelihood.spec.dim
        f_chunks, phi_chunks = [], []
        for start in range(0, num_samples, chunk):
            size = min(chunk, num_samples - start)
            h = x.T.contiguous()  # feature-major activations, (in, n) then (S, width, n)
            for layer, (layout, w_mean, w_scale, b_mean, b_scale) in enumerate(parts):
                weights = w_mean + w_scale * self._noise((size, layout.nnz), generator)
                bias = b_mean + b_scale * self._noise((size, b_mean.shape[0]), generator)
                h = sparse_linear_per_draw(weights, h, layout, bias)
                if layer < model.num_layers - 1:  # on the (S, n, width) view, as the model applies it
                    h = model.activation(h.transpose(1, 2)).transpose(1, 2)
            f_chunks.append(h.transpose(1, 2))
            if k:
                phi_chunks.append(mean[-k:] + scale[-k:] * self._noise((size, k), generator))
        phi = model.likelihood.spec.unflatten(torch.cat(phi_chunks)) if k else {}
        return Predictive(torch.cat(f_chunks), model.likelihood, phi)

    def _noise(self, shape, generator):
        return torch.randn(shape, generator=generator, dtype=self.mean.dtype).to(self.mean.device)
