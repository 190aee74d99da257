"""Tests for ctjax.boxes: OTB conventions, conversions, validation, IoU and centre error."""

import numpy as np
import pytest

from ctjax import boxes


def test_center_size_matches_otb_centre_shifted_by_one():
    center, size = boxes.xywh_to_center_size([1, 1, 3, 5])
    # OTB centre x + (w - 1) / 2 = 2, y + (h - 1) / 2 = 3 (1-based) -> (2, 1) 0-based (y, x).
    np.testing.assert_array_equal(center, [2.0, 1.0])
    np.testing.assert_array_equal(size, [5.0, 3.0])
    assert center.dtype == np.float64


def test_conversion_round_trips_batched():
    rng = np.random.default_rng(0)
    b = np.concatenate([rng.uniform(-20, 300, (5, 7, 2)), rng.uniform(1, 80, (5, 7, 2))], -1)
    center, size = boxes.xywh_to_center_size(b)
    assert center.shape == size.shape == (5, 7, 2)
    np.testing.assert_allclose(boxes.center_size_to_xywh(center, size), b, atol=1e-12)
    c = rng.uniform(0, 100, (3, 2))
    s = rng.uniform(1, 50, (3, 2))
    c2, s2 = boxes.xywh_to_center_size(boxes.center_size_to_xywh(c, s))
    np.testing.assert_allclose(c2, c, atol=1e-12)
    np.testing.assert_allclose(s2, s, atol=1e-12)


def test_bad_shape_is_a_box_error():
    with pytest.raises(boxes.BoxError, match="shape"):
        boxes.xywh_to_center_size([1, 2, 3])
    with pytest.raises(boxes.BoxError, match="numbers"):
        boxes.iou(["a", 1, 2, 3], [1, 1, 1, 1])


def test_validate_box_accepts_and_returns_float64():
    b = boxes.validate_box([10, 20, 5, 6], (240, 360))
    assert b.dtype == np.float64 and b.tolist() == [10, 20, 5, 6]
    # Partly outside the image is allowed.
    boxes.validate_box([-3, -3, 5, 5], (240, 360))
    boxes.validate_box([360, 240, 5, 5], (240, 360))


@pytest.mark.parametrize("box, match", [
    ([1, 2, np.nan, 4], "NaN or inf"),
    ([1, 2, np.inf, 4], "NaN or inf"),
    ([1, 2, 0, 4], "non-positive width or height"),
    ([1, 2, 4, -1], "non-positive width or height"),
    ([361, 5, 10, 10], "entirely outside"),   # starts right of the last column (x = 360)
    ([-9, 5, 10, 10], "entirely outside"),    # ends at x = 0, left of the first column
    ([5, 241, 10, 10], "entirely outside"),
    ([1, 2, 3], "4 numbers|shape"),
    ([[1, 2, 3, 4]], "one box"),
])
def test_validate_box_errors_name_the_problem(box, match):
    with pytest.raises(boxes.BoxError, match=match) as e:
        boxes.validate_box(box, (240, 360), what="initial box of Crossing")
    assert isinstance(e.value, ValueError)
    if "shape" not in match:
        assert "initial box of Crossing" in str(e.value)


def test_clip_box_keeps_centre_in_image_and_size_in_limits():
    hw = (100, 200)
    out = boxes.clip_box([[-50, -50, 10, 10], [150, 50, 500, 0.2]], hw, min_size=2.0)
    center, size = boxes.xywh_to_center_size(out)
    np.testing.assert_array_equal(center[0], [0.0, 0.0])
    np.testing.assert_array_equal(size[0], [10.0, 10.0])
    np.testing.assert_array_equal(size[1], [2.0, 200.0])  # h raised to min, w capped at W
    assert 0 <= center[1, 1] <= 199 and 0 <= center[1, 0] <= 99
    inside = [20, 30, 10, 12]
    np.testing.assert_allclose(boxes.clip_box(inside, hw), inside)
    with pytest.raises(boxes.BoxError, match="NaN"):
        boxes.clip_box([np.nan, 1, 2, 3], hw)
    with pytest.raises(boxes.BoxError, match="min_size"):
        boxes.clip_box(inside, hw, min_size=0)


