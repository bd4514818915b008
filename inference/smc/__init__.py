"""Sequential Monte Carlo in Feynman-Kac form: shared parts and the algorithms built from them.

- ``resampling``: multinomial, stratified, systematic and residual resampling; ESS.
- ``moves``: Markov moves of batched particle populations (random-walk MH, MALA, HMC, preconditioned
  Crank-Nicolson) and the uncorrected random-walk and Ornstein-Uhlenbeck jitters of open-horizon SMC.
- ``feynman_kac``: the particle loop (move, reweight, evidence, ESS-triggered resampling).
- ``paths``: Gaussian reference, geometric bridges and data annealing between a reference and a target.
- ``tempered``: adaptive tempered SMC (``inference.sample(..., method="smc")``), run by ``runner``.
- ``estimates``: estimates and MCSE across independent populations (log evidence, cross-population R-hat).
- ``posterior``: ``ParticlePosterior``, the weighted ``SamplePosterior`` of an SMC run.
"""
