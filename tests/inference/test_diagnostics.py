"""inference.diagnostics against ArviZ 0.23 (the reference implementation), plus summary and warnings."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from inference import diagnostics as diag

az = pytest.importorskip("arviz")

# ArviZ's own 0/0 on constant draws (the NaN we compare against).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

# The requirement is agreement within 2%. The implementation follows ArviZ operation by operation and
# agrees to rounding error (~1e-15), so assert far tighter: small-factor slips (ddof, n / (n - 1),
# split handling) would hide inside 2%.
RTOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def arviz_without_numba():
    """ArviZ 0.23's ``mcse(method="sd")`` crashes on its numba path with NumPy >= 2.4 ("only
    0-dimensional arrays can be converted"); its NumPy path computes the same quantities."""
    numba_was_enabled = az.Numba.numba_flag
    az.Numba.disable_numba()
    yield
    if numba_was_enabled:
        az.Numba.enable_numba()


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def ar1_chains(rng: np.random.Generator, phi: float, shape: tuple[int, ...]) -> np.ndarray:
    """Stationary unit-variance AR(1) chains along axis 1, shape ``(chains, draws, *event)``."""
    noise = rng.normal(size=shape)
    x = np.empty(shape)
    x[:, 0] = noise[:, 0]
    innovation_scale = np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + innovation_scale * noise[:, t]
    return x