def test_iou_hand_computed():
    a = [1, 1, 10, 10]
    assert boxes.iou(a, a) == 1.0
    assert boxes.iou(a, [6, 1, 10, 10]) == pytest.approx(1 / 3)   # half overlap: 50 / 150
    assert boxes.iou(a, [6, 6, 10, 10]) == pytest.approx(25 / 175)
    assert boxes.iou(a, [11, 1, 10, 10]) == 0.0                    # touching, no shared pixel
    assert boxes.iou(a, [3, 3, 2, 2]) == pytest.approx(4 / 100)    # contained
    assert boxes.iou(a, [1, 1, 0, 10]) == 0.0
    assert np.isnan(boxes.iou(a, [np.nan] * 4))


def test_iou_of_identical_float_boxes_is_at_most_one():
    b = np.random.default_rng(3).uniform(1, 100, (1000, 4))
    overlap = boxes.iou(b, b)
    assert (overlap <= 1.0).all()
    np.testing.assert_allclose(overlap, 1.0, atol=1e-12)


def test_iou_matches_pixel_counting_for_integer_boxes():
    # Independent implementation: count the pixels each integer box covers (x .. x+w-1).
    rng = np.random.default_rng(1)
    grid_y, grid_x = np.mgrid[1:61, 1:61]
    for _ in range(50):
        a = np.concatenate([rng.integers(1, 30, 2), rng.integers(1, 30, 2)])
        b = np.concatenate([rng.integers(1, 30, 2), rng.integers(1, 30, 2)])
        ma = (grid_x >= a[0]) & (grid_x < a[0] + a[2]) & (grid_y >= a[1]) & (grid_y < a[1] + a[3])
        mb = (grid_x >= b[0]) & (grid_x < b[0] + b[2]) & (grid_y >= b[1]) & (grid_y < b[1] + b[3])
        expected = (ma & mb).sum() / (ma | mb).sum()
        assert boxes.iou(a, b) == pytest.approx(expected)


def test_iou_and_center_error_broadcast():
    a = np.array([[1, 1, 10, 10], [5, 5, 4, 4]], dtype=float)
    assert boxes.iou(a, a[0]).shape == (2,)
    err = boxes.center_error(a, a + [3, 4, 0, 0])
    np.testing.assert_allclose(err, [5.0, 5.0])
    # Centre x + (w-1)/2: a 10-wide box at x=1 and a 4-wide one at x=4 share centre 5.5.
    assert boxes.center_error([1, 1, 10, 10], [4, 4, 4, 4]) == 0.0


def test_parse_boxes_separators_nan_and_line_numbers():
    text = "1,2,3,4\n5\t6\t7\t8\n9 10  11 12\nNaN,NaN,NaN,NaN\n1, 2, 3, 4\r\n\n\n"
    b = boxes.parse_boxes(text)
    assert b.shape == (5, 4) and b.dtype == np.float64
    np.testing.assert_array_equal(b[2], [9, 10, 11, 12])
    assert np.isnan(b[3]).all()
    with pytest.raises(boxes.BoxError, match="line 2"):
        boxes.parse_boxes("1,2,3,4\n1,2,3\n")
    with pytest.raises(boxes.BoxError, match="line 2"):
        boxes.parse_boxes("1,2,3,4\n\n1,2,3,4\n")   # a blank line would shift later frames
    with pytest.raises(boxes.BoxError, match="line 1"):
        boxes.parse_boxes("1,2,x,4\n")


def test_conversions_accept_jax_arrays_under_jit_and_match_numpy():
    import jax
    import jax.numpy as jnp

    b = np.array([[10.0, 20.0, 31.0, 40.0], [1.5, 2.25, 7.0, 3.0]])
    center, size = jax.jit(boxes.xywh_to_center_size)(jnp.asarray(b, jnp.float32))
    assert isinstance(center, jax.Array) and center.dtype == jnp.float32
    ref_c, ref_s = boxes.xywh_to_center_size(b)  # float64 NumPy
    np.testing.assert_allclose(center, ref_c, rtol=1e-6)
    np.testing.assert_allclose(size, ref_s)
    back = jax.jit(boxes.center_size_to_xywh)(center, size)
    assert isinstance(back, jax.Array) and back.shape == (2, 4)
    np.testing.assert_allclose(back, b, rtol=1e-6)
    np.testing.assert_allclose(center[0], [20 - 1 + 39 / 2, 10 - 1 + 30 / 2])
    with pytest.raises(boxes.BoxError, match="shape"):
        boxes.xywh_to_center_size(jnp.ones(3))
