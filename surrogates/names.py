"""The names users choose from (problems, surrogate kinds, acquisitions), in a module that imports nothing, so
that ``probnets bo --help`` lists them without importing BoTorch (``probnets_app.light_import``)."""

PROBLEMS = ("branin", "hartmann6", "ackley10", "branincurrin", "dtlz1", "dtlz5", "bnn-draw", "poly-draw")
SURROGATE_KINDS = ("gp", "ibnn", "student-t", "dkl", "hmc-bnn", "sghmc-bnn", "ensemble", "np", "pfn", "smc-pbnn",
                   "mfvi-bnn", "mp-gelu-bnn")
SINGLE_OBJECTIVE = ("qlognei", "qlogei", "qucb")
MULTI_OBJECTIVE = ("qlognehvi",)
