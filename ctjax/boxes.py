"""Bounding boxes: the OTB convention, conversions, validation, overlap and centre error.

Conventions (every function here):

* A box is `x, y, w, h` in the **OTB convention**: `(x, y)` is the box's top-left pixel,
  **1-based** (the image's top-left pixel is `(1, 1)`), `w, h` its width and height in pixels.
  Arrays of boxes have shape `(..., 4)`, dtype float64 on return.
* Internal tracker coordinates are **0-based pixel centres**, ordered `(y, x)`:
  `cy = (y - 1) + (h - 1) / 2`, `cx = (x - 1) + (w - 1) / 2`; sizes are `(h, w)`. This is the
  OTB toolkit's centre `x + (w - 1) / 2` shifted by one so it indexes a NumPy array directly.
* Overlap follows the OTB toolkit's `calcRectInt`: a box covers the continuous interval
  `[x, x + w)` (likewise in y), so the intersection width of two boxes is
  `max(0, min(x1 + w1, x2 + w2) - max(x1, x2))`, and IoU = intersection / union.
* Image sizes are `(height, width)` in pixels.

Reference: Wu, Lim, Yang, "Object Tracking Benchmark", TPAMI 2015 (the OTB toolkit).
NumPy on the host. The two conversions `xywh_to_center_size` / `center_size_to_xywh` also
take JAX arrays (traced ones included) and then compute with `jax.numpy` in the input's dtype,
so the trackers' jitted steps use these same functions; this module never imports jax itself.
"""

from __future__ import annotations

import re

import numpy as np

_SEPARATORS = re.compile(r"[,\s]+")


class BoxError(ValueError):
    """A box is malformed: wrong shape, NaN/inf, non-positive size, or outside the image."""


def _as_boxes(box, what: str = "box") -> np.ndarray:
    """Returns `box` as a float64 array of shape (..., 4), or raises `BoxError`."""
    try:
        arr = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise BoxError(f"{what} must be numbers x,y,w,h, got {box!r}") from e
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise BoxError(f"{what} must have shape (..., 4) (x,y,w,h), got shape {arr.shape}")
    return arr


def _jax_numpy(*arrays):
    """`jax.numpy` if any argument is a JAX array or tracer, else None (NumPy)."""
    if any(type(a).__module__.split(".")[0] in ("jax", "jaxlib") for a in arrays):
        import jax.numpy as jnp  # already imported by whoever made the JAX array
        return jnp
    return None


def xywh_to_center_size(box) -> tuple[np.ndarray, np.ndarray]:
    """Splits OTB boxes into 0-based centres and sizes.

    Args:
      box: (..., 4) boxes x,y,w,h, 1-based top-left; a NumPy-convertible value (computed in
        float64) or a JAX array (computed with `jax.numpy` in its own dtype, jit-compatible).

    Returns:
      `(center_yx, size_hw)`, both (..., 2): the 0-based pixel centre `(cy, cx)` and the
      size `(h, w)`; float64 NumPy for NumPy input, JAX arrays for JAX input.
    """
    jnp = _jax_numpy(box)
    if jnp is None:
        b, xp = _as_boxes(box), np
    else:
        if box.ndim == 0 or box.shape[-1] != 4:
            raise BoxError(f"box must have shape (..., 4) (x,y,w,h), got shape {box.shape}")
        b, xp = box, jnp
    x, y, w, h = xp.moveaxis(b, -1, 0)
    center_yx = xp.stack([(y - 1.0) + (h - 1.0) / 2.0, (x - 1.0) + (w - 1.0) / 2.0], axis=-1)
    return center_yx, xp.stack([h, w], axis=-1)


