"""Tests for ctjax.distill.losses: grid alignment, fidelity and the DCF tracking loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ctjax.distill import losses
from ctjax.models import registry
from ctjax.ops import fourier

STUDENT = registry.MODEL_CONFIGS["cf_vggm_r64"]
TEACHER = registry.MODEL_CONFIGS["efficientnet_lite0"]


def test_interpolation_matrix_rows_sum_to_one_and_identity_on_same_grid():
    m = losses.interpolation_matrix(7, 3.0, 2.0, 9, 1.0, 2.0)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
    # Cell i of the output is centred on pixel 3 + 2i = input cell i + 1 exactly.
    np.testing.assert_allclose(m, np.eye(9)[1:8], atol=1e-6)
    np.testing.assert_allclose(losses.interpolation_matrix(5, 0.0, 4.0, 5, 0.0, 4.0), np.eye(5))


@pytest.mark.parametrize("student_stage, teacher_stage", [("conv1", "stride2"), ("conv3", "stride8"),
                                                          ("conv5", "stride16")])
def test_alignment_samples_teacher_at_student_cell_centres(student_stage, teacher_stage):
    """A teacher map whose value is its cell's centre pixel becomes, after alignment, the
    student's cell-centre pixel (exactly, where no border clamping happens)."""
    hw = (96, 96)
    t_hw = registry.output_hw(TEACHER, teacher_stage, hw)
    t_off = registry.stage_offsets(TEACHER, teacher_stage, hw)
    t_stride = registry.stage_info(TEACHER, teacher_stage).stride
    rows = t_off[0] + t_stride * np.arange(t_hw[0])
    cols = t_off[1] + t_stride * np.arange(t_hw[1])
    teacher = np.stack(np.broadcast_arrays(rows[:, None], cols[None, :]), -1)[None].astype(np.float32)
    alignment = losses.grid_alignment(STUDENT, student_stage, TEACHER, teacher_stage, hw)
    out = np.asarray(losses.align_to_grid(jnp.asarray(teacher), alignment))[0]

    s_hw = registry.output_hw(STUDENT, student_stage, hw)
    s_off = registry.stage_offsets(STUDENT, student_stage, hw)
    s_stride = registry.stage_info(STUDENT, student_stage).stride
    assert out.shape == (*s_hw, 2)
    centres = s_off[0] + s_stride * np.arange(s_hw[0])
    expected = np.clip(centres, rows[0], rows[-1])  # beyond the teacher's last cell: clamped
    np.testing.assert_allclose(out[:, 0, 0], expected, atol=1e-4)
    np.testing.assert_allclose(out[0, :, 1], np.clip(s_off[1] + s_stride * np.arange(s_hw[1]),
                                                     cols[0], cols[-1]), atol=1e-4)


def test_fidelity_zero_for_identical_features_with_identity_adapter():
    rng = np.random.default_rng(0)
    feats = jnp.asarray(rng.normal(size=(3, 5, 6, 4)), jnp.float32)
    identity = {"kernel": jnp.eye(4), "bias": jnp.zeros(4)}
    loss = losses.feature_fidelity(feats, feats, identity, scale=2.0)
    assert loss.shape == (3,)
    np.testing.assert_allclose(loss, 0.0, atol=1e-12)
    other = feats.at[1].add(1.0)
    loss = losses.feature_fidelity(other, feats, identity, scale=2.0)
    np.testing.assert_allclose(loss, [0.0, 0.5, 0.0], atol=1e-6)  # only example 1, 1²/scale


def test_fidelity_normalisation_makes_a_zero_adapter_score_one_on_every_layer():
    rng = np.random.default_rng(1)
    zero = {"kernel": jnp.zeros((3, 8)), "bias": jnp.zeros(8)}
    for magnitude in (1e-2, 1.0, 1e3):  # layers of very different scale weigh the same
        teacher = jnp.asarray(magnitude * rng.normal(size=(4, 6, 6, 8)), jnp.float32)
        student = jnp.asarray(rng.normal(size=(4, 6, 6, 3)), jnp.float32)
        scale = losses.teacher_scale(teacher)
        loss = losses.feature_fidelity(student, teacher, zero, scale=scale)
        np.testing.assert_allclose(jnp.mean(loss), 1.0, rtol=1e-5)


def test_fidelity_gradients_reach_student_and_adapter_but_not_teacher():
    rng = np.random.default_rng(2)
    s = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(2, 4, 4, 5)), jnp.float32)
    adapter = losses.init_adapter(jax.random.PRNGKey(0), 3, 5)
    fn = lambda s, t, a: jnp.sum(losses.feature_fidelity(s, t, a, scale=1.5))
    gs, gt, ga = jax.grad(fn, argnums=(0, 1, 2))(s, t, adapter)
    assert np.all(np.isfinite(gs)) and np.abs(gs).max() > 0
    assert np.abs(ga["kernel"]).max() > 0
    np.testing.assert_array_equal(gt, 0.0)


