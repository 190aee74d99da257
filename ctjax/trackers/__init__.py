"""Tracker families, one module each, every one a pure `make_tracker(config, extractor)` ->
`Tracker(init_fn, step_fn)` over its own NamedTuple state."""
