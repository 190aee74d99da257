"""Tests of ctjax.models architecture code: layers, modules, registry, geometry, MAC counts.

Weight files are tested in test_weights.py. Geometry is checked by probes independent of the
`geometry.trace` arithmetic: which input rows/columns a feature cell actually depends on.
"""

import math

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from ctjax.models import (MODEL_CONFIGS, VGGM, EfficientNetLite0, ModelConfig, Preprocessing,
                          build_module, config_for_widths, get_config, lrn, max_pool_matconvnet,
                          normalize, output_hw, param_count, stage_info, stage_names,
                          stage_offsets)
from ctjax.models.cost import conv_macs
from ctjax.models.layers import (depthwise_conv2d, matconvnet_padding, same_padding,
                                 space_to_depth_conv)
from ctjax.models.registry import init_variables, student_widths
from ctjax.models.vggm import conv_shapes

# Trainable parameters (BatchNorm statistics excluded). vggm / cf_vggm_r64 are PAPER.md section
# 3's numbers; EfficientNet-Lite0 with head is the published 4.65 M.
GOLDEN_PARAM_COUNTS = {
    "vggm": 6_528_640,
    "cf_vggm_r1": 6_528_640,
    "cf_vggm_r16": 411_040,
    "cf_vggm_r32": 207_872,
    "cf_vggm_r64": 103_760,
    "cf_vggm_r96": 69_002,
    "efficientnet_lite0": 2_958_848,
    "efficientnet_lite0_classifier": 4_652_008,
}


def abstract_variables(config, hw=(64, 64)):
    module = build_module(config)
    return jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *hw, 3), jnp.float32))


# ----------------------------------------------------------------------------- layers

def naive_lrn(x, size, kappa, alpha, beta):
    out = np.empty_like(x)
    channels = x.shape[-1]
    for k in range(channels):
        lo, hi = max(0, k - (size - 1) // 2), min(channels, k + size // 2 + 1)
        out[..., k] = x[..., k] / (kappa + alpha * np.sum(x[..., lo:hi] ** 2, axis=-1)) ** beta
    return out


@pytest.mark.parametrize("size,kappa,alpha,beta", [(5, 2.0, 1e-4, 0.75), (3, 1.0, 0.1, 0.5),
                                                   (4, 2.0, 0.01, 0.75)])
def test_lrn_matches_naive_matconvnet_formula(size, kappa, alpha, beta):
    x = np.random.default_rng(0).normal(0, 30, (2, 5, 4, 9)).astype(np.float64)
    got = lrn(jnp.asarray(x, jnp.float32), size=size, kappa=kappa, alpha=alpha, beta=beta)
    np.testing.assert_allclose(got, naive_lrn(x, size, kappa, alpha, beta), rtol=2e-6)


def test_lrn_alpha_is_not_divided_by_window():
    # One channel of value 10 among zeros: y = 10 / (2 + 1e-4 * 100) ** 0.75 (Caffe: 1e-4/5).
    x = jnp.zeros((1, 1, 1, 5)).at[..., 2].set(10.0)
    np.testing.assert_allclose(lrn(x)[0, 0, 0, 2], 10.0 / (2.0 + 1e-2) ** 0.75, rtol=1e-6)


def naive_max_pool(x, window, stride, pad):
    top, bottom, left, right = pad
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    ho = (padded.shape[1] - window) // stride + 1
    wo = (padded.shape[2] - window) // stride + 1
    out = np.empty((x.shape[0], ho, wo, x.shape[3]))
    for i in range(ho):
        for j in range(wo):
            out[:, i, j] = padded[:, i * stride:i * stride + window,
                                  j * stride:j * stride + window].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("hw,pad", [((109, 109), (0, 1, 0, 1)), ((26, 27), (0, 1, 0, 1)),
                                    ((10, 9), (1, 0, 2, 0))])
def test_max_pool_matches_naive_with_minus_inf_padding(hw, pad):
    # All-negative input: zero padding would leak zeros into border cells.
    x = -np.abs(np.random.default_rng(1).normal(1, 1, (1, *hw, 2))) - 0.1
    got = max_pool_matconvnet(jnp.asarray(x, jnp.float32), window=3, stride=2, pad=pad)
    np.testing.assert_allclose(got, naive_max_pool(x, 3, 2, pad), rtol=1e-6)
    assert got.shape[1:3] == {(109, 109): (54, 54)}.get(hw, got.shape[1:3])


def test_layer_gradients_under_jit():
    # reduce_window needs a concrete init value to stay differentiable inside jit.
    x = jax.random.normal(jax.random.key(0), (1, 9, 8, 6)) * 10
    for layer in (lrn, max_pool_matconvnet):
        grad = jax.jit(jax.grad(lambda x: jnp.sum(layer(x) ** 2)))(x)
        assert grad.shape == x.shape and bool(jnp.all(jnp.isfinite(grad)))
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.asarray(x), jnp.float64)
        jax.test_util.check_grads(lrn, (x64,), order=1, modes=["fwd", "rev"])
        jax.test_util.check_grads(max_pool_matconvnet, (x64,), order=1, modes=["fwd", "rev"])


