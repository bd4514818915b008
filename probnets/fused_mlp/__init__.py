"""Fused analytic log-density gradients for MLPs on CPU (numba kernels): Gaussian, Bernoulli and Categorical
likelihoods; tanh, ReLU and (exact) GELU activations.

HMC/NUTS evaluate ``value_and_grad`` of the log posterior of a BNN for many chains at once. For the small
networks of BNN regression, eager autograd spends its time in per-op overhead and a slow elementwise
``tanh``. :class:`FusedMLPLogDensity` evaluates the forward pass, the log-likelihood, the
backward pass and (for Normal priors) the log prior in one compiled kernel:

* **Specialised kernels.** For every architecture (layer sizes, activation), likelihood and dtype, Python source is
  generated in which every loop over up to ``UNROLL`` features is unrolled into scalar weights and scalar
  accumulators; the remaining loops run over data points, which are the SIMD dimension (activations are
  stored transposed, ``(width, n)``, in a per-thread workspace). LLVM vectorises them with AVX-512/AVX2;
  the output layer is fused into the last hidden layer's passes, ``tanh`` is evaluated once and reused as
  ``1 - tanh^2`` in the backward pass, and each weight gradient is one register reduction over the data.
  The source goes to a cache directory (``$PROBNETS_KERNEL_DIR``, else ``~/.cache/probnets/fused_mlp``,
  else a temporary directory) and numba's ``cache=True`` stores the machine code beside it, so a new process
  loads a kernel in well under a second; compiling a new one takes about 1-2 s.
* **Threads.** Work items are (chain, block of data points), split evenly over up to
  ``torch.get_num_threads()`` threads (read when the log density is built) by a numba ``prange`` driver
  generated with each kernel. Data are split into blocks only when there are too few chains to keep the
  threads busy. (A Python thread pool was measured first: waking its threads cost ~100-250 us per call.)
  numba's OpenMP layer is not fork-safe: do not evaluate the kernel in a forked child of a process that
  already used it.
* **Precision.** float32 stays float32 inside the kernel (constants are typed); per-chain sums (squared
  error or log-likelihood, log prior) are accumulated in float64. ``tanh``: a rational approximation in
  float32 (< 2 ulp) and a branch-free Cephes-style one in float64 (~1e-16), both vectorisable. GELU (exact,
  ``a Phi(a)``): ``Phi`` and ``phi`` from a branch-free exponential and Abramowitz-Stegun's ``erfc`` (absolute
  error < 1.5e-7), float32 only; float64 GELU networks take the generic path (numba's ``erf`` and ``exp`` are
  scalar libm calls, which left a float64 kernel slower than autograd). Bernoulli: ``y f - softplus(f)`` and
  Categorical: ``f_y - logsumexp(f)``, both without overflow for saturated logits. Fast-math is limited to
  ``contract/reassoc/arcp/nsz/afn`` -- without ``nnan``/``ninf`` -- and numba's ``error_model="numpy"``
  is used, so NaN and inf in ``theta`` propagate into the value and gradient (the samplers count them as
  divergences) and nothing raises.

Numba is optional: :func:`supports` is False without it and ``BNN.logdensity`` keeps the autograd path.

Modules: :mod:`~probnets.fused_mlp.density` (the log density: supported models, data layout, work split and
dispatch), :mod:`~probnets.fused_mlp.codegen` (kernel source), :mod:`~probnets.fused_mlp.loader` (the on-disk
kernel cache), :mod:`~probnets.fused_mlp.helpers` (compiled helpers shared by all kernels) and
:mod:`~probnets.fused_mlp.prior` (the closed-form Normal log prior).
"""

from probnets.fused_mlp.density import ACTIVATIONS, FusedMLPLogDensity, supports

__all__ = ["ACTIVATIONS", "FusedMLPLogDensity", "supports"]
