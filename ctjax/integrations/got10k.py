"""A GOT-10k toolkit tracker (`got10k.trackers.Tracker`) running a ctjax preset.

    from got10k.experiments import ExperimentGOT10k
    from ctjax.integrations.got10k import got10k_tracker

    tracker = got10k_tracker("feco")                 # name "ctjax-feco" in the reports
    ExperimentGOT10k("data/GOT-10k", subset="val").run(tracker)

The toolkit (`pip install got10k`, an optional dependency) is imported when a tracker is
made, not when this module is imported. Its `Tracker.track` opens each frame with PIL and
calls `init(image, box)` then `update(image) -> box`; boxes are x, y, w, h passed through
unchanged (the toolkit's own trackers, e.g. its SiamFC, read them as 1-based like ctjax).
PIL images in another mode than RGB (grey "L", palette "P") are converted to RGB here (the
toolkit's `track` discards its own conversion).
"""

from __future__ import annotations

import numpy as np

from ctjax.api import Tracker

GOT10K_HINT = "pip install got10k"


def require_got10k():
    """`got10k.trackers.Tracker`, or an ImportError saying how to install the toolkit (for
    callers that check optional dependencies before a run starts)."""
    try:
        from got10k.trackers import Tracker as Got10kTracker
    except ImportError as e:
        raise ImportError(f"the GOT-10k toolkit is not installed: {GOT10K_HINT} "
                          f"({type(e).__name__}: {e})") from e
    return Got10kTracker


def _as_array(image) -> np.ndarray:
    if hasattr(image, "convert") and getattr(image, "mode", "RGB") not in ("RGB", "L"):
        image = image.convert("RGB")
    return np.asarray(image)


def got10k_tracker(preset: str = "feco", weights=None, *, name: str | None = None, **options):
    """Makes a `got10k.trackers.Tracker` that runs a ctjax preset.

    Args:
      preset: a name of `ctjax.trackers.presets.available()`.
      weights: the preset's weights (None: its default).
      name: the tracker's name in the toolkit's result folders (default "ctjax-<preset>").
      **options: more `ctjax.Tracker` arguments (`config`, `confidence`).

    Returns:
      An instance of a subclass of `got10k.trackers.Tracker` (deterministic) whose
      `init(image, box)` / `update(image) -> (4,) box` call a `ctjax.Tracker`; its `ctjax`
      attribute is that tracker (e.g. for its last `ok` decision, `last_update`).

    Raises:
      ImportError: got10k is not installed (the message says how to install it).
      ValueError: unknown preset (as `ctjax.Tracker`).
    """
    base = require_got10k()

    class CtjaxGot10kTracker(base):
        """ctjax behind the GOT-10k toolkit's tracker interface."""

        def __init__(self):
            super().__init__(name=name or f"ctjax-{preset}", is_deterministic=True)
            self.ctjax = Tracker(preset, weights, color="rgb", **options)
            self.last_update = None

        def init(self, image, box):
            self.ctjax.init(_as_array(image), np.asarray(box, np.float64))
            self.last_update = None

        def update(self, image):
            self.last_update = self.ctjax.update(_as_array(image))
            return self.last_update.box

    return CtjaxGot10kTracker()
