"""Offline distillation of a student CNN from a frozen teacher (fidelity + tracking loss).

Modules: `config` (the run's frozen config, nesting the pair sampler's `PairConfig`, and the
experiment-file loader), `losses` (fidelity and DCF tracking losses), `steps` (static set-up,
train state, optimiser, jitted-step factories), `pools` (pair pools with cached teacher
targets), `loop` (the train loop), `parallel` (devices and hosts: the data mesh, per-host
rows of global batches, `jax.distributed` start-up), `checkpoint` (Orbax checkpoints: the
only Orbax user) and `export` (checkpoint -> student folder, written with
`ctjax.models.student`).

Distillation writes student folders; trackers read them through `ctjax.models`. Neither
`ctjax.distill` nor `ctjax.trackers` imports the other.
"""
