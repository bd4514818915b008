"""The stochastic-gradient MCMC family, built from shared parts and registered in ``inference.registry``.

Shared parts: ``langevin`` (noise injection with an explicit posterior temperature, and the noise convention),
``preconditioner`` (RMSprop), ``schedules`` (constant, polynomial decay, cyclical cosine with a sampling phase),
``guard`` (non-finite steps are rejected and counted) and ``info`` (ArviZ-named per-step statistics).
Samplers: ``sgld``, ``psgld``, ``sghmc`` (scale-adapted), ``cyclical`` (``csgld``, ``csghmc``) and ``structured``
(structured SG-MCMC over any of them, with its parts ``groups``, the parameter partitions, and ``history``, the
ring buffers of past iterates). Each has one uniform step ``(state, batch, generator) -> (state, info)`` that
takes one minibatch per iteration from the runner (``batch=None``: full batch).
"""
