"""``inference.fit`` on conditioned models: settings it refuses, and a minibatch fit resumed from a checkpoint
mid-epoch that ends bit for bit where an uninterrupted fit does."""

from __future__ import annotations

import pytest
import torch

import inference
from probnets.kernels.nngp import NNGPKernel
from probnets.neural_process import CNP
from probnets.scale_mixture import SVSP, GaussianProcess

DT = torch.float64


def _classification():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 2, generator=g, dtype=DT)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def _svsp():
    x, _ = _classification()
    return SVSP(x[:4], 3, NNGPKernel(depth=2, weight_var=2.0, bias_var=1.0))


def test_settings_the_model_does_not_take_are_refused():
    x, y = torch.randn(10, 2, dtype=DT), torch.randn(10, dtype=DT)
    with pytest.raises(ValueError, match="num_epochs"):
        inference.fit(GaussianProcess(), (x, y), num_epochs=2)
    with pytest.raises(ValueError, match="optimizer"):
        inference.fit(GaussianProcess(), (x, y), optimizer="adamw")
    with pytest.raises(ValueError, match="num_steps"):
        inference.fit(_svsp(), _classification(), num_steps=2)
    with pytest.raises(ValueError, match="conditioning alone"):
        inference.fit(CNP(2, width=8), (x, y), num_steps=2)
    with pytest.raises(TypeError, match="model"):
        inference.fit(torch.nn.Linear(2, 1), (x, y))


def test_minibatch_fit_resumes_bit_identically(tmp_path):
    x, y = _classification()
    options = dict(num_epochs=3, batch_size=8, num_samples=4, checkpoint_every=5)  # 4 batches per epoch
    straight = inference.fit(_svsp(), (x, y), generator=torch.Generator().manual_seed(1), **options)

    class Interrupt(Exception):
        pass

    def stop(step, loss):
        if step == 6:  # mid-epoch, after the checkpoint at step 5
            raise Interrupt

    path = tmp_path / "fit.pt"
    with pytest.raises(Interrupt):
        inference.fit(_svsp(), (x, y), generator=torch.Generator().manual_seed(1), checkpoint=path, callback=stop,
                      **options)
    resumed = inference.fit(_svsp(), (x, y), generator=torch.Generator().manual_seed(1), checkpoint=path, **options)
    assert resumed.fit_result.resumed_from == 5
    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))
    assert torch.equal(straight.fit_result.losses, resumed.fit_result.losses)
    assert straight.fit_result.epoch_losses == resumed.fit_result.epoch_losses
