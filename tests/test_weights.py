"""Tests of ctjax.models.weights: real weight files against reference outputs, and bad files.

Golden values come from outside this code: PAPER.md section 3 (activations of the released
CF_VGGM.mat computed with MatConvNet semantics) and SOURCES.md (EfficientNet-Lite0 ImageNet
probabilities computed with torch).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from conftest import need_data
from ctjax import paths
from ctjax.models import (MODEL_CONFIGS, WeightFileError, build_module, load_efficientnet_lite0,
                          load_matconvnet_simplenn, normalize, param_count,
                          write_matconvnet_simplenn)
from ctjax.models.vggm import conv_shapes

# PAPER.md section 3: layer -> (shape, mean, std) on the synthetic input minus averageImage.
REFERENCE_ACTIVATIONS = {
    "conv1_raw": ((109, 109, 12), -3.335362, 128.130823),
    "conv1": ((109, 109, 12), 11.122436, 17.832890),      # norm1
    "pool1": ((54, 54, 12), 13.489183, 19.225736),
    "conv2": ((26, 26, 32), 1.946484, 3.339908),          # norm2
    "pool2": ((13, 13, 32), 3.163382, 3.953989),
    "conv3": ((13, 13, 64), 1.309826, 1.705252),          # relu3
    "conv4": ((13, 13, 64), 0.479397, 0.543248),          # relu4
    "conv5": ((13, 13, 64), 0.036465, 0.090354),          # relu5
}


@pytest.fixture(scope="module")
def student():
    return load_matconvnet_simplenn(need_data(paths.released_student))


def _effnet_file():
    return need_data(paths.weights_file, "efficientnet_lite0_imagenet_torch_layout.npz")


def synthetic_image():
    """PAPER.md section 3: I[i, j, c] = 128 + 100 sin(0.05 i + 0.07 j + c), 224x224 RGB."""
    i, j, c = np.meshgrid(np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    return 128.0 + 100.0 * np.sin(0.05 * i + 0.07 * j + c)


def random_vggm_variables(widths, seed=0):
    rng = np.random.default_rng(seed)
    return {"params": {name: {"kernel": rng.normal(0, 0.05, shape).astype(np.float32),
                              "bias": rng.normal(0, 0.1, shape[-1]).astype(np.float32)}
                       for name, shape in conv_shapes(widths).items()}}


# ----------------------------------------------------------------------------- real files

@pytest.mark.parametrize("conv1_impl", ["direct", "space_to_depth"])
def test_released_student_reproduces_reference_activations(student, conv1_impl):
    assert student.config.name == "cf_vggm_r64"
    assert param_count(student.variables) == 103_760
    x = normalize(synthetic_image()[None], student.preprocessing)
    module = build_module(student.config).clone(conv1_impl=conv1_impl)
    out = jax.jit(lambda v, x: module.apply(v, x, capture_raw=True))(student.variables, x)
    for layer, (shape, mean, std) in REFERENCE_ACTIVATIONS.items():
        feats = np.asarray(out[layer][0], np.float64)
        assert feats.shape == shape, layer
        np.testing.assert_allclose(feats.mean(), mean, rtol=1e-4, err_msg=layer)
        np.testing.assert_allclose(feats.std(), std, rtol=1e-4, err_msg=layer)


def test_released_student_preprocessing(student):
    prep = student.preprocessing
    assert prep.mean.shape == (224, 224, 3) and prep.std is None and prep.input_scale == 1.0
    np.testing.assert_allclose(prep.mean.mean(axis=(0, 1)), [123.659, 116.766, 103.932], atol=1e-3)
    assert student.source.endswith("CF_VGGM.mat")


def imagenet_probabilities(model, image):
    from PIL import Image  # a declared dependency; SOURCES.md's reference used PIL bilinear
    crop = np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR))
    module = build_module(model.config)
    logits = jax.jit(lambda v, x: module.apply(v, x, stages=("logits",))["logits"])(
        model.variables, normalize(crop[None], model.preprocessing))
    return np.asarray(jax.nn.softmax(logits[0]))


def test_efficientnet_lite0_reproduces_reference_predictions():
    skimage_data = pytest.importorskip("skimage.data")
    model = load_efficientnet_lite0(_effnet_file(), include_head=True)
    assert model.config.name == "efficientnet_lite0_classifier"
    assert set(model.variables) == {"params", "batch_stats"}
    cat = imagenet_probabilities(model, skimage_data.chelsea())
    assert list(np.argsort(-cat)[:3]) == [285, 282, 281]       # Egyptian, tiger, tabby cat
    np.testing.assert_allclose(cat[[285, 282, 281]], [0.799, 0.084, 0.083], atol=2e-3)
    coffee = imagenet_probabilities(model, skimage_data.coffee())
    assert list(np.argsort(-coffee)[:2]) == [967, 968]         # espresso, cup
    np.testing.assert_allclose(coffee[[967, 968]], [0.86, 0.10], atol=5e-3)


def test_efficientnet_trunk_loads_without_head():
    model = load_efficientnet_lite0(_effnet_file())
    assert model.config.name == "efficientnet_lite0"
    assert "head" not in model.variables["params"]
    assert param_count(model.variables) == 2_958_848
    np.testing.assert_allclose(model.preprocessing.std, [0.229, 0.224, 0.225])
    # The fast depthwise form gives XLA's grouped-conv result on real weights.
    x = jax.random.normal(jax.random.key(0), (1, 75, 66, 3))
    module = build_module(model.config)
    fast = jax.jit(lambda v, x: module.apply(v, x, stages=("stride8",)))(model.variables, x)
    grouped = module.clone(depthwise_impl="grouped")
    ref = jax.jit(lambda v, x: grouped.apply(v, x, stages=("stride8",)))(model.variables, x)
    np.testing.assert_allclose(fast["stride8"], ref["stride8"], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- writer round trip

def test_write_then_load_round_trip(tmp_path):
    widths = (5, 7, 9, 9, 11)
    variables = random_vggm_variables(widths)
    mean = np.random.default_rng(1).uniform(90, 130, (224, 224, 3))
    loaded = load_matconvnet_simplenn(
        write_matconvnet_simplenn(tmp_path / "small.mat", variables, mean_image=mean))
    assert loaded.config.name == "vggm_w5-7-9-9-11" and loaded.config.widths == widths
    for name, p in variables["params"].items():
        np.testing.assert_array_equal(loaded.variables["params"][name]["kernel"], p["kernel"])
        np.testing.assert_array_equal(loaded.variables["params"][name]["bias"], p["bias"])
    np.testing.assert_allclose(loaded.preprocessing.mean, mean, rtol=1e-6)


def test_vggm_2048_shaped_file_with_fc_layers_loads_and_runs(tmp_path):
    # Laid out like MatConvNet's imagenet-vgg-m-2048.mat: top-level layers/meta, full VGG-M
    # widths, pool5 + fc6..fc8 + softmax after relu5 (small fc widths to keep the file small).
    variables = random_vggm_variables((96, 256, 512, 512, 512), seed=2)
    path = write_matconvnet_simplenn(tmp_path / "imagenet-vgg-m-2048.mat", variables,
                                     mean_image=np.array([123.68, 116.78, 103.94]),
                                     with_fc=True, top_level=True)
    raw = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    assert [l.name for l in raw["layers"]][13:] == ["relu5", "pool5", "fc6", "relu6", "fc7",
                                                     "relu7", "fc8", "prob"]
    loaded = load_matconvnet_simplenn(path)
    assert loaded.config.name == "vggm"
    assert param_count(loaded.variables) == 6_528_640
    assert loaded.preprocessing.mean.shape == (3,)
    images = np.random.default_rng(3).integers(0, 256, (1, 200, 200, 3), np.uint8)
    x = normalize(images, loaded.preprocessing)
    module = build_module(loaded.config)
    out = jax.jit(lambda v, x: module.apply(v, x, stages=("conv1", "conv5")))(loaded.variables, x)
    expected = jax.jit(lambda v, x: module.apply(v, x, stages=("conv5",)))(
        {"params": jax.tree_util.tree_map(jnp.asarray, variables["params"])}, x)
    assert out["conv1"].shape == (1, 97, 97, 96) and out["conv5"].shape == (1, 11, 11, 512)
    np.testing.assert_allclose(out["conv5"], expected["conv5"], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- bad files

def test_missing_file(tmp_path):
    with pytest.raises(WeightFileError, match="not found"):
        load_matconvnet_simplenn(tmp_path / "nope.mat")
    with pytest.raises(WeightFileError, match="not found"):
        load_efficientnet_lite0(tmp_path / "nope.npz")


def test_default_efficientnet_path_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    with pytest.raises(WeightFileError, match=paths.ENV_VAR):
        load_efficientnet_lite0()


def test_corrupt_and_truncated_files(tmp_path):
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(WeightFileError, match="not a readable MATLAB .mat file"):
        load_matconvnet_simplenn(garbage)
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(need_data(paths.released_student).read_bytes()[:400_000])
    with pytest.raises(WeightFileError, match="truncated or corrupt"):
        load_matconvnet_simplenn(truncated)
    npz = tmp_path / "truncated.npz"
    npz.write_bytes(_effnet_file()
                    .read_bytes()[:100_000])
    with pytest.raises(WeightFileError, match="not a readable .npz"):
        load_efficientnet_lite0(npz)


def test_not_a_matconvnet_file(tmp_path):
    other = tmp_path / "other.mat"
    scipy.io.savemat(other, {"weights": np.ones(3)})
    with pytest.raises(WeightFileError, match=r"not a MatConvNet simplenn file.*weights"):
        load_matconvnet_simplenn(other)


def write_edited(tmp_path, edit):
    """Writes a valid small file, then rewrites it with `edit(layers)` applied."""
    path = write_matconvnet_simplenn(tmp_path / "ok.mat", random_vggm_variables((4, 6, 8, 8, 8)),
                                     mean_image=np.zeros(3))
    contents = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    layers = list(contents["net"]["layers"][0, 0].ravel())
    layers = edit(layers)
    cell = np.empty((1, len(layers)), dtype=object)
    for i, layer in enumerate(layers):
        cell[0, i] = layer
    net = contents["net"].copy()
    net["layers"][0, 0] = cell
    scipy.io.savemat(tmp_path / "edited.mat", {"net": net})
    return tmp_path / "edited.mat"


def test_missing_layer(tmp_path):
    path = write_edited(tmp_path, lambda layers: layers[:8] + layers[10:])  # drop conv3+relu3
    with pytest.raises(WeightFileError,
                       match=r"layer #9 \(conv4, expected conv3\).*kernel shape"):
        load_matconvnet_simplenn(path)
    path = write_edited(tmp_path, lambda layers: layers[:6] + layers[7:])   # drop norm2
    with pytest.raises(WeightFileError,
                       match=r"layer #7 \(pool2, expected lrn\): expected a 'lrn' layer"):
        load_matconvnet_simplenn(path)
    path = write_edited(tmp_path, lambda layers: layers[:12])               # stops at relu4
    with pytest.raises(WeightFileError, match="only 12 layers.*missing at the end: conv5 relu"):
        load_matconvnet_simplenn(path)


def test_wrong_layer_shapes_and_hyperparameters(tmp_path):
    def wrong_kernel(layers):
        weights = layers[4]["weights"][0, 0]
        weights[0, 0] = np.zeros((3, 3, 4, 6), np.float32)   # conv2 must be 5x5
        return layers
    with pytest.raises(WeightFileError, match=r"conv2.*kernel shape \(3, 3, 4, 6\) != \(5, 5, 4"):
        load_matconvnet_simplenn(write_edited(tmp_path, wrong_kernel))

    def wrong_bias(layers):
        layers[8]["weights"][0, 0][0, 1] = np.zeros((7, 1), np.float32)
        return layers
    with pytest.raises(WeightFileError, match=r"conv3.*bias shape \(7,\) != \(8,\)"):
        load_matconvnet_simplenn(write_edited(tmp_path, wrong_bias))

    def wrong_stride(layers):
        layers[0]["stride"][0, 0] = np.array([[4.0, 4.0]])
        return layers
    with pytest.raises(WeightFileError, match=r"conv1.*stride \[4, 4\] != VGG-M's 2"):
        load_matconvnet_simplenn(write_edited(tmp_path, wrong_stride))

    def caffe_lrn(layers):
        layers[2]["param"][0, 0] = np.array([[5.0, 1.0, 2e-5, 0.75]])
        return layers
    with pytest.raises(WeightFileError, match="LRN parameters"):
        load_matconvnet_simplenn(write_edited(tmp_path, caffe_lrn))


def test_efficientnet_npz_with_missing_or_misshapen_array(tmp_path):
    source = np.load(_effnet_file())
    state = {k: source[k] for k in source.files}
    missing = dict(state)
    del missing["_blocks.7._depthwise_conv.weight"]
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(WeightFileError, match=r"missing array '_blocks.7._depthwise_conv.weight'"):
        load_efficientnet_lite0(tmp_path / "missing.npz")
    wrong = dict(state)
    wrong["_blocks.3._project_conv.weight"] = np.zeros((40, 144, 3, 3), np.float32)
    np.savez(tmp_path / "wrong.npz", **wrong)
    with pytest.raises(WeightFileError, match=r"_blocks.3._project_conv.weight.*expected"):
        load_efficientnet_lite0(tmp_path / "wrong.npz")
