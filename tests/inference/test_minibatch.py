"""Minibatch streams and the minibatch log density (``inference.minibatch``)."""

import pytest
import torch
from sampler_contract import conjugate_regression

import inference
from inference.minibatch import BatchStream, MinibatchLogDensity
from inference.testing import correlated_gaussian_2d


def _data(n=10):
    x = torch.arange(n, dtype=torch.float64).unsqueeze(-1)
    return x, x.squeeze(-1) * 2


def _rows(batch):
    return batch[0].squeeze(-1).long().tolist()


def test_every_epoch_visits_each_row_once_in_a_fresh_order():
    stream = BatchStream(_data(), 4, seed=0)
    assert stream.batches_per_epoch == 3
    epochs = [[row for _ in range(3) for row in _rows(next(stream))] for _ in range(3)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    again = BatchStream(_data(), 4, seed=0)
    assert [row for _ in range(3) for row in _rows(next(again))] == epochs[0]


@pytest.mark.parametrize("stop", [1, 3, 4, 7])
def test_a_stream_restored_from_its_state_continues_identically(stop):
    stream = BatchStream(_data(), 4, seed=1)
    for _ in range(stop):
        next(stream)
    restored = BatchStream(_data(), 4, seed=1)
    restored.load_state_dict(stream.state_dict())
    for _ in range(7):
        assert _rows(next(restored)) == _rows(next(stream))


def test_a_dataloader_with_a_generator_is_reseeded_per_epoch_so_a_restored_stream_continues_identically():
    def loader():
        dataset = torch.utils.data.TensorDataset(*_data())
        return torch.utils.data.DataLoader(dataset, batch_size=3, shuffle=True, generator=torch.Generator())

    stream = BatchStream(loader(), None, seed=2)
    for _ in range(5):
        next(stream)
    restored = BatchStream(loader(), None, seed=2)
    restored.load_state_dict(stream.state_dict())
    for _ in range(9):
        assert _rows(next(restored)) == _rows(next(stream))


def test_bad_streams_are_named():
    with pytest.raises(ValueError, match="batch_size"):
        BatchStream(_data(), 0, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        BatchStream(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_data())), 4, seed=0)


def test_minibatch_estimates_average_to_the_full_log_density_over_an_epoch():
    model, (x, y), _, _ = conjugate_regression()
    target = MinibatchLogDensity(model, 40, (x, y), temperature=2.0)
    theta = model.init_theta(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    stream = BatchStream((x, y), 8, seed=0)
    estimates = torch.stack([target.at(next(stream))(theta) for _ in range(5)])
    exact = model.logdensity((x, y), temperature=2.0)(theta)
    torch.testing.assert_close(estimates.mean(0), exact)
    torch.testing.assert_close(target(theta), exact)


def test_sample_takes_minibatches_from_a_dataloader():
    model, (x, y), mean, _ = conjugate_regression()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10, shuffle=True,
                                         generator=torch.Generator())
    post = inference.sample(model, loader, method="sghmc", num_chains=8, num_warmup=200, num_samples=200,
                            step_size=0.05, seed=0, progress=False, check_convergence=False)
    assert post.samples.shape == (8, 40, 4) and torch.isfinite(post.samples).all()
    assert post.info["batch_size"] is None and post.info["grad_evals"] > 0


def test_minibatches_need_a_minibatch_sampler():
    model, data, _, _ = conjugate_regression()
    with pytest.raises(ValueError, match="minibatch sampler: \\['sghmc'"):
        inference.sample(model, data, method="nuts", batch_size=10, progress=False)


def test_batch_size_needs_a_model_with_data():
    with pytest.raises(ValueError, match="batch_size"):
        inference.sample(correlated_gaussian_2d(), dim=2, method="sghmc", batch_size=10, progress=False)
