"""probnets_app: the application layer above ``probnets``, ``inference`` and ``surrogates``.

The ``probnets`` command line (:mod:`probnets_app.cli`; subcommands registered through the
``probnets.commands`` entry points), the fit report (:mod:`probnets_app.report`), the scikit-learn
estimators (:mod:`probnets_app.estimators`) and the figures (:mod:`probnets_app.plots`,
:mod:`probnets_app.regret_plot`). The three library packages never import it. Nothing is imported here, so
that the command line starts without torch.
"""