def center_size_to_xywh(center_yx, size_hw) -> np.ndarray:
    """Inverse of `xywh_to_center_size`.

    Args:
      center_yx: (..., 2) 0-based pixel centres `(cy, cx)`.
      size_hw: (..., 2) sizes `(h, w)`; broadcasts against `center_yx`.

    Returns:
      (..., 4) boxes x,y,w,h, 1-based top-left: float64 NumPy, or a JAX array when either
      input is one (jit-compatible).
    """
    jnp = _jax_numpy(center_yx, size_hw)
    if jnp is None:
        c = np.asarray(center_yx, dtype=np.float64)
        s = np.asarray(size_hw, dtype=np.float64)
        xp = np
    else:
        c, s, xp = jnp.asarray(center_yx), jnp.asarray(size_hw), jnp
    if c.shape[-1:] != (2,) or s.shape[-1:] != (2,):
        raise BoxError(
            f"center_yx and size_hw must have shape (..., 2), got {c.shape} and {s.shape}")
    c, s = xp.broadcast_arrays(c, s)
    h, w = s[..., 0], s[..., 1]
    x = c[..., 1] + 1.0 - (w - 1.0) / 2.0
    y = c[..., 0] + 1.0 - (h - 1.0) / 2.0
    return xp.stack([x, y, w, h], axis=-1)


