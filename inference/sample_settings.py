"""Default sampler settings per method (chains, warm-up, draws), shared by ``sample``, the CLI and the
estimators. Kept free of heavy imports so that ``probnets --help`` stays fast.

Measured on the diabetes demo (BNN 10-50-1, protocol H1, 2 CPU cores). Split R-hat of short chains grows
like ``sqrt(1 + 1/ESS_per_split_chain - 1/draws_per_split_chain)`` even when the chains have mixed, so
ChEES needs long chains rather than many: 64 x 100 draws gave a max R-hat of f(x_test) of 1.016-1.023,
16 x 1000 gave 1.003-1.005 (noise scale 1.005-1.010). ChEES needs ~300 warm-up iterations to adapt its
trajectory length (200: R-hat 1.012-1.014). NUTS: 4 x 500 gives R-hat ~1.005 and bulk ESS > 1000. Static
HMC (32 leapfrog steps) mixes slowly per draw, so it needs long chains: 4 x 500 gave R-hat 1.036, 4 x 3000
gave 1.007.
"""

DEFAULT_SETTINGS = {
    "chees": {"num_chains": 16, "num_warmup": 300, "num_samples": 1000},
    "nuts": {"num_chains": 4, "num_warmup": 500, "num_samples": 500},
    "hmc": {"num_chains": 4, "num_warmup": 500, "num_samples": 3000},
}
