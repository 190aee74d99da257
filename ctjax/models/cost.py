"""Analytic multiply-accumulate (MAC) counts of the conv layers, for benchmarks and reports.

One MAC per kernel tap per output value: a conv with output (H', W', C_out) and kernel
(kh, kw, C_in / groups) costs H'·W'·C_out·kh·kw·C_in/groups MACs (FLOPs ≈ 2 × MACs). Biases,
activations, LRN, BatchNorm (foldable into the conv) and pooling are not counted, as in the
paper's comparison (PAPER.md section 3: VGG-M conv1-5 1.58 GMAC, CF-VGGM 0.043 GMAC at 224x224).
The EfficientNet classifier's fc layer is counted with the head.
"""

from __future__ import annotations

import math
from typing import Sequence

from ctjax.models import efficientnet, vggm
from ctjax.models.geometry import SpatialOp, op_output_size
from ctjax.models.registry import ModelConfig, stage_names
from ctjax.models.vggm import resolve_stages


def _conv(hw, op: SpatialOp, cin: int, cout: int, groups: int = 1):
    out = tuple(op_output_size(n, op) for n in hw)
    return out, math.prod(out) * cout * op.kernel ** 2 * (cin // groups)


def _vggm_macs(widths, hw, last: str) -> int:
    total, cin = 0, 3
    convs = dict(zip(("conv1", "conv2", "conv3", "conv4", "conv5"), widths))
    for name, op in vggm.LAYERS:
        if name in convs:
            hw, macs = _conv(hw, op, cin, convs[name])
            total, cin = total + macs, convs[name]
        else:
            hw = tuple(op_output_size(n, op) for n in hw)
        if name == last:
            break
    return total


def _efficientnet_macs(hw, last: str) -> int:
    pointwise = SpatialOp(1, 1, (0, 0))
    hw, total = _conv(hw, efficientnet.STEM, 3, efficientnet.STEM_WIDTH)
    for i, b in enumerate(efficientnet.BLOCKS):
        hidden = b.cin * b.expand
        total += _conv(hw, pointwise, b.cin, hidden)[1] if b.expand != 1 else 0
        hw, macs = _conv(hw, SpatialOp(b.kernel, b.stride, None), hidden, hidden, groups=hidden)
        total += macs + _conv(hw, pointwise, hidden, b.cout)[1]
        if efficientnet.STAGE_BLOCKS.get(last) == i:
            return total
    total += _conv(hw, pointwise, efficientnet.BLOCKS[-1].cout, efficientnet.HEAD_WIDTH)[1]
    return total + efficientnet.HEAD_WIDTH * 1000


def conv_macs(config: ModelConfig, input_hw: tuple[int, int], *,
              stages: Sequence[str] | None = None) -> int:
    """MACs of one forward pass (batch 1) up to the deepest of `stages` (default: all stages).

    Args:
        config: the model.
        input_hw: input (H, W).
        stages: as in the module's `__call__`; only the layers needed for them are counted.

    Returns:
        The MAC count (int).
    """
    last = resolve_stages(stages, stage_names(config))[-1]
    hw = tuple(int(n) for n in input_hw)
    if config.family == "vggm":
        return _vggm_macs(config.widths, hw, last)
    return _efficientnet_macs(hw, last)