def test_vggm_is_differentiable_in_its_parameters():
    config = config_for_widths((3, 4, 5, 5, 6))
    module = build_module(config)
    variables = init_variables(config, jax.random.key(0), input_hw=(40, 40))
    x = jax.random.normal(jax.random.key(1), (2, 40, 40, 3)) * 50
    loss = lambda v: sum(jnp.mean(f ** 2) for f in module.apply(v, x, stages=("conv1", "conv5"))
                         .values())
    grads = jax.jit(jax.grad(loss))(variables)
    norms = {k: float(jnp.linalg.norm(g["kernel"])) for k, g in grads["params"].items()}
    assert all(np.isfinite(n) and n > 0 for n in norms.values()), norms


def test_padding_helpers():
    assert matconvnet_padding(1) == ((1, 1), (1, 1))
    assert matconvnet_padding([0, 1, 0, 1]) == ((0, 1), (0, 1))
    with pytest.raises(ValueError, match="top bottom left right"):
        matconvnet_padding([1, 2])
    # TensorFlow 'SAME': extra pixel after; depends on parity with stride 2.
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(56, 5, 2) == (1, 2)
    assert same_padding(13, 5, 1) == (2, 2)


@pytest.mark.parametrize("hw,kernel,stride,padding", [
    ((9, 10), 3, 1, "SAME"), ((9, 10), 5, 2, "SAME"), ((12, 7), 3, 2, "SAME"),
    ((8, 8), 5, 2, ((1, 0), (2, 1)))])
def test_depthwise_conv_matches_grouped_conv(hw, kernel, stride, padding):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 6))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 1, 6))
    expected = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=6))(x, w)
    got = jax.jit(lambda x, w: depthwise_conv2d(x, w, stride=stride, padding=padding))(x, w)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="depthwise kernel"):
        depthwise_conv2d(x, w[..., :5], stride=stride)


@pytest.mark.parametrize("hw,kernel,stride", [((224, 224), 7, 2), ((25, 26), 7, 2),
                                               ((30, 31), 5, 3), ((9, 12), 4, 2)])
def test_space_to_depth_conv_matches_strided_conv(hw, kernel, stride):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))
    expected = jax.lax.conv_general_dilated(x, w, (stride, stride), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = jax.jit(lambda x, w: space_to_depth_conv(x, w, stride=stride))(x, w)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=5e-5)


# ----------------------------------------------------------------------------- VGG-M

def test_vggm_shapes_at_224_match_paper():
    module = VGGM(widths=(12, 32, 64, 64, 64))
    variables = abstract_variables(MODEL_CONFIGS["cf_vggm_r64"])
    out = jax.eval_shape(lambda v, x: module.apply(v, x), variables,
                         jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32))
    assert {k: v.shape for k, v in out.items()} == {
        "conv1": (2, 109, 109, 12), "pool1": (2, 54, 54, 12), "conv2": (2, 26, 26, 32),
        "pool2": (2, 13, 13, 32), "conv3": (2, 13, 13, 64), "conv4": (2, 13, 13, 64),
        "conv5": (2, 13, 13, 64)}