def shifted_chains(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Chains that do not mix: the last chain sits 2 sd away from the others."""
    x = rng.normal(size=shape)
    x[-1] += 2.0
    return x


CASE_BUILDERS = {
    "iid_normal": lambda rng: rng.normal(size=(4, 1000)),
    "ar1_phi0.3": lambda rng: ar1_chains(rng, 0.3, (4, 1000)),
    "ar1_phi0.9": lambda rng: ar1_chains(rng, 0.9, (4, 1000)),
    "ar1_phi-0.3": lambda rng: ar1_chains(rng, -0.3, (4, 1000)),
    "shifted_chains": lambda rng: shifted_chains(rng, (4, 500)),
    "student_t_df2": lambda rng: rng.standard_t(2, size=(4, 1000)),
    "small_2x10": lambda rng: rng.normal(size=(2, 10)),
    "event_3x2": lambda rng: ar1_chains(rng, 0.5, (4, 500, 3, 2)),
    "odd_draws": lambda rng: ar1_chains(rng, 0.6, (3, 501)),
    "ties": lambda rng: rng.integers(0, 5, size=(4, 200)).astype(np.float64),
    "single_chain": lambda rng: ar1_chains(rng, 0.5, (1, 400)),
    "constant": lambda rng: np.full((4, 100), 0.1),
    "too_short": lambda rng: rng.normal(size=(2, 3)),
    "with_nan": lambda rng: np.where(np.arange(50) == 7, np.nan, rng.normal(size=(2, 50))),
}


@functools.cache
def case(name: str) -> np.ndarray:
    rng = np.random.default_rng(sorted(CASE_BUILDERS).index(name))
    return CASE_BUILDERS[name](rng)


DIAGNOSTICS = {
    "split_rhat": (diag.split_rhat, lambda ds: az.rhat(ds, method="rank")),
    "ess_bulk": (diag.ess_bulk, lambda ds: az.ess(ds, method="bulk")),
    "ess_tail": (diag.ess_tail, lambda ds: az.ess(ds, method="tail")),
    "ess_mean": (diag.ess_mean, lambda ds: az.ess(ds, method="mean")),
    "ess_quantile": (
        lambda x: diag.ess_quantile(x, 0.3),
        lambda ds: az.ess(ds, method="quantile", prob=0.3),
    ),
    "mcse_mean": (diag.mcse_mean, lambda ds: az.mcse(ds, method="mean")),
    "mcse_sd": (diag.mcse_sd, lambda ds: az.mcse(ds, method="sd")),
}


def arviz_reference(name: str, x: np.ndarray) -> np.ndarray:
    dataset = az.convert_to_dataset({"x": x.astype(np.float64)})
    return DIAGNOSTICS[name][1](dataset)["x"].values


def assert_matches_arviz(mine: torch.Tensor, reference: np.ndarray) -> None:
    assert mine.dtype == torch.float64
    assert tuple(mine.shape) == reference.shape
    np.testing.assert_array_equal(np.isnan(mine.numpy()), np.isnan(reference))
    np.testing.assert_allclose(mine.numpy(), reference, rtol=RTOL, atol=0.0)


# --------------------------------------------------------------------------------------------------
# Agreement with ArviZ
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("diagnostic", sorted(DIAGNOSTICS))
@pytest.mark.parametrize("case_name", sorted(CASE_BUILDERS))
def test_agrees_with_arviz(case_name: str, diagnostic: str) -> None:
    x = case(case_name)
    assert_matches_arviz(DIAGNOSTICS[diagnostic][0](torch.from_numpy(x)), arviz_reference(diagnostic, x))


@pytest.mark.parametrize("diagnostic", sorted(DIAGNOSTICS))
def test_float32_input_agrees_with_arviz(diagnostic: str) -> None:
    x32 = np.random.default_rng(100).normal(size=(4, 500, 2)).astype(np.float32)
    assert_matches_arviz(DIAGNOSTICS[diagnostic][0](torch.from_numpy(x32)), arviz_reference(diagnostic, x32))


def test_rhat_within_absolute_tolerance_on_bad_mixing() -> None:
    x = case("shifted_chains")
    rhat = diag.split_rhat(torch.from_numpy(x)).item()
    assert rhat > 1.2  # the case really is badly mixed
    assert abs(rhat - float(arviz_reference("split_rhat", x))) < 1e-3


def test_cases_show_the_expected_behaviour() -> None:
    """The inputs exercise what their names claim (sanity of the test data, not of the code)."""
    ess = {
        name: diag.ess_bulk(torch.from_numpy(case(name))).item()
        for name in ("iid_normal", "ar1_phi0.9", "ar1_phi-0.3")
    }
    assert ess["ar1_phi0.9"] < 0.15 * 4000
    assert ess["ar1_phi-0.3"] > 4000  # antithetic chains beat independent draws
    assert 0.8 * 4000 < ess["iid_normal"] < 1.2 * 4000


# --------------------------------------------------------------------------------------------------
# Edge cases and shapes
# --------------------------------------------------------------------------------------------------


def test_constant_draws_follow_arviz_conventions() -> None:
    x = torch.ones(4, 100)
    assert torch.isnan(diag.split_rhat(x))
    assert diag.ess_bulk(x).item() == diag.ess_tail(x).item() == diag.ess_mean(x).item() == 400
    assert diag.mcse_mean(x).item() == 0.0
    assert torch.isnan(diag.mcse_sd(x))


@pytest.mark.parametrize("shape", [(2, 3), (2, 1), (1, 3, 2)])
def test_too_few_draws_give_nan(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for function, _ in DIAGNOSTICS.values():
        result = function(x)
        assert result.shape == shape[2:]
        assert torch.isnan(result).all()


def test_single_chain_has_ess_but_no_rhat() -> None:
    x = torch.randn(1, 200, 3, generator=torch.Generator().manual_seed(1))
    assert torch.isnan(diag.split_rhat(x)).all()
    assert torch.isfinite(diag.ess_bulk(x)).all()


def test_output_shape_is_event_shape() -> None:
    x = torch.randn(3, 40, 2, 5, 4, generator=torch.Generator().manual_seed(2))
    for function, _ in DIAGNOSTICS.values():
        assert function(x).shape == (2, 5, 4)
    assert diag.ess_bulk(x[..., 0, 0, 0]).shape == ()


def test_rejects_inputs_without_chain_and_draw_dims() -> None:
    with pytest.raises(ValueError, match="chains, draws"):
        diag.ess_bulk(torch.randn(10))


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------


def summary_draws() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return {"mu": torch.randn(4, 300, generator=generator), "w": torch.randn(4, 300, 2, 3, generator=generator)}


def test_summary_rows_and_values() -> None:
    draws = summary_draws()
    table = diag.summary(draws)
    assert table.columns == [
        "name", "mean", "sd", "q5", "q95", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat",
    ]
    assert [row["name"] for row in table] == ["mu"] + [f"w[{i},{j}]" for i in range(2) for j in range(3)]
    assert (table.num_chains, table.num_draws) == (4, 300)

    w = draws["w"].double()
    row = table.row("w[1,2]")
    pooled = w[..., 1, 2].reshape(-1).numpy()
    assert row["mean"] == pytest.approx(pooled.mean(), rel=1e-12)
    assert row["sd"] == pytest.approx(pooled.std(ddof=1), rel=1e-12)
    assert row["q5"] == pytest.approx(np.quantile(pooled, 0.05), rel=1e-12)
    assert row["q95"] == pytest.approx(np.quantile(pooled, 0.95), rel=1e-12)
    for column, function in [
        ("mcse_mean", diag.mcse_mean), ("mcse_sd", diag.mcse_sd), ("ess_bulk", diag.ess_bulk),
        ("ess_tail", diag.ess_tail), ("r_hat", diag.split_rhat),
    ]:
        assert row[column] == pytest.approx(function(w)[1, 2].item(), rel=1e-12)


def test_summary_of_a_tensor_with_and_without_names() -> None:
    x = torch.randn(2, 50, 3, generator=torch.Generator().manual_seed(4))
    assert [row["name"] for row in diag.summary(x)] == ["x[0]", "x[1]", "x[2]"]
    assert [row["name"] for row in diag.summary(x, ["a", "b", "c"])] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="names"):
        diag.summary(x, ["a", "b"])


def test_summary_interval_columns_follow_prob() -> None:
    table = diag.summary(summary_draws(), ["mu"], prob=0.8)
    assert table.columns[3:5] == ["q10", "q90"]
    assert len(table) == 1


def test_summary_string_is_an_aligned_table() -> None:
    table = diag.summary(summary_draws())
    lines = str(table).splitlines()
    assert lines[0].split() == table.columns
    assert len(lines) == 1 + len(table)
    assert len({len(line) for line in lines}) == 1
    assert lines[2].split()[0] == "w[0,0]"


def test_summary_string_truncates_to_max_rows() -> None:
    table = diag.summary(summary_draws(), max_rows=3)
    lines = str(table).splitlines()
    assert len(lines) == 1 + 3 + 1
    assert lines[-1] == "... 4 more rows not shown (7 parameters in total)"
    assert len(table.to_string(max_rows=10).splitlines()) == 1 + 7


# --------------------------------------------------------------------------------------------------
# Convergence warnings
# --------------------------------------------------------------------------------------------------


def test_no_warnings_for_well_mixed_chains() -> None:
    x = torch.from_numpy(np.random.default_rng(10).normal(size=(4, 1000, 3)))
    assert diag.convergence_warnings(x, diverging=torch.zeros(4, 1000, dtype=torch.bool)) == []


def test_warns_about_divergences() -> None:
    x = torch.from_numpy(np.random.default_rng(11).normal(size=(4, 1000, 3)))
    diverging = torch.zeros(4, 1000, dtype=torch.bool)
    diverging[0, 5] = diverging[2, 7] = diverging[2, 9] = True
    (message,) = diag.convergence_warnings(x, diverging=diverging)
    assert "3 divergent transitions" in message
    assert "per chain: 1, 0, 2, 0" in message


def test_warns_about_high_rhat() -> None:
    table = diag.summary({"mu": torch.from_numpy(shifted_chains(np.random.default_rng(12), (4, 500, 2)))})
    worst = max(table, key=lambda row: row["r_hat"])
    rhat_messages = [m for m in diag.convergence_warnings(table) if "R-hat" in m]
    assert len(rhat_messages) == 1
    assert rhat_messages[0].startswith("2 of 2 parameters have R-hat > 1.01")
    assert f"worst: {worst['name']} with R-hat {worst['r_hat']:.3f}" in rhat_messages[0]


def test_warns_about_low_ess() -> None:
    table = diag.summary({"theta": torch.from_numpy(ar1_chains(np.random.default_rng(13), 0.95, (4, 400, 3)))})
    worst = min(table, key=lambda row: min(row["ess_bulk"], row["ess_tail"]))
    ess_messages = [m for m in diag.convergence_warnings(table) if "ESS" in m]
    assert len(ess_messages) == 1
    assert ess_messages[0].startswith("3 of 3 parameters have bulk or tail ESS < 400 (worst")
    assert f"worst: {worst['name']}" in ess_messages[0]


def test_ess_threshold_scales_with_chains_up_to_four() -> None:
    x = torch.from_numpy(np.random.default_rng(14).normal(size=(4, 1000, 2)))
    table = diag.summary(x)
    assert diag.convergence_warnings(table) == []
    assert diag.convergence_warnings(table, num_chains=400) == []  # many chains: 400 in total suffices
    short = torch.from_numpy(np.random.default_rng(15).normal(size=(2, 60, 2)))
    assert any("ESS < 200" in m for m in diag.convergence_warnings(short))
    # Computing the warnings straight from draws gives the same messages as from a summary table.
    ar = torch.from_numpy(ar1_chains(np.random.default_rng(13), 0.95, (4, 400, 3)))
    assert diag.convergence_warnings(ar) == diag.convergence_warnings(diag.summary(ar))


def test_shared_rhat_and_ess_match_the_separate_functions() -> None:
    rng = np.random.default_rng(16)
    for shape in [(4, 400, 3), (3, 101, 2), (1, 50, 2), (2, 3, 2)]:
        x = torch.from_numpy(ar1_chains(rng, 0.7, shape))
        shared = diag._rhat_and_ess(x)
        separate = torch.stack([diag.split_rhat(x), diag.ess_bulk(x), diag.ess_tail(x)], 1)
        torch.testing.assert_close(shared, separate, equal_nan=True, rtol=1e-12, atol=0)
