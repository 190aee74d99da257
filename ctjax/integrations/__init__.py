"""Adapters that let other toolkits run ctjax trackers (optional dependencies, imported lazily).

* `got10k`: a `got10k.trackers.Tracker` subclass, so the GOT-10k toolkit's experiments
  (GOT-10k, OTB, VOT, LaSOT, UAV123, ...) run any ctjax preset.
"""