def test_vggm_param_names_and_shapes():
    params = abstract_variables(MODEL_CONFIGS["vggm"])["params"]
    assert {k: (v["kernel"].shape, v["bias"].shape) for k, v in params.items()} == {
        "conv1": ((7, 7, 3, 96), (96,)), "conv2": ((5, 5, 96, 256), (256,)),
        "conv3": ((3, 3, 256, 512), (512,)), "conv4": ((3, 3, 512, 512), (512,)),
        "conv5": ((3, 3, 512, 512), (512,))}


def test_vggm_stages_compute_only_what_is_needed():
    config = config_for_widths((4, 6, 8, 8, 8))
    module = build_module(config)
    rng = np.random.default_rng(0)
    variables = {"params": {name: {"kernel": rng.normal(0, 0.1, shape).astype(np.float32),
                                   "bias": rng.normal(0, 0.1, shape[-1]).astype(np.float32)}
                            for name, shape in conv_shapes(config.widths).items()}}
    x = jax.random.normal(jax.random.key(1), (1, 99, 99, 3)) * 50
    apply = jax.jit(module.apply, static_argnames=("stages", "capture_raw"))
    full = apply(variables, x)
    # Without conv4/conv5 parameters the call can only succeed if those layers are skipped.
    trimmed = {"params": {k: v for k, v in variables["params"].items()
                          if k not in ("conv4", "conv5")}}
    part = apply(trimmed, x, stages=("conv3", "conv1"))
    assert list(part) == ["conv1", "conv3"]
    np.testing.assert_allclose(part["conv3"], full["conv3"], rtol=1e-6)
    raw = apply(variables, x, stages=("conv2",), capture_raw=True)
    assert set(raw) == {"conv1_raw", "conv2_raw", "conv2"}
    np.testing.assert_allclose(lrn(jnp.maximum(raw["conv2_raw"], 0)), raw["conv2"], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown or empty stages"):
        module.apply(variables, x, stages=("relu5",))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        module.apply(variables, x[..., :2])
    with pytest.raises(ValueError, match="conv1_impl"):
        module.clone(conv1_impl="fft").apply(variables, x)


# ----------------------------------------------------------------------------- EfficientNet

def test_efficientnet_stage_shapes_and_head():
    variables = abstract_variables(MODEL_CONFIGS["efficientnet_lite0_classifier"])
    assert set(variables) == {"params", "batch_stats"}
    module = EfficientNetLite0(include_head=True)
    out = jax.eval_shape(lambda v, x: module.apply(v, x), variables,
                         jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    assert {k: v.shape for k, v in out.items()} == {
        "stride2": (1, 112, 112, 16), "stride4": (1, 56, 56, 24), "stride8": (1, 28, 28, 40),
        "stride16": (1, 14, 14, 112), "stride32": (1, 7, 7, 320), "logits": (1, 1000)}
    trunk = EfficientNetLite0()
    with pytest.raises(ValueError, match="include_head=True"):
        jax.eval_shape(lambda v, x: trunk.apply(v, x, stages=("logits",)), variables,
                       jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))


# ----------------------------------------------------------------------------- registry

def test_golden_param_counts():
    for name, config in MODEL_CONFIGS.items():
        assert param_count(abstract_variables(config)) == GOLDEN_PARAM_COUNTS[name], name


def test_every_config_has_a_golden_count():
    assert set(GOLDEN_PARAM_COUNTS) == set(MODEL_CONFIGS)


def test_init_variables_and_param_count():
    config = config_for_widths((2, 3, 4, 5, 6))
    variables = init_variables(config, jax.random.key(0), input_hw=(25, 25))
    expected = sum(math.prod(s) + s[-1] for s in conv_shapes(config.widths).values())
    assert param_count(variables) == param_count(variables["params"]) == expected
    with pytest.raises(ValueError):
        init_variables(config, jax.random.key(0), input_hw=(20, 25))  # too small for conv5


@pytest.mark.parametrize("name", ["vggm", "efficientnet_lite0_classifier"])
def test_init_variables_matches_module_init_structure_and_distribution(name):
    config = MODEL_CONFIGS[name]
    variables = init_variables(config, jax.random.key(0))
    reference = abstract_variables(config)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(reference)
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(variables),
                                 jax.tree_util.tree_leaves(reference)):
        assert got.shape == want.shape and got.dtype == want.dtype, path
        leaf = path[-1].key
        if leaf == "kernel":  # LeCun normal truncated at 2 sigma: std 1/sqrt(fan_in)
            fan_in = math.prod(got.shape[:-1])
            scaled = np.asarray(got) * math.sqrt(fan_in)
            assert np.abs(scaled).max() <= 2 / 0.8796 + 1e-4, path
            if got.size > 5000:
                assert abs(scaled.std() - 1.0) < 0.05, path
        else:
            np.testing.assert_array_equal(got, 1.0 if leaf in ("scale", "var") else 0.0)
    # Each kernel gets its own part of the random sample.
    firsts = [float(np.ravel(x)[0]) for path, x in jax.tree_util.tree_leaves_with_path(variables)
              if path[-1].key == "kernel"]
    assert len(set(firsts)) == len(firsts)
    # BatchNorm statistics are variables but not parameters.
    abstract = abstract_variables(MODEL_CONFIGS["efficientnet_lite0"])
    assert param_count(abstract) == param_count(abstract["params"]) < sum(
        math.prod(x.shape) for x in jax.tree_util.tree_leaves(abstract))


