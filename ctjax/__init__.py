"""ctjax: real-time correlation tracking with distilled CNN features, in JAX.

Implements Wang et al., "Real-Time Correlation Tracking via Joint Model Compression and
Transfer" (IEEE TIP 2020). Importing the package does not import jax and sets no XLA or
thread flags: that is the job of the entry points (see `ctjax.runtime`). `ctjax.Tracker` and
`ctjax.Update` (from `ctjax.api`) are loaded on first access.
"""

__version__ = "0.1.0"
__all__ = ["Tracker", "Update"]


def __getattr__(name):
    if name in __all__:
        from ctjax import api
        return getattr(api, name)
    raise AttributeError(f"module 'ctjax' has no attribute {name!r}")
