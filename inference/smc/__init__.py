"""Sequential Monte Carlo in Feynman-Kac form: shared parts (resampling) and the algorithms built from them."""