def test_student_widths_rounding_rule():
    assert MODEL_CONFIGS["cf_vggm_r16"].widths == (24, 64, 128, 128, 128)
    assert MODEL_CONFIGS["cf_vggm_r32"].widths == (17, 45, 91, 91, 91)
    assert MODEL_CONFIGS["cf_vggm_r64"].widths == (12, 32, 64, 64, 64)
    assert MODEL_CONFIGS["cf_vggm_r96"].widths == (10, 26, 52, 52, 52)
    assert MODEL_CONFIGS["cf_vggm_r1"].widths == MODEL_CONFIGS["vggm"].widths
    # The parameter ratio is about the nominal compression ratio.
    ratio = GOLDEN_PARAM_COUNTS["vggm"] / GOLDEN_PARAM_COUNTS["cf_vggm_r64"]
    assert abs(ratio - 62.9) < 0.05
    with pytest.raises(ValueError):
        student_widths(0.5)


def test_config_lookup_and_validation():
    assert config_for_widths((96, 256, 512, 512, 512)).name == "vggm"
    assert config_for_widths([12, 32, 64, 64, 64]).name == "cf_vggm_r64"
    assert config_for_widths((3, 4, 5, 6, 7)).name == "vggm_w3-4-5-6-7"
    with pytest.raises(KeyError, match="known"):
        get_config("vgg16")
    with pytest.raises(ValueError, match="5 positive widths"):
        ModelConfig("x", "vggm", (1, 2, 3))
    with pytest.raises(ValueError, match="unknown model family"):
        ModelConfig("x", "resnet", None)


# ----------------------------------------------------------------------------- geometry

VGGM_EXPECTED = {  # stage: (stride, offset, receptive field), hand-derived from PAPER.md section 2
    "conv1": (2, 3.0, 7), "pool1": (4, 5.0, 11), "conv2": (8, 9.0, 27), "pool2": (16, 17.0, 43),
    "conv3": (16, 17.0, 75), "conv4": (16, 17.0, 107), "conv5": (16, 17.0, 139)}
EFFICIENTNET_EXPECTED = {
    "stride2": (2, 1.0, 7, 16), "stride4": (4, 3.0, 19, 24), "stride8": (8, 7.0, 67, 40),
    "stride16": (16, 15.0, 339, 112), "stride32": (32, 31.0, 851, 320)}


