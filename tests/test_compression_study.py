"""experiments/compression_study.py: the per-student columns of its table (no tracking run)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import compression_study as study  # noqa: E402

SHIPPED = ROOT / "ctjax" / "assets" / "students" / "ctjax_cfvggm_r64"


def test_shipped_student_cost_columns():
    row = study.student_cost("feco", str(SHIPPED))
    assert row["widths"] == [12, 32, 64, 64, 64]
    assert row["params"] == 103_760  # the released architecture's published count
    assert row["ratio"] == pytest.approx(6_528_640 / 103_760)
    assert row["size_bytes"] == sum(f.stat().st_size for f in SHIPPED.iterdir() if f.is_file())
    # conv1..conv5 at 217 px by hand: conv1 106x106 (7x7x3, stride 2), conv2 26x26 (5x5x12,
    # stride 2 after pool1), conv3-5 13x13 (3x3, inputs 32/64/64)
    hand = 106 ** 2 * 12 * 147 + 26 ** 2 * 32 * 25 * 12 + 13 ** 2 * 64 * 9 * (32 + 64 + 64)
    assert row["macs"] == hand


def test_random_row_has_no_file_and_parse_student_forms():
    assert study.student_cost("feco-random", "")["size_bytes"] is None
    assert study.parse_student("a=some/dir") == ("a", "feco", "some/dir")
    assert study.parse_student("b=feco-online:some/dir") == ("b", "feco-online", "some/dir")
    with pytest.raises(Exception, match="LABEL"):
        study.parse_student("nolabel")
