"""``probnets bench``: a resumable, fair comparison of inference methods on regression and classification data.

The protocol (Hernandez-Lobato and Adams 2015): 90/10 train/test splits with saved indices shared by every method
and run, standardisation with the training rows' statistics, 20% of the training rows as validation rows for the
methods that tune on them; test log-likelihood, RMSE, CRPS and 90% coverage in the target's original units
(classification: accuracy, NLL, ECE, Brier), mean and standard error over splits. Every cell (data set x method x
split) is one JSON file, written when it ends, so an interrupted bench resumes where it stopped.

Parts: :mod:`~probnets_app.bench.methods` (the method registry and the shared model),
:mod:`~probnets_app.bench.budget`, :mod:`~probnets_app.bench.problem` (data and splits),
:mod:`~probnets_app.bench.cell`, :mod:`~probnets_app.bench.runner` (:func:`run`),
:mod:`~probnets_app.bench.report`, :mod:`~probnets_app.bench.figures`, :mod:`~probnets_app.bench.html_page` and
:mod:`~probnets_app.bench.command` (the subcommand).

Example:
    >>> from probnets_app.bench import run
    >>> table = run(["diabetes", "boston"], ["chees", "mfvi", "ensemble"], splits=5, out="bench_out", jobs=2)
"""

from probnets_app.bench.runner import run

__all__ = ["run"]