def test_stage_info_tables():
    config = MODEL_CONFIGS["cf_vggm_r64"]
    for stage, (stride, offset, field) in VGGM_EXPECTED.items():
        channels = {"conv1": 12, "pool1": 12, "conv2": 32, "pool2": 32}.get(stage, 64)
        assert stage_info(config, stage) == (stride, offset, channels, field), stage
    assert stage_info(MODEL_CONFIGS["vggm"], "conv5").channels == 512
    config = MODEL_CONFIGS["efficientnet_lite0"]
    for stage, (stride, offset, field, channels) in EFFICIENTNET_EXPECTED.items():
        assert stage_info(config, stage) == (stride, offset, channels, field), stage
    # 'SAME' padding: odd sizes shift the offset.
    assert stage_info(config, "stride16", input_hw=(200, 200)).offset == 7.0
    assert stage_offsets(config, "stride8", (300, 224)) == (3.0, 7.0)
    with pytest.raises(ValueError, match="stage_offsets"):
        stage_info(config, "stride8", input_hw=(300, 224))
    with pytest.raises(ValueError, match="no spatial stage"):
        stage_info(config, "logits")


def positive_variables(variables):
    """Positive conv kernels (1/fan-in), zero biases, identity BatchNorm: with a positive
    input every unit is active and a feature cell depends on exactly its receptive field."""
    def leaf(path, x):
        name = path[-1].key
        if name == "kernel":
            return np.full(x.shape, 1.0 / math.prod(x.shape[:-1]), np.float32)
        return np.full(x.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)
    return jax.tree_util.tree_map_with_path(leaf, variables)


def assert_support(support, centres, field, n, what):
    """support[i] = boolean mask over n input positions for cell i."""
    for i, mask in enumerate(support):
        c = centres[i]
        lo, hi = max(0, math.ceil(c - (field - 1) / 2)), min(n - 1, math.floor(c + (field - 1) / 2))
        expected = np.zeros(n, bool)
        expected[lo:hi + 1] = True
        np.testing.assert_array_equal(mask, expected, err_msg=f"{what} cell {i}")


@pytest.mark.parametrize("axis", [1, 2])
def test_vggm_geometry_by_bright_line_probe(axis):
    # A bright input row (column) makes exactly the cells whose receptive field contains it
    # positive: max pooling and LRN keep positivity, so this also probes the pools.
    config = config_for_widths((2, 3, 3, 3, 3))
    n, other = 181, 70
    hw = (n, other) if axis == 1 else (other, n)
    module = build_module(config)
    variables = positive_variables(abstract_variables(config, hw))
    lines = np.zeros((n, *hw, 3), np.float32)
    for r in range(n):
        if axis == 1:
            lines[r, r, :, :] = 1.0
        else:
            lines[r, :, r, :] = 1.0
    out = jax.jit(module.apply)(variables, jnp.asarray(lines))
    for stage, feats in out.items():
        info = stage_info(config, stage, input_hw=hw)
        assert feats.shape[1:3] == output_hw(config, stage, hw), stage
        reduce = (2, 3) if axis == 1 else (1, 3)
        support = np.asarray(jnp.max(feats, axis=reduce) > 0).T  # (cells, input lines)
        centres = info.offset + info.stride * np.arange(support.shape[0])
        assert_support(support, centres, info.receptive_field, n, stage)


def expected_support(config, stage, hw, axis, cell):
    """Input positions (along `axis`) in the claimed receptive field of `cell`, clipped."""
    info = stage_info(config, stage)
    centre = stage_offsets(config, stage, hw)[axis] + info.stride * cell
    half = (info.receptive_field - 1) // 2
    mask = np.zeros(hw[axis], bool)
    mask[max(0, int(centre - half)):min(hw[axis] - 1, int(centre + half)) + 1] = True
    return mask


