"""Every example runs with --quick and writes its outputs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "fit_bnn_uncertainty.py": ["uncertainty_band.png", "uncertainty_calibration.png"],
    "sample_pyro_model.py": ["eight_schools.nc"],
    "minibatch_sampling.py": ["minibatch_band.png", "minibatch_calibration.png", "sghmc.ckpt"],
    "sklearn_estimator.py": ["sklearn_predictions.csv"],
    "student_t_process.py": ["student_t_process_metrics.json"],
    "bayesian_optimisation.py": ["bo_regret.png", "bo_runs.json"],
    "conv_dkm_digits.py": ["conv_dkm_digits.json"],
    "dkm_sine_toy.py": ["dkm_sine_toy.json", "dkm_sine_toy.png"],
    "pfn_gp_regression.py": ["pfn_gp_regression.json", "pfn_gp_regression.png", "pfn_bias_variance.png"],
    "neural_process_gp_regression.py": ["neural_process_gp_regression.json", "neural_process_gp_regression.png"],
    "tempered_smc.py": ["tempered_smc.json", "tempered_smc.png"],
    "partial_bnn.py": ["partial_bnn_moons.png", "partial_bnn_moons.json"],
    "masked_bnn.py": ["masked_bnn_band.png", "masked_bnn_active_nodes.png", "masked_bnn.json"],
    "variational_bnn.py": ["variational_bnn.png", "variational_bnn.json"],
    "moment_propagation.py": ["moment_propagation.json", "moment_propagation.png"],
}


@pytest.mark.parametrize("script", list(EXAMPLES))
def test_example_runs_quick(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(REPO / "examples" / script), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in EXAMPLES[script]:
        assert (tmp_path / name).stat().st_size > 0, name
