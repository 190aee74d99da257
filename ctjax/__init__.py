"""ctjax: real-time correlation tracking with distilled CNN features, in JAX.

Implements Wang et al., "Real-Time Correlation Tracking via Joint Model Compression and
Transfer" (IEEE TIP 2020). Importing the package does not import jax and sets no XLA or
thread flags: that is the job of the entry points (see `ctjax.runtime`).
"""

__version__ = "0.1.0"