@pytest.mark.parametrize("hw,axis", [((480, 32), 0), ((32, 488), 1)])
def test_efficientnet_geometry_by_gradient_probe(hw, axis):
    # Gradient of one cell w.r.t. the input of a positive, all-active network is non-zero
    # exactly on its receptive field (clipped to the image). 480 keeps every 'SAME' input even;
    # 488 makes the stride-16/32 layers see odd sizes (offsets 7, 7 instead of 15, 31). The
    # stride32 field (851) exceeds the input, but cell 0 shows its lower end and the last cell
    # its upper end. Cells whose fields are disjoint share one backward pass.
    config = MODEL_CONFIGS["efficientnet_lite0"]
    # XLA's grouped conv compiles faster than the k*k-slice form; speed is irrelevant here.
    module = build_module(config).clone(depthwise_impl="grouped")
    variables = positive_variables(abstract_variables(config))
    x = jnp.full((1, *hw, 3), 1e-3, jnp.float32)  # small: no ReLU6 saturation
    forward = lambda x: module.apply(variables, x)
    out = jax.eval_shape(forward, x)
    groups = []  # (stage, cells, union of expected supports)
    for stage in out:
        assert out[stage].shape[1:3] == output_hw(config, stage, hw)
        n_cells = out[stage].shape[1 + axis]
        for i in sorted({0, n_cells // 2, n_cells - 1}):
            mask = expected_support(config, stage, hw, axis, i)
            grown = np.convolve(mask, np.ones(3), "same") > 0  # keep a gap between fields
            group = next((g for g in groups if g[0] == stage and not np.any(g[2] & grown)), None)
            if group is None:
                groups.append((stage, [i], mask))
            else:
                group[1].append(i)
                group[2][:] |= mask
    cotangents = []
    for stage, cells, _ in groups:
        ct = {s: np.zeros(v.shape, np.float32) for s, v in out.items()}
        for i in cells:
            ct[stage][(0, i, 0) if axis == 0 else (0, 0, i)] = 1.0
        cotangents.append(ct)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.asarray(np.stack(a)), *cotangents)
    grads = jax.jit(jax.vmap(lambda ct: jax.vjp(forward, x)[1](ct)[0]))(stacked)
    support = np.asarray(jnp.sum(grads[:, 0], axis=(2, 3) if axis == 0 else (1, 3)) > 0)
    assert len(groups) < 10
    for (stage, cells, expected), mask in zip(groups, support):
        np.testing.assert_array_equal(mask, expected, err_msg=f"{stage} cells {cells} for {hw}")
    if hw == (32, 488):
        assert stage_offsets(config, "stride32", hw) == (31.0, 7.0)


@pytest.mark.parametrize("name", ["cf_vggm_r64", "efficientnet_lite0"])
@pytest.mark.parametrize("hw", [(200, 200), (224, 224), (250, 250), (300, 300), (117, 301)])
def test_output_hw_matches_module(name, hw):
    config = MODEL_CONFIGS[name]
    variables = abstract_variables(config)
    out = jax.eval_shape(lambda v, x: build_module(config).apply(v, x), variables,
                         jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32))
    for stage, feats in out.items():
        assert feats.shape[1:3] == output_hw(config, stage, hw), (stage, hw)


def test_output_hw_rejects_too_small_inputs():
    with pytest.raises(ValueError, match="too small"):
        output_hw(MODEL_CONFIGS["vggm"], "conv5", (24, 224))
    assert output_hw(MODEL_CONFIGS["vggm"], "conv5", (25, 224)) == (1, 13)


# ----------------------------------------------------------------------------- MACs