def test_fidelity_losses_per_layer_and_per_example():
    rng = np.random.default_rng(3)
    student = {"conv1": jnp.asarray(rng.normal(size=(2, 7, 7, 3)), jnp.float32),
               "conv5": jnp.asarray(rng.normal(size=(2, 3, 3, 4)), jnp.float32)}
    teacher = {"stride2": jnp.asarray(rng.normal(size=(2, 8, 8, 6)), jnp.float32),
               "stride16": jnp.asarray(rng.normal(size=(2, 2, 2, 5)), jnp.float32)}
    pairs = (losses.LayerPair("conv1", "stride2"), losses.LayerPair("conv5", "stride16"))
    alignments = {"conv1": losses.GridAlignment(np.eye(8)[:7], np.eye(8)[:7]),
                  "conv5": losses.GridAlignment(np.full((3, 2), 0.5), np.full((3, 2), 0.5))}
    targets = losses.teacher_targets(teacher, pairs=pairs, alignments=alignments)
    assert targets["conv1"].shape == (2, 7, 7, 6) and targets["conv5"].shape == (2, 3, 3, 5)
    adapters = {"conv1": losses.init_adapter(jax.random.PRNGKey(1), 3, 6),
                "conv5": losses.init_adapter(jax.random.PRNGKey(2), 4, 5)}
    out = losses.fidelity_losses(student, targets, adapters, scales={"conv1": 1.0, "conv5": 1.0})
    assert set(out) == {"conv1", "conv5"} and all(v.shape == (2,) for v in out.values())
    # Example 0 alone gives the same numbers: no mixing across the batch.
    one = losses.fidelity_losses({k: v[:1] for k, v in student.items()},
                                 {k: v[:1] for k, v in targets.items()}, adapters,
                                 scales={"conv1": 1.0, "conv5": 1.0})
    np.testing.assert_allclose(one["conv1"], out["conv1"][:1], rtol=1e-5)


def test_shifted_label_matches_gaussian_label_and_moves_its_peak():
    base = losses.shifted_gaussian_label((9, 8), 1.3, jnp.zeros((1, 2)))
    np.testing.assert_allclose(base[0], fourier.gaussian_label((9, 8), 1.3), atol=1e-6)
    moved = losses.shifted_gaussian_label((9, 8), 1.3, jnp.asarray([[2.0, -3.0]]))
    np.testing.assert_allclose(moved[0], np.roll(np.asarray(base[0]), (2, -3), axis=(0, 1)),
                               atol=1e-6)


def _features(seed, shape=(2, 12, 12, 6)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("unit", [True, False])
def test_tracking_loss_near_zero_on_identical_and_on_shifted_search(unit):
    """With a tiny λ the filter reproduces its own label, so an identical search patch scores
    ~0, and a circularly shifted one scores ~0 against the label moved by the same shift."""
    x = _features(0)
    sigma = 1.5
    label0 = losses.shifted_gaussian_label((12, 12), sigma, jnp.zeros((2, 2)))
    same = losses.dcf_tracking_loss(x, x, label0, sigma=sigma, lam=1e-7, unit=unit)
    assert same.shape == (2,)
    np.testing.assert_allclose(same, 0.0, atol=1e-3)

    shift = np.array([[3, -2], [-1, 4]])
    z = jnp.stack([jnp.roll(x[i], tuple(shift[i]), axis=(0, 1)) for i in range(2)])
    label = losses.shifted_gaussian_label((12, 12), sigma, jnp.asarray(shift, jnp.float32))
    moved = losses.dcf_tracking_loss(x, z, label, sigma=sigma, lam=1e-7, unit=unit)
    np.testing.assert_allclose(moved, 0.0, atol=1e-3)
    wrong = losses.dcf_tracking_loss(x, z, label0, sigma=sigma, lam=1e-7, unit=unit)
    assert np.all(wrong > 0.5)  # scored against the unmoved label the same response is bad


def test_tracking_loss_is_one_for_a_zero_response_and_scale_invariant_with_unit_energy():
    x = _features(1)
    label = losses.shifted_gaussian_label((12, 12), 1.0, jnp.zeros((2, 2)))
    zero = losses.dcf_tracking_loss(x, jnp.zeros_like(x), label, sigma=1.0)
    np.testing.assert_allclose(zero, 1.0, atol=1e-6)
    z = _features(2)
    a = losses.dcf_tracking_loss(x, z, label, sigma=1.0)
    b = losses.dcf_tracking_loss(100.0 * x, 0.01 * z, label, sigma=1.0)
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_tracking_loss_gradients_match_finite_differences_in_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        x = jnp.asarray(rng.normal(size=(1, 6, 7, 3)))
        z = jnp.asarray(rng.normal(size=(1, 6, 7, 3)))
        label = losses.shifted_gaussian_label((6, 7), 1.0, jnp.asarray([[1.0, 0.0]]))
        fn = lambda x, z: losses.dcf_tracking_loss(x, z, label, sigma=1.0, lam=1e-2,
                                                   window=True)[0]
        check_grads(fn, (x, z), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_tracking_losses_per_stage_with_stride_scaled_shift():
    x = {"a": _features(5, (2, 8, 8, 3)), "b": _features(6, (2, 4, 4, 3))}
    shift = jnp.asarray([[16.0, 0.0], [0.0, -16.0]])  # crop pixels
    out = losses.tracking_losses(x, x, shift, stages=("a", "b"), strides={"a": 4, "b": 16},
                                 sigmas={"a": 1.0, "b": 0.5})
    assert set(out) == {"a", "b"} and all(v.shape == (2,) for v in out.values())
    assert np.all(np.isfinite(np.asarray(out["a"])))
    # Identical crops but the label says the target moved: the loss cannot be ~0.
    assert np.all(np.asarray(out["b"]) > 0.5)
