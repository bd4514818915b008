"""The fit report shared by the ``probnets fit`` command, the demo and the examples: metrics, function-space
diagnostics, a parameter summary and figures, written as ``report.json`` plus PNGs and printed as text."""

from probnets_app.report.fit_report import REPORT_FILE, fit_report
from probnets_app.report.rescale import rescaled_predictive
from probnets_app.report.text import format_report

__all__ = ["REPORT_FILE", "fit_report", "format_report", "rescaled_predictive"]
