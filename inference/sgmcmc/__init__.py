"""The stochastic-gradient MCMC family, built from shared parts and registered in ``inference.registry``.

Shared parts: ``langevin`` (noise injection with an explicit posterior temperature, and the noise convention),
``preconditioner`` (RMSprop), ``schedules`` (constant, polynomial decay, cyclical cosine with a sampling phase),
``guard`` (non-finite steps are rejected and counted) and ``info`` (ArviZ-named per-step statistics).
Samplers: ``sgld``, ``psgld``, ``sghmc`` (scale-adapted) and ``cyclical`` (``csgld``, ``csghmc``). Each has
one uniform step ``(state, batch, generator) -> (state, info)`` that takes one minibatch per iteration from the
runner (``batch=None``: full batch).
"""
