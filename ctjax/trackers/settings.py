"""Tracker settings from `KEY=VALUE` text (`ctjax track --set`, `ctjax eval --set`), typed from
the preset's frozen config dataclass, and the tracker a preset becomes with them.

A key is a field name of the config (`learning_rate`) or a dotted path into a nested config
(`filter.cg_iter`); the value text is converted to the field's annotation (bool, int, float,
str, tuples such as `720,1280`, Optional, Literal), and the config's own `__post_init__`
checks run on the result. Every problem is a `SettingError` (a `ValueError`) whose one-line
message names the setting, the expected type or the fields there are; the commands print it
as their one-line error.

The canvas: frames larger than a preset's `canvas_hw` get a canvas that holds them
(`ctjax.ops.crop.canvas_for`'s bucket) unless `canvas_hw` is set explicitly, so a preset
compiles once per canvas bucket, never per frame size.

All functions are host-side (no jax at import): they build configs, not traced values.
"""

from __future__ import annotations

import dataclasses
import types
import typing

import numpy as np

__all__ = ["SettingError", "apply_settings", "build_tracker", "fit_canvas", "parse_setting",
           "tracker_config"]


class SettingError(ValueError):
    """A setting that cannot be applied: malformed text, an unknown field, a wrong type, a
    value the config refuses, or a preset without a config."""


