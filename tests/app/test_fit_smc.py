"""``probnets fit --method smc``: the CLI reaches tempered SMC through the registry and reports on its
weighted particles."""

import json

from probnets_app import cli


def test_fit_with_smc_writes_a_report(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b,target\n" + "".join(f"{i * 0.1:.2f},{(i % 7) * 1.5:.2f},{i * 0.3 + (i % 3):.2f}\n"
                                             for i in range(40)))
    out = tmp_path / "run"
    code = cli.main(["fit", "--data", str(data), "--target", "target", "--method", "smc", "--out", str(out),
                     "--chains", "2", "--warmup", "2", "--samples", "40", "--widths", "5", "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sampler"]["method"] == "smc" and report["sampler"]["num_chains"] == 2
    assert report["metrics"]["rmse"] > 0
