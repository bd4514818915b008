"""Smoke test of benchmarks/demo_cost.py: one tiny `probnets fit` run under a thread and wait-policy setting is
timed and read back from its report."""

from tests_support import load_script


def test_one_tiny_run_is_timed_and_read_back():
    script = load_script("benchmarks/demo_cost.py")
    row = script.run_fit("float32", "1", "default", ["--chains", "2", "--warmup", "5", "--samples", "5"])
    assert row["wall_time"] >= row["sampling_time"] > 0 and row["cpu_time"] > 0
    assert row["grad_evals"] > 0 and row["max_rhat"] > 0