def jaxpr_conv_macs(jaxpr) -> int:
    """Independent count: walks the traced program, MACs of every conv from its shapes."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            out = eqn.outvars[0].aval.shape           # NHWC
            kernel = eqn.invars[1].aval.shape         # HWIO (I already divided by groups)
            total += math.prod(out) * math.prod(kernel[:3])
        elif eqn.primitive.name == "dot_general":
            lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
            total += lhs[0] * math.prod(rhs)
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                total += jaxpr_conv_macs(inner)
    return total


@pytest.mark.parametrize("name,hw,stages", [
    ("vggm", (224, 224), None), ("cf_vggm_r32", (250, 203), ("conv3",)),
    ("efficientnet_lite0", (224, 224), None), ("efficientnet_lite0", (300, 200), ("stride8",)),
    ("efficientnet_lite0_classifier", (224, 224), None)])
def test_conv_macs_match_traced_program(name, hw, stages):
    config = MODEL_CONFIGS[name]
    variables = abstract_variables(config)
    module = build_module(config)
    if isinstance(module, EfficientNetLite0):  # depthwise layers as conv primitives
        module = module.clone(depthwise_impl="grouped")
    else:  # the nominal 7x7 conv1 (space-to-depth computes it with zero-padded 4x4 taps)
        module = module.clone(conv1_impl="direct")
    jaxpr = jax.make_jaxpr(lambda v, x: module.apply(v, x, stages=stages))(
        variables, jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32))
    assert conv_macs(config, hw, stages=stages) == jaxpr_conv_macs(jaxpr.jaxpr)


def test_conv_macs_match_paper_table():
    for hw, teacher, student in [(224, 1.58, 0.043), (250, 2.09, 0.056), (300, 3.01, 0.080)]:
        assert round(conv_macs(MODEL_CONFIGS["vggm"], (hw, hw)) / 1e9, 2) == teacher
        assert round(conv_macs(MODEL_CONFIGS["cf_vggm_r64"], (hw, hw)) / 1e9, 3) == student


# ----------------------------------------------------------------------------- preprocessing

def test_normalize_mean_colour_std_and_scale():
    prep = Preprocessing(mean=np.array([0.5, 0.25, 0.0]), std=np.array([0.5, 0.5, 0.25]),
                         input_scale=1 / 255)
    images = np.full((2, 4, 5, 3), 255, np.uint8)
    out = normalize(images, prep)
    assert out.dtype == jnp.float32 and out.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 1.5, 4.0], rtol=1e-6)


def test_normalize_resizes_mean_image():
    yy, xx = np.meshgrid(np.arange(224), np.arange(224), indexing="ij")
    mean = np.stack([yy, xx, yy + xx], axis=-1).astype(np.float32)  # linear ramps
    prep = Preprocessing(mean=mean)
    same = normalize(np.zeros((1, 224, 224, 3)), prep)
    np.testing.assert_array_equal(same[0], -mean)
    small = normalize(np.zeros((1, 112, 112, 3), np.uint8), prep)
    # Halving a linear ramp with half-pixel centres: value at cell i = 2i + 0.5.
    np.testing.assert_allclose(-small[0, 10:100, 10:100, 0], 2 * yy[10:100, 10:100] + 0.5,
                               atol=1e-3)
    upscaled = jax.jit(lambda im: normalize(im, prep))(jnp.zeros((1, 300, 260, 3)))
    assert upscaled.shape == (1, 300, 260, 3)
    with pytest.raises(ValueError, match="RGB images"):
        normalize(np.zeros((4, 5, 3)), prep)
    with pytest.raises(ValueError, match="mean must be"):
        Preprocessing(mean=np.zeros((4, 3)))


def test_stage_names():
    assert stage_names(MODEL_CONFIGS["vggm"])[0] == "conv1"
    assert stage_names(MODEL_CONFIGS["efficientnet_lite0_classifier"])[-1] == "logits"

def test_build_module_picks_the_measured_conv1_implementation():
    # r16/r32 (conv1 widths 24/17) use space-to-depth, the others XLA's direct conv
    impls = {name: build_module(MODEL_CONFIGS[name]).conv1_impl
             for name in ("vggm", "cf_vggm_r16", "cf_vggm_r32", "cf_vggm_r64", "cf_vggm_r96")}
    assert impls == {"vggm": "direct", "cf_vggm_r16": "space_to_depth",
                     "cf_vggm_r32": "space_to_depth", "cf_vggm_r64": "direct",
                     "cf_vggm_r96": "direct"}
