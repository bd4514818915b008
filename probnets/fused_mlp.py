"""Fused analytic log-density gradients for Gaussian-likelihood MLPs on CPU (placeholder)."""


def supports(model) -> bool:
    return False
