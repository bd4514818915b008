"""Smoke test of benchmarks/wait_policy.py: a tiny sampling job under two OpenMP settings, timed in a fresh process
each, with the same draws (gradient evaluations) under both, and the markdown table over them."""

from tests_support import load_script


def test_tiny_jobs_are_timed_with_the_same_draws_and_tabulated():
    script = load_script("benchmarks/wait_policy.py")
    rows = [dict(load=load, config=config, **script.run_job(config, warmup=5, samples=5))
            for load in ("none", "busy") for config in ("default", "spin1k")]
    assert all(r["wall_time"] >= r["sampling_time"] > 0 and r["cpu_time"] > 0 for r in rows)
    assert len({r["grad_evals"] for r in rows}) == 1
    meta = dict(machine="m", cpus=2, busy=2, repeats=1, loadavg_start=(0, 0, 0), loadavg_end=(0, 0, 0))
    text = script.markdown(meta, rows, ["default", "spin1k"])
    assert "| spin1k |" in text and "the same draws in every run" in text
