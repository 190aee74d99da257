"""Tests for ctjax.features: pooling and normalisation against NumPy, the extractors'
contract, and that tracking and training see the same CNN features of a real frame."""

import jax
import jax.numpy as jnp
import numpy as np

from ctjax.boxes import xywh_to_center_size
from ctjax.data import sequences
from ctjax.distill import losses
from ctjax.features import cnn
from ctjax.features.composite import CompositeExtractor
from ctjax.features.gradhist import GradientHistogramExtractor
from ctjax.models import preprocessing, registry
from ctjax.models.student import load_student
from ctjax.models.weights import LoadedModel
from ctjax.ops import crop


def test_avg_pool_and_normalize_energy_match_numpy():
    x = np.random.default_rng(0).normal(size=(2, 9, 7, 3)).astype(np.float32)
    ref = x[:, :8, :6].reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(cnn.avg_pool(jnp.asarray(x), 2), ref, rtol=1e-6)
    assert cnn.avg_pool(x, 1) is x
    out = np.asarray(cnn.normalize_energy(jnp.asarray(x * np.array([1, 10], np.float32)[:, None, None, None])))
    np.testing.assert_allclose(np.mean(out ** 2, axis=(1, 2, 3)), [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(out[0], x[0] / np.sqrt(np.mean(x[0] ** 2)), rtol=1e-5)


def test_the_tracking_loss_normalises_with_the_trackers_function():
    assert losses.normalize_energy is cnn.normalize_energy


def _real_patches(size=112):
    """Two search windows of the shipped demo clip (OTB Woman, frames 1 and 2) around the
    first ground-truth box, as the DCF tracker cuts them."""
    seq = sequences.demo_sequence()
    center, hw = xywh_to_center_size(jnp.asarray(seq.boxes[0], jnp.float32))
    window = 4.5 * jnp.sqrt(hw[0] * hw[1])
    return jnp.stack([crop.sample_window(crop.to_canvas(seq.frame(i), (720, 1280)), center,
                                         window, out=size) for i in range(2)])


def _training_path(loaded, patches, stage):
    """What distillation computes (`ctjax.distill.steps`): normalize -> apply -> the loss's
    unit energy."""
    module = registry.build_module(loaded.config)
    x = preprocessing.normalize(patches, loaded.preprocessing)
    out = module.apply(loaded.variables, x, stages=(stage,))[stage]
    return losses.normalize_energy(out)


def test_tracker_and_training_see_the_same_student_features_on_a_real_frame():
    loaded = load_student(None)  # the shipped student (a mean colour)
    patches = _real_patches()
    layers = (cnn.LayerSpec("conv1"), cnn.LayerSpec("conv5"))
    extractor = cnn.cnn_extractor(loaded, layers)
    tracked = extractor(cnn.cnn_params(loaded, patches.shape[1]), patches)
    for layer, feats in zip(layers, tracked):
        np.testing.assert_array_equal(feats, _training_path(loaded, patches, layer.name))


def test_mean_image_is_resized_alike_for_tracking_and_training():
    """A VGG-M-family model with a mean IMAGE (as CF_VGGM.mat has): the tracker resizes it
    once on the host (`cnn_params`), training per batch (`normalize`); same values."""
    config = registry.MODEL_CONFIGS["cf_vggm_r64"]
    variables = registry.init_variables(config, jax.random.PRNGKey(1), input_hw=(112, 112))
    mean = np.random.default_rng(1).uniform(90, 140, (224, 224, 3)).astype(np.float32)
    loaded = LoadedModel(config, variables, preprocessing.vggm_preprocessing(mean), "test")
    patches = _real_patches()
    extractor = cnn.cnn_extractor(loaded, (cnn.LayerSpec("conv3"),))
    (tracked,) = extractor(cnn.cnn_params(loaded, 112), patches)
    np.testing.assert_allclose(tracked, _training_path(loaded, patches, "conv3"), atol=1e-6)


def test_cnn_extractor_pools_and_reports_strides():
    loaded = load_student(None)
    extractor = cnn.cnn_extractor(loaded, (cnn.LayerSpec("conv1", pool=2), cnn.LayerSpec("conv5")))
    assert extractor.strides == (2, 16) and extractor.cell_strides == (4, 16)
    patches = _real_patches()
    conv1, conv5 = extractor(cnn.cnn_params(loaded, 112), patches)
    full = _training_path(loaded, patches, "conv1")
    assert conv1.shape[1] == full.shape[1] // 2
    np.testing.assert_allclose(np.mean(np.square(conv1), axis=(1, 2, 3)), 1.0, rtol=1e-4)


def test_gradhist_and_composite_contract():
    patches = _real_patches(64)
    grad = GradientHistogramExtractor()
    (maps,) = grad({}, patches)
    assert maps.shape == (2, 16, 16, 10) and grad.cell_strides == (4,)
    np.testing.assert_allclose(np.mean(np.square(maps), axis=(1, 2, 3)), 1.0, rtol=1e-4)
    both = CompositeExtractor((grad, grad))
    assert both.name == "gradhist+gradhist" and both.cell_strides == (4, 4)
    out = both(({}, {}), patches)
    assert len(out) == 2 and len(both.layers) == 2
    np.testing.assert_array_equal(out[1], maps)


def test_standardize_is_the_normalize_arithmetic():
    images = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    prep = preprocessing.imagenet_preprocessing()
    ref = (images.astype(np.float64) / 255.0 - np.array(preprocessing.IMAGENET_MEAN)) / \
        np.array(preprocessing.IMAGENET_STD)
    np.testing.assert_allclose(preprocessing.normalize(images, prep), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        preprocessing.standardize(images, mean=prep.mean, std=prep.std,
                                  input_scale=prep.input_scale),
        preprocessing.normalize(images, prep))
