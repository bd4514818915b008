"""Distributed sampling (``inference.distributed``) on 2 gloo processes over loopback.

The two ranks are spawned once for the module (``distributed_worker``) and run every scenario; the tests check
their saved results against each other and against single-process runs. Fixed before running: seeds and
budgets in ``distributed_worker``; the data-parallel SGLD posterior of the conjugate regression keeps the
contract's rule (``|mean - truth| / MCSE < 3.5``, second moments within 10% bias, as ``TestSGLD``).
"""

from __future__ import annotations

import pytest
import torch

import distributed_worker as worker
import inference
from inference import diagnostics, distributed, registry, runner
from inference.minibatch import BatchStream, MinibatchLogDensity
from sampler_contract import conjugate_regression, moment_violations


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    worker.launch(out)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(worker.WORLD_SIZE)]


@pytest.mark.parametrize("method", ["sgld", "psgld", "sghmc"])
def test_data_parallel_chains_are_bit_identical_across_ranks(ranks, method):
    first, second = (r[f"short_{method}"] for r in ranks)
    assert first.shape == (4, 30, 4)
    assert torch.equal(first, second)


def _single_process(batches, num_data, batch_size=None):
    """The data-parallel SGLD run of ``worker.SHORT`` reproduced in one process on all the data."""
    model, data, _, _ = conjugate_regression()
    generator = torch.Generator().manual_seed(worker.SHORT["seed"])
    init = model.init_theta(worker.SHORT["num_chains"], generator=generator, dtype=torch.float64)
    logdensity = MinibatchLogDensity(model, num_data, data, dtype=torch.float64)
    algorithm = registry.get("sgld").build(logdensity, worker.SHORT["num_warmup"], step_size=1e-3)
    return runner.run(algorithm, init, worker.SHORT["num_samples"], num_warmup=worker.SHORT["num_warmup"],
                      generator=generator, batches=batches, progress=False).samples


def test_two_shards_match_one_process_on_all_the_data_full_batch(ranks):
    expected = _single_process(None, 40)
    torch.testing.assert_close(ranks[0]["full_batch_sgld"], expected, rtol=1e-10, atol=1e-10)


def test_data_loaders_with_distributed_samplers(ranks):
    """Each rank's ``DataLoader`` over a ``DistributedSampler``: batches of the whole rank share sum to the full
    data (the run equals the full-batch one); shuffled batches of 5 keep the ranks bit-identical."""
    torch.testing.assert_close(ranks[0]["loader_full_batch_sgld"], ranks[0]["full_batch_sgld"], rtol=1e-10,
                               atol=1e-10)
    assert torch.equal(ranks[0]["loader_sgld"], ranks[1]["loader_sgld"])
    assert not torch.equal(ranks[0]["loader_sgld"], ranks[0]["short_sgld"])  # other batches than the tensors'
    assert bool(torch.isfinite(ranks[0]["loader_sgld"]).all())


def test_two_shards_match_one_process_on_all_the_data_with_minibatches(ranks):
    """One process fed the union of the ranks' minibatches (5 rows of each shard, scaled by 40 / 10) takes the
    same steps as the two ranks (each scaling its 5 rows by 20 / 5)."""
    model, data, _, _ = conjugate_regression()
    streams = [BatchStream(model.prepare_batch(distributed.shard(data, r, 2)), 5, seed=worker.SHORT["seed"])
               for r in range(2)]

    def union():
        while True:
            parts = [next(s) for s in streams]
            yield torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    expected = _single_process(union(), 40)
    torch.testing.assert_close(ranks[0]["short_sgld"], expected, rtol=1e-10, atol=1e-10)


def test_data_parallel_sgld_conjugate_regression_within_mcse(ranks):
    _, _, mean, cov = conjugate_regression()
    assert moment_violations(ranks[0]["mcse"], mean, cov, variance_bias=0.1) == {}
    assert torch.equal(ranks[0]["mcse"], ranks[1]["mcse"])


def test_interrupted_data_parallel_run_resumes_bit_identically(ranks):
    """Every rank checkpoints its own file (``path.rank<r>``); stopped two thirds through and resumed, the run
    equals the uninterrupted one, and the ranks stay identical."""
    for rank in ranks:
        assert rank["resume_stopped"]  # and its checkpoint file exists
        resumed_calls, total_calls = rank["resume_calls"]
        assert 0 < resumed_calls < total_calls / 2  # it continued from a checkpoint past the middle
        assert torch.equal(rank["resume_resumed"], rank["resume_uninterrupted"])
    assert torch.equal(ranks[0]["resume_resumed"], ranks[1]["resume_resumed"])


def test_independent_chains_are_gathered_with_cross_chain_rhat(ranks):
    _, _, mean, cov = conjugate_regression()
    per_rank, draws = worker.CHAINS_RUN["num_chains"], worker.CHAINS_RUN["num_samples"] // worker.CHAINS_RUN["thin"]
    samples = ranks[0]["chains"]
    assert samples.shape == (2 * per_rank, draws, 4)
    assert torch.equal(samples, ranks[1]["chains"])
    assert ranks[0]["chains_info"]["world_size"] == 2 and ranks[0]["chains_info"]["distributed"] == "chains"
    # Rank-major: rank r's chains are a single-process run from rank r's seed.
    model, data, _, _ = conjugate_regression()
    settings = dict(worker.CHAINS_RUN, seed=ranks[1]["rank_seed"])
    alone = inference.sample(model, data, **settings, **worker.QUIET)
    torch.testing.assert_close(samples[per_rank:], alone.samples, rtol=1e-10, atol=1e-10)
    assert ranks[0]["rank_seed"] != ranks[1]["rank_seed"]
    assert float(diagnostics.split_rhat(samples).max()) < 1.01
    assert moment_violations(samples, mean, cov, variance_bias=0.1) == {}


@pytest.mark.parametrize("name, message", [
    ("error_empty", "empty"),
    ("error_same_data", "same data"),
    ("error_seed", "seed must be the same on every rank"),
    ("error_chains", "same number of chains"),
])
def test_bad_distributed_input_is_a_clear_error_on_every_rank(ranks, name, message):
    for rank in ranks:
        assert rank[name].startswith("ValueError") and message in rank[name], rank[name]


def test_without_a_process_group_is_a_clear_error():
    model, data, _, _ = conjugate_regression()
    with pytest.raises(RuntimeError, match="torchrun"):
        inference.sample(model, data, method="sgld", distributed="data", progress=False)
    with pytest.raises(ValueError, match="distributed must be None or one of"):
        inference.sample(model, data, method="sgld", distributed=True, progress=False)


def test_shards_cover_the_rows_once_and_batches_split_the_global_batch():
    x, y = torch.arange(10.0)[:, None], torch.arange(10.0)
    shards = [distributed.shard((x, y), r, 3) for r in range(3)]
    assert [s[0].shape[0] for s in shards] == [3, 3, 4]
    assert torch.equal(torch.cat([s[1] for s in shards]), y)
    assert [distributed.split_batch_size(10, r, 3) for r in range(3)] == [4, 3, 3]
    with pytest.raises(ValueError, match="at least the number of ranks"):
        distributed.split_batch_size(2, 0, 3)
