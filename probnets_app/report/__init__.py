"""The fit report shared by the ``probnets fit`` command, the demo and the examples."""

from probnets_app.report.fit_report import REPORT_FILE, fit_report, format_report, rescaled_predictive

__all__ = ["REPORT_FILE", "fit_report", "format_report", "rescaled_predictive"]