def parse_setting(text: str, *, labels: bool = False) -> tuple[str | None, str, str]:
    """`[LABEL:]KEY=VALUE` -> (label or None, key, value text), both stripped.

    Args:
      text: one `--set` argument.
      labels: whether a `LABEL:` prefix (one of eval's trackers) is allowed.

    Raises:
      SettingError: no `=`, an empty key, or a label where `labels` is False.
    """
    key, sep, value = str(text).partition("=")
    label, _, key = key.strip().rpartition(":")
    if not sep or not key.strip():
        raise SettingError(f"--set {text!r}: expected {'[LABEL:]' if labels else ''}KEY=VALUE, "
                           "e.g. --set learning_rate=0.01")
    if label and not labels:
        raise SettingError(f"--set {text!r}: a LABEL: prefix names one of eval's trackers; "
                           "track takes KEY=VALUE")
    return label or None, key.strip(), value.strip()


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(text: str, tp, key: str):
    """The value `text` as the field type `tp` (bool, int, float, str, tuples, Optional,
    Literal); SettingError naming the key and the expected type otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = SettingError(f"--set {key}={text}: {key} must be {_type_name(tp)}, got {text!r}")
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() == "none":
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(text, option, key)
            except ValueError:
                continue
        raise bad
    if origin is typing.Literal:
        for option in args:
            try:
                if _convert(text, type(option), key) == option:
                    return option
            except ValueError:
                continue
        raise SettingError(f"--set {key}={text}: {key} must be one of {list(args)}")
    if origin is tuple:
        parts = [p.strip() for p in text.strip().strip("()[]").split(",") if p.strip()]
        kinds = [args[0]] * len(parts) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(parts):
            raise SettingError(f"--set {key}={text}: {key} must be {len(kinds)} comma-separated "
                               f"values ({_type_name(tp)}), got {len(parts)}")
        return tuple(_convert(p, k, key) for p, k in zip(parts, kinds))
    if tp is bool:
        value = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}.get(text.lower())
        if value is None:
            raise SettingError(f"--set {key}={text}: {key} must be true or false, got {text!r}")
        return value
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise bad from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise bad from None
        if not np.isfinite(value):
            raise bad
        return value
    if tp is str:
        return text
    if dataclasses.is_dataclass(tp):
        fields = ", ".join(f"{key}.{f.name}" for f in dataclasses.fields(tp) if f.init)
        raise SettingError(f"--set {key}: {key} is a group of settings; set its fields: {fields}")
    raise SettingError(f"--set {key}: {key} ({_type_name(tp)}) cannot be set from the command "
                       "line")


def _set_field(obj, parts: list[str], text: str, key: str):
    """`obj` (a frozen dataclass) with the field at the path `parts` set from `text`."""
    fields = {f.name: f for f in dataclasses.fields(obj) if f.init}
    name = parts[0]
    if name not in fields:
        raise SettingError(f"--set {key}: {type(obj).__name__} has no field {name!r}; its "
                           f"fields: {', '.join(fields)}")
    current = getattr(obj, name)
    if len(parts) > 1:
        if not dataclasses.is_dataclass(current):
            raise SettingError(f"--set {key}: {'.'.join(parts[:1])} is a single value, not a "
                               "group of settings")
        value = _set_field(current, parts[1:], text, key)
    else:
        try:
            field_type = typing.get_type_hints(type(obj))[name]
        except Exception:  # an annotation that cannot be resolved at run time
            field_type = fields[name].type
        value = _convert(text, field_type, key)
    try:
        return dataclasses.replace(obj, **{name: value})
    except (TypeError, ValueError) as e:  # the config's own checks (__post_init__)
        raise SettingError(f"--set {key}={text}: {' '.join(str(e).split())}") from None


def apply_settings(config, settings) -> typing.Any:
    """A frozen config dataclass with settings applied.

    Args:
      config: the preset's config (e.g. `TrackerConfig`, `EcoConfig`, `StrcfConfig`).
      settings: (key, value text) pairs; a key is a field name, or a dotted path into a
        nested config (`filter.cg_iter`); values are typed from the fields' annotations.

    Returns:
      `config` itself when there is no setting, else a new config (its `__post_init__`
      checks run).

    Raises:
      SettingError: an unknown field (the message lists the fields), a value of the wrong
        type, a key given twice, a value the config refuses, or a config that is not a
        dataclass.
    """
    settings = list(settings)
    if not settings:
        return config
    if not dataclasses.is_dataclass(config):
        raise SettingError(f"--set: this tracker's config ({type(config).__name__}) has no "
                           "settings to change")
    keys = [k for k, _ in settings]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise SettingError(f"--set {twice[0]} is given more than once")
    for key, text in settings:
        config = _set_field(config, key.split("."), text, key)
    return config


def fit_canvas(config, image_hw):
    """`config` with a canvas that holds frames of `image_hw`.

    Args:
      config: a config with a `canvas_hw` (height, width) field, or any object without one.
      image_hw: the frames' (height, width) in pixels.

    Returns:
      `config` with `canvas_hw = canvas_for(image_hw)` when its own canvas is too small;
      `config` itself otherwise, or when it has no canvas.
    """
    canvas = getattr(config, "canvas_hw", None)
    if canvas is None or (image_hw[0] <= canvas[0] and image_hw[1] <= canvas[1]):
        return config
    from ctjax.ops.crop import canvas_for
    return dataclasses.replace(config, canvas_hw=tuple(canvas_for(image_hw)))


def tracker_config(default_config, settings=(), image_hw=None):
    """The config a tracker runs with.

    Args:
      default_config: the preset's default config.
      settings: (key, value text) pairs (see `apply_settings`).
      image_hw: the frames' (height, width), or None to keep the config's canvas.

    Returns:
      The default with the settings applied, then its canvas fitted to `image_hw` (unless
      `canvas_hw` is one of the settings); `default_config` itself when nothing changes.

    Raises:
      SettingError: what `apply_settings` raises.
    """
    settings = list(settings)
    config = apply_settings(default_config, settings)
    if image_hw is not None and "canvas_hw" not in {k for k, _ in settings}:
        config = fit_canvas(config, image_hw)
    return config


def build_tracker(preset: str, *, weights=None, settings=(), image_hw=None, default=None):
    """A preset built with settings and a canvas for `image_hw`.

    Args:
      preset, weights: as `ctjax.trackers.presets.build`.
      settings: (key, value text) pairs (see `apply_settings`).
      image_hw: the frames' (height, width), or None to keep the config's canvas.
      default: the preset's default build, if already made (saves reading weights again).

    Returns:
      A `BuiltTracker` (the default build itself when nothing changes).

    Raises:
      ValueError: what `presets.build` raises (unknown preset, bad weights).
      SettingError: what `apply_settings` raises; a preset that takes no config while
        settings are given.
    """
    from ctjax.trackers import presets

    default = default or presets.build(preset, weights=weights)
    config = tracker_config(default.config, settings, image_hw)
    if config is default.config:
        return default
    try:
        return presets.build(preset, weights=weights, config=config)
    except TypeError as e:
        if "config" not in str(e):
            raise
        raise SettingError(f"tracker preset {preset!r} takes no config, so --set cannot change "
                           "it") from None