def validate_box(box, image_hw, *, what: str = "initial box", min_inside: float = 0.0) -> np.ndarray:
    """Checks one box against an image and returns it as float64.

    Args:
      box: 4 numbers x,y,w,h, 1-based top-left.
      image_hw: `(height, width)` of the image the box lives in.
      what: how the error message names the box (e.g. "initial box of Crossing").
      min_inside: the fraction of the box's area that must lie inside the image. 0 (the
        default, for ground truth, which may stick out past a border) refuses only boxes
        entirely outside; a box typed by a user (`ctjax track --box`) is held to 0.5, so
        `1,1,100000,100000` on a 352x288 frame is an error, not a tracker started on a
        window a thousand times the image.

    Returns:
      (4,) float64 box, unchanged.

    Raises:
      BoxError: the box is not 4 numbers, holds NaN/inf, has width or height <= 0, lies
        entirely outside the image, or has less than `min_inside` of its area inside it.
    """
    b = _as_boxes(box, what)
    if b.shape != (4,):
        raise BoxError(f"{what} must be one box of 4 numbers x,y,w,h, got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise BoxError(f"{what} {b.tolist()} holds NaN or inf")
    x, y, w, h = b
    if w <= 0 or h <= 0:
        raise BoxError(f"{what} {b.tolist()} has non-positive width or height (w={w:g}, h={h:g})")
    ih, iw = (float(v) for v in image_hw)
    # Image pixels cover [1, W + 1) x [1, H + 1) in the continuous OTB convention.
    inside_w = min(x + w, iw + 1.0) - max(x, 1.0)
    inside_h = min(y + h, ih + 1.0) - max(y, 1.0)
    if inside_w <= 0 or inside_h <= 0:
        raise BoxError(
            f"{what} {b.tolist()} lies entirely outside the {iw:g}x{ih:g} (WxH) image "
            "(boxes are x,y,w,h with 1-based top-left)")
    fraction = inside_w * inside_h / (w * h)
    if fraction < min_inside:
        raise BoxError(
            f"{what} {b.tolist()} lies mostly outside the {iw:g}x{ih:g} (WxH) image: "
            f"{100 * fraction:.2g}% of its area is inside, at least {100 * min_inside:g}% "
            "must be (boxes are x,y,w,h with 1-based top-left)")
    return b


def clip_box(box, image_hw, *, min_size=1.0, max_size=None) -> np.ndarray:
    """Keeps boxes' centres inside the image and their sizes within limits.

    Args:
      box: (..., 4) boxes x,y,w,h, 1-based top-left; must be finite.
      image_hw: `(height, width)` of the image.
      min_size: smallest allowed size, a scalar or `(h, w)`; must be positive.
      max_size: largest allowed size, a scalar or `(h, w)`; defaults to the image size.

    Returns:
      (..., 4) float64 boxes whose 0-based centre lies in `[0, H-1] x [0, W-1]` and whose
      `(h, w)` lies in `[min_size, max_size]` (the max wins if the limits cross).
    """
    b = _as_boxes(box)
    if not np.all(np.isfinite(b)):
        raise BoxError(f"clip_box got a box holding NaN or inf: {b.tolist()}")
    image_hw = np.asarray(image_hw, dtype=np.float64)
    lo = np.broadcast_to(np.asarray(min_size, dtype=np.float64), (2,))
    hi = image_hw if max_size is None else np.broadcast_to(np.asarray(max_size, np.float64), (2,))
    if np.any(lo <= 0):
        raise BoxError(f"min_size must be positive, got {min_size!r}")
    center, size = xywh_to_center_size(b)
    center = np.clip(center, 0.0, image_hw - 1.0)
    size = np.minimum(np.maximum(size, lo), hi)
    return center_size_to_xywh(center, size)


def iou(a, b) -> np.ndarray:
    """Intersection over union of boxes, as the OTB toolkit's `calcRectInt` computes it.

    Args:
      a: (..., 4) boxes x,y,w,h.
      b: (..., 4) boxes x,y,w,h; broadcasts against `a`.

    Returns:
      (...) float64 IoU in [0, 1]; NaN where either box holds NaN; 0 where either box has
      non-positive width or height.
    """
    a, b = np.broadcast_arrays(_as_boxes(a), _as_boxes(b))
    ax, ay, aw, ah = np.moveaxis(a, -1, 0)
    bx, by, bw, bh = np.moveaxis(b, -1, 0)
    iw = np.maximum(0.0, np.minimum(ax + aw, bx + bw) - np.maximum(ax, bx))
    ih = np.maximum(0.0, np.minimum(ay + ah, by + bh) - np.maximum(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    ok = (aw > 0) & (ah > 0) & (bw > 0) & (bh > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, inter / np.where(ok, union, 1.0), 0.0)
    # Rounding in x + w - x can push identical boxes to 1 + 1e-16, which would pass the
    # strict "> 1" success threshold; IoU is at most 1.
    out = np.minimum(out, 1.0)
    return np.where(np.isnan(a).any(-1) | np.isnan(b).any(-1), np.nan, out)


def center_error(a, b) -> np.ndarray:
    """Euclidean distance between box centres `x + (w - 1) / 2`, `y + (h - 1) / 2` (OTB).

    Args:
      a: (..., 4) boxes x,y,w,h.
      b: (..., 4) boxes x,y,w,h; broadcasts against `a`.

    Returns:
      (...) float64 distances in pixels; NaN where either box holds NaN.
    """
    ca, _ = xywh_to_center_size(a)
    cb, _ = xywh_to_center_size(b)
    return np.sqrt(np.sum((ca - cb) ** 2, axis=-1))


def parse_boxes(text: str, *, source: str = "box file") -> np.ndarray:
    """Parses a box file: one `x,y,w,h` per line, separated by commas, tabs or spaces.

    Trailing blank lines are ignored; a blank line before the last box is an error (it would
    shift every later box by one frame). `NaN` entries parse as NaN.

    Args:
      text: the file's contents.
      source: how error messages name the file.

    Returns:
      (N, 4) float64 boxes, one row per line.

    Raises:
      BoxError: a line does not hold exactly 4 numbers (the message names the line number).
    """
    lines = text.rstrip().splitlines()
    boxes = np.empty((len(lines), 4), dtype=np.float64)
    for i, line in enumerate(lines):
        fields = [f for f in _SEPARATORS.split(line.strip().lstrip("\ufeff")) if f]
        try:
            if len(fields) != 4:
                raise ValueError
            boxes[i] = [float(f) for f in fields]
        except ValueError:
            raise BoxError(
                f"{source}, line {i + 1}: expected 4 numbers x,y,w,h separated by commas, "
                f"tabs or spaces, got {line!r}") from None
    return boxes
