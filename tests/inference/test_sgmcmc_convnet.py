"""Conv nets end to end: a small conv net from ``from_module`` sampled by SGHMC and structured SGHMC on a digits
subset (scikit-learn's 8 x 8 ``load_digits``) through a ``torch.utils.data.DataLoader``, predicting well above
chance (10%) on held-out digits. Sizes are small: 600 training and 300 test images, 4 chains, batches of 50."""

import pyro.distributions as dist
import pytest
import torch
from torch import nn

import inference
from probnets import Categorical, from_module


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:600], order[600:900]
    return (x[train], y[train]), (x[test], y[test])


def conv_net():
    torch.manual_seed(0)  # the module's initial (unused) weights; theta starts from model.init_theta
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10))


@pytest.mark.parametrize("method, options", [("sghmc", {}), ("structured-sghmc", {"groups": "layer"})])
def test_conv_net_samples_from_a_dataloader_and_predicts_above_chance(digits, method, options):
    (x, y), (x_test, y_test) = digits
    model = from_module(conv_net(), dist.Normal(0.0, 1.0), likelihood=Categorical(10))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=50, shuffle=True,
                                         generator=torch.Generator())
    post = inference.sample(model, loader, method=method, num_chains=4, num_warmup=240, epochs=10, thin=10,
                            seed=0, progress=False, check_convergence=False, **options)
    assert post.samples.shape == (4, 12, model.spec.dim) and post.num_divergences == 0
    if method == "structured-sghmc":
        assert post.info["num_groups"] == 2  # the conv layer and the linear head
    accuracy = (post.predictive(model, x_test).probs.argmax(-1) == y_test).double().mean()
    assert accuracy > 0.6, float(accuracy)
