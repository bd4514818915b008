"""probnets_app: the application layer above ``probnets``, ``inference`` and ``surrogates``.

The ``probnets`` command line (commands registered through the ``probnets.commands`` entry points), the
fit report, the scikit-learn estimators and the figures. The three library packages never import it.
"""
