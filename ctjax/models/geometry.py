"""Receptive-field arithmetic: stride, cell-0 centre and output size of a chain of spatial ops.

Coordinates are 0-based input pixel indices with pixel centres at integers (pixel (0, 0) is
the top-left pixel, centred at 0.0). A stage's `offset` is the input coordinate of the
receptive-field centre of output cell 0, so cell `i` is centred at `offset + i * stride`.
Only ops that change the spatial grid (convs with kernel > 1 or stride > 1, pools) appear in a
chain; 1x1 stride-1 convs, activations, LRN and BatchNorm do not move anything.

Each op's padding is either fixed `(before, after)` (MatConvNet) or `None` for TensorFlow
'SAME', whose before-padding depends on the input size (see `layers.same_padding`), so a
chain with 'SAME' ops needs the actual input size to give exact offsets.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from ctjax.models.layers import same_padding


class SpatialOp(NamedTuple):
    """One spatial layer along one axis: square `kernel`, `stride`, `pad` (before, after) or
    `None` for TF 'SAME'."""
    kernel: int
    stride: int
    pad: tuple[int, int] | None


class ChainGeometry(NamedTuple):
    """Result of `trace` along one axis."""
    stride: int            # input pixels per output cell
    offset: float          # input coordinate of the centre of cell 0's receptive field
    receptive_field: int   # side of one cell's receptive field, in input pixels
    size: int | None       # output cells along the axis (None when no input size was given)


def op_output_size(size: int, op: SpatialOp) -> int:
    """Cells along one axis after `op` (floor rule, as MatConvNet, lax and TF all use)."""
    before, after = same_padding(size, op.kernel, op.stride) if op.pad is None else op.pad
    return (size + before + after - op.kernel) // op.stride + 1


def trace(ops: Sequence[SpatialOp], size: int | None = None) -> ChainGeometry:
    """Composes a chain of spatial ops along one axis.

    Args:
        ops: the chain, input side first.
        size: input size along the axis. Required when a op uses 'SAME' padding.

    Returns:
        `ChainGeometry`. Raises `ValueError` if the input is too small for the chain.
    """
    stride, offset, field = 1, 0.0, 1
    for op in ops:
        if op.pad is None:
            if size is None:
                raise ValueError("a chain with TF 'SAME' padding needs the input size")
            before = same_padding(size, op.kernel, op.stride)[0]
        else:
            before = op.pad[0]
        # The centre tap of the kernel on output cell 0 sits `(k-1)/2 - before` input cells in.
        offset += stride * ((op.kernel - 1) / 2 - before)
        field += (op.kernel - 1) * stride
        stride *= op.stride
        if size is not None:
            new_size = op_output_size(size, op)
            if new_size < 1:
                raise ValueError(f"input too small: a {op.kernel}x{op.kernel} stride-{op.stride} "
                                 f"layer gets {size} cells")
            size = new_size
    return ChainGeometry(stride=stride, offset=offset, receptive_field=field, size=size)
