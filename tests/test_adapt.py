"""Tests of the online adaptation (`ctjax.trackers.adapt`) and its `feco-online` presets.

References are independent: NumPy re-derivations of the label, the mask, the crops, the
kernel gradient and the whole loss (full complex FFTs, `np.roll` labels, explicit loops);
JAX autodiff through the Flax model for the hand-written gradient; a NumPy DCF for the
distractor scene. The student is the shipped one (in the package, no data needed) at a
small 129 px input (conv5 7 x 7).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax.features.cnn import LayerSpec, avg_pool, cnn_extractor, cnn_params, normalize_energy
from ctjax.features.composite import CompositeExtractor
from ctjax.models.student import load_student
from ctjax.ops.crop import sample_window, to_canvas
from ctjax.trackers import adapt, dcf as dcf_tracker, presets

S = 129
CONTEXT = 4.0
SETTINGS = adapt.AdaptSettings(input_size=S, context=CONTEXT, steps=5, learning_rate=0.05)


@pytest.fixture(scope="module")
def student():
    """(conv5 extractor, conv1 + conv5 extractor, CNN params at 129 px) of the shipped
    student."""
    loaded = load_student(None)
    return (cnn_extractor(loaded, (LayerSpec("conv5"),)),
            cnn_extractor(loaded, (LayerSpec("conv1", pool=2), LayerSpec("conv5"))),
            cnn_params(loaded, S))


def _np_gauss(hw, sigma, shift=(0.0, 0.0)):
    h, w = hw
    dy = (np.arange(h) - shift[0] + h / 2) % h - h / 2
    dx = (np.arange(w) - shift[1] + w / 2) % w - w / 2
    return np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * sigma ** 2))


def _np_hann(hw):
    return np.outer(np.hanning(hw[0] + 2)[1:-1], np.hanning(hw[1] + 2)[1:-1])


# --- geometry ------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [(0, 0), (2, -1), (-3, 4), (6, 8)])
def test_shifted_label_is_the_rolled_gaussian(shift):
    hw, sigma = (7, 9), 0.8
    i = (np.arange(7) + 3) % 7 - 3
    j = (np.arange(9) + 4) % 9 - 4
    base = np.exp(-(i[:, None] ** 2 + j[None, :] ** 2) / (2 * sigma ** 2))
    got = adapt.shifted_label(hw, sigma, jnp.asarray(shift, jnp.float32))
    np.testing.assert_allclose(got, np.roll(base, shift, axis=(0, 1)), atol=1e-6)


def test_shifted_label_fractional_shift_uses_the_nearest_wrapped_distance():
    shift = np.array([[0.5, -2.25], [-3.5, 1.75]])
    got = adapt.shifted_label((8, 6), 1.3, jnp.asarray(shift, jnp.float32))
    for k in range(2):
        dy = np.arange(8)[:, None] - shift[k, 0]
        dx = np.arange(6)[None, :] - shift[k, 1]
        d2 = np.min([(dy + a) ** 2 for a in (-8, 0, 8)], axis=0) + \
            np.min([(dx + a) ** 2 for a in (-6, 0, 6)], axis=0)
        np.testing.assert_allclose(got[k], np.exp(-d2 / (2 * 1.3 ** 2)), atol=1e-6)


def test_background_mask_covers_the_box_around_the_origin():
    got = np.asarray(adapt.background_mask((9, 8), jnp.asarray([2.4, 0.3])))
    want = np.zeros((9, 8))
    for a in range(9):
        for b in range(8):
            oy, ox = min(a, 9 - a), min(b, 8 - b)
            want[a, b] = oy <= 2.4 and ox <= 1.0   # a half size below one cell counts as one
    np.testing.assert_array_equal(got, want)


def _np_iou(h, w, d):
    oy, ox = max(h - abs(d[0]), 0), max(w - abs(d[1]), 0)
    return oy * ox / (2 * h * w - oy * ox)


@pytest.mark.parametrize("size", [(30.0, 30.0), (60.0, 20.0), (14.0, 70.0)])
def test_sample_shifts_are_whole_cells_and_background_boxes_have_low_iou(size):
    s = dataclasses.replace(SETTINGS, num_background=16)
    q, margin = 16, 96
    for seed in range(3):
        smp = adapt.sample_shifts(s, q, margin, jnp.asarray(size), jax.random.PRNGKey(seed))
        t, b, valid = map(np.asarray, smp)
        assert t.shape == (s.num_target, 2) and b.shape == (16, 2)
        np.testing.assert_array_equal(t % q, 0)
        assert np.abs(t).max() <= s.target_cells * q
        np.testing.assert_array_equal(b % q, 0)
        assert np.abs(b).max() <= margin
        ious = np.array([_np_iou(*size, d) for d in b])
        np.testing.assert_array_equal(valid, ious < s.max_iou)
        unclipped = np.all(np.abs(b) < margin, axis=1)
        r = np.hypot(b[:, 0] / size[0], b[:, 1] / size[1])
        assert np.all(r[unclipped] >= s.background_distance[0] - 1e-6)
        assert valid.mean() > 0.5


def test_crops_from_region_are_exact_copies_of_region_pixels():
    rng = np.random.default_rng(0)
    out, side = 33, 33 + 2 * 16
    region = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    shifts = np.array([[0, 0], [16, -16], [-8, 4], [16, 16]], np.float32)
    got = np.asarray(jax.jit(adapt.crops_from_region, static_argnums=2)(region, shifts, out))
    c = (side - 1) // 2
    for k, (dy, dx) in enumerate(shifts.astype(int)):
        top, left = c + dy - out // 2, c + dx - out // 2
        np.testing.assert_array_equal(got[k], region[top:top + out, left:left + out])


def test_region_is_centred_on_the_box_at_the_crop_resolution():
    img = np.zeros((200, 300, 3), np.uint8)
    img[119:122, 179:182] = 255                       # a 3 x 3 dot centred on (120, 180)
    box = np.array([180 - 19.5 + 1, 120 - 9.5 + 1, 40, 20], np.float32)   # centre (120, 180)
    side = 161
    region, size = jax.jit(lambda f, b: adapt.region_at(SETTINGS, side, f, b))(
        to_canvas(img, (200, 300)), box)
    px = CONTEXT * np.sqrt(40 * 20) / S               # frame pixels per region pixel
    np.testing.assert_allclose(size, [20 / px, 40 / px], rtol=1e-5)
    g = np.asarray(region, np.float64).sum(-1)
    cy, cx = np.unravel_index(np.argmax(g), g.shape)
    assert abs(cy - (side - 1) / 2) <= 1 and abs(cx - (side - 1) / 2) <= 1


# --- gradients -------------------------------------------------------------------------------

def test_kernel_grad_matches_a_numpy_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    g = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((3, 3, 3, 4))
    for u in range(3):
        for v in range(3):
            want[u, v] = np.einsum("nyxi,nyxo->io", xp[:, u:u + 5, v:v + 6], g)
    np.testing.assert_allclose(adapt._kernel_grad(x, g, (1, 1)), want, rtol=1e-5, atol=1e-5)


def test_last_stage_gradient_equals_autodiff_through_the_model(student):
    ex5, _, cnn = student
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(0, 60, (2, 65, 65, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(2, 3, 3, 64)), jnp.float32)
    variables = cnn["variables"]
    theta = variables["params"]["conv5"]
    fast = adapt.last_stage(ex5.module, "conv5")

    def direct(t):
        v = {**variables, "params": {**variables["params"], "conv5": t}}
        return jnp.sum(ex5.module.apply(v, x, stages=("conv5",))["conv5"] * w)

    np.testing.assert_allclose(jnp.sum(fast(theta, variables, x) * w), direct(theta), rtol=1e-6)
    g_fast = jax.jit(jax.grad(lambda t: jnp.sum(fast(t, variables, x) * w)))(theta)
    g_auto = jax.jit(jax.grad(direct))(theta)
    for k in ("kernel", "bias"):
        np.testing.assert_allclose(g_fast[k], g_auto[k], rtol=1e-4,
                                   atol=1e-4 * np.abs(g_auto[k]).max())


# --- the loss against NumPy ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LinearPool:
    """A stand-in CNN: 8 x 8 average pooling, a 3 -> 4 linear map ("conv5" kernel, bias),
    unit energy; not a VGG-M, so the loss goes through plain autodiff."""
    layers: tuple = (LayerSpec("conv5"),)
    strides: tuple = (8,)
    module: object = None

    @property
    def cell_strides(self):
        return tuple(s * l.pool for s, l in zip(self.strides, self.layers))

    def __call__(self, params, patches):
        p = params["variables"]["params"]["conv5"]
        x = avg_pool(patches / 255.0, 8) @ p["kernel"] + p["bias"]
        return (normalize_energy(x),)


def _np_loss(settings, cnn, delta, patches, smp, sizes, weights):
    p = cnn["variables"]["params"]["conv5"]
    scale = np.sqrt(np.mean(np.square(p["kernel"])))
    k = p["kernel"] + scale * delta["conv5"]["kernel"]
    b = p["bias"] + scale * delta["conv5"]["bias"]
    B, n, s = patches.shape[:3]
    h = s // 8
    x = patches.reshape(B, n, h, 8, h, 8, 3).mean(axis=(3, 5)) / 255.0 @ k + b
    x = x / np.sqrt(np.mean(x ** 2, axis=(2, 3, 4), keepdims=True) + 1e-12)
    hann = _np_hann((h, h))[..., None]
    sigma = settings.output_sigma_factor * (settings.input_size / settings.context) / 8
    y0 = _np_gauss((h, h), sigma)
    kt = smp.target.shape[1]
    total = 0.0
    for r_ in range(B):
        X = np.fft.fft2(x[r_, 0] * hann, axes=(0, 1))
        den = np.sum(np.abs(X) ** 2, -1) / (h * h * 4)
        tloss, bl, bw = [], 0.0, 0.0
        for j in range(1, n):
            Z = np.fft.fft2(x[r_, j] * hann, axes=(0, 1))
            resp = np.real(np.fft.ifft2(np.fft.fft2(y0) * np.sum(Z * np.conj(X), -1)
                                        / (h * h * 4) / (den + settings.lam)))
            if j <= kt:
                yl = np.roll(y0, tuple((-smp.target[r_, j - 1] / 8).astype(int)), axis=(0, 1))
                tloss.append(np.sum((resp - yl) ** 2))
            else:
                half = np.maximum(sizes[r_] / 16, 1.0)
                off = np.abs((np.arange(h) + h // 2) % h - h // 2)
                mask = (off[:, None] <= half[0]) & (off[None, :] <= half[1])
                v = float(smp.valid[r_, j - 1 - kt])
                bl += v * np.sum(resp ** 2 * mask)
                bw += v
        per = (np.mean(tloss) + settings.background_weight * bl / max(bw, 1.0)) / np.sum(y0 ** 2)
        total += weights[r_] * per
    total /= max(weights.sum(), 1e-6)
    decay = sum(np.mean(np.square(a)) for a in delta["conv5"].values())
    return total + settings.weight_decay * decay


def test_adaptation_loss_matches_a_numpy_rederivation():
    rng = np.random.default_rng(3)
    settings = dataclasses.replace(SETTINGS, input_size=64, context=3.0, num_target=3,
                                   num_background=3, background_weight=0.7,
                                   weight_decay=0.3)
    cnn = {"variables": {"params": {"conv5": {"kernel": rng.normal(size=(3, 4)),
                                              "bias": rng.normal(size=(4,))}}}}
    delta = {"conv5": {"kernel": 0.1 * rng.normal(size=(3, 4)),
                       "bias": 0.1 * rng.normal(size=(4,))}}
    patches = rng.uniform(0, 255, (2, 7, 64, 64, 3))
    smp = adapt.Samples(target=8.0 * rng.integers(-2, 3, (2, 3, 2)),
                        background=8.0 * rng.integers(-4, 5, (2, 3, 2)),
                        valid=np.array([[True, False, True], [True, True, True]]))
    sizes = np.array([[21.0, 30.0], [12.0, 5.0]])
    weights = np.array([1.0, 0.5])
    got = jax.jit(lambda *a: adapt.adaptation_loss(settings, LinearPool(), *a))(
        cnn, delta, patches, smp, sizes, weights)
    want = _np_loss(settings, cnn, delta, patches, smp, sizes, weights)
    np.testing.assert_allclose(float(got), want, rtol=2e-5)


# --- the distractor scene --------------------------------------------------------------------

def _texture(rng, h, w, smooth):
    img = rng.uniform(0, 255, (h, w, 3))
    for _ in range(smooth):
        img = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1) + np.roll(img, (1, 1), (0, 1))) / 4
    return img


def lookalike_scene(seed=0):
    """A 32 px textured target and a slightly darker copy 1.5 target sizes to its right, on
    a smooth textured background. Returns (image, target centre, look-alike centre, box)."""
    rng = np.random.default_rng(seed)
    img = _texture(rng, 320, 320, 6) * 0.6 + 50
    target = _texture(rng, 32, 32, 1)
    img[144:176, 100:132] = target
    img[144:176, 148:180] = target * 0.9 + 10
    box = np.array([101, 145, 32, 32], np.float32)
    return img.astype(np.uint8), (159.5, 115.5), (159.5, 163.5), box


def _np_response(x, z, sigma, lam=1e-4):
    """Closed-form ridge-regression DCF (full complex FFTs) learned on x, applied to z."""
    h, w, c = x.shape
    hann = _np_hann((h, w))[..., None]
    X = np.fft.fft2(x * hann, axes=(0, 1))
    Z = np.fft.fft2(z * hann, axes=(0, 1))
    kxx = np.sum(np.abs(X) ** 2, -1) / (h * w * c)
    kzx = np.sum(Z * np.conj(X), -1) / (h * w * c)
    return np.real(np.fft.ifft2(np.fft.fft2(_np_gauss((h, w), sigma)) / (kxx + lam) * kzx))


def test_adaptation_lowers_the_response_on_a_lookalike(student):
    ex5, _, cnn = student
    img, centre, lookalike, box = lookalike_scene()
    frame = to_canvas(img, img.shape[:2])
    side = adapt.region_side(SETTINGS, adapt.quantum(ex5, SETTINGS))

    @jax.jit
    def run(cnn, frame, box):
        region, size = adapt.region_at(SETTINGS, side, frame, box)
        theta = {"conv5": cnn["variables"]["params"]["conv5"]}
        return adapt.adapt(SETTINGS, ex5, cnn, theta, region[None], size[None], jnp.ones(1),
                           jax.random.PRNGKey(0), steps=SETTINGS.steps)

    theta, losses = run(cnn, frame, box)
    assert losses[-1] < 0.5 * losses[0]

    def feats(params, c):
        patch = sample_window(frame, jnp.asarray(c, jnp.float32), float(S), out=S)
        return np.asarray(ex5(params, patch[None])[0][0], np.float64)

    sigma = 0.1 * (S / CONTEXT) / 16
    shifted = (centre[0], centre[1] + 16)          # the target one cell left of centre
    out = {}
    for name, params in (("before", cnn), ("after", adapt.merge_stages(cnn, theta))):
        x = feats(params, centre)
        out[name] = (_np_response(x, feats(params, lookalike), sigma)[0, 0],
                     _np_response(x, feats(params, shifted), sigma)[0, -1])
    assert out["before"][0] > 0.4                    # the look-alike fools the offline student
    assert out["after"][0] < 0.6 * out["before"][0]
    assert out["after"][1] > 0.8                     # and the target is still found


# --- the wrapper -----------------------------------------------------------------------------

CONFIG = dcf_tracker.TrackerConfig(patch_size=S, search_area_scale=CONTEXT, canvas_hw=(320, 320))


def _frames(n):
    img, _, _, box = lookalike_scene()
    frames = [np.roll(img, (t % 3, 2 * t), axis=(0, 1)) for t in range(n)]
    return frames, box


def test_caller_params_unchanged_and_step_traces_once(student):
    ex5, _, cnn = student
    inner = dcf_tracker.make_tracker(CONFIG, CompositeExtractor((ex5,)))   # params a tuple
    settings = dataclasses.replace(SETTINGS, steps=2, update_steps=1, every=3, recent=2,
                                   num_target=2, num_background=3)
    tracker = adapt.make_adaptive(inner, settings, extractor=ex5, cnn_index=0)
    params = (cnn,)
    before = jax.tree.map(np.array, params)
    init = jax.jit(chex.assert_max_traces(tracker.init_fn, n=1))
    step = jax.jit(chex.assert_max_traces(tracker.step_fn, n=1))
    frames, box = _frames(7)
    state = init(params, to_canvas(frames[0], CONFIG.canvas_hw), box)
    thetas = [state.params]
    for f in frames[1:]:
        state, out, _ = step(params, state, to_canvas(f, CONFIG.canvas_hw))
        thetas.append(state.params)
    assert np.all(np.isfinite(np.asarray(out)))
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.array, params), before)
    k = lambda t: np.asarray(t["conv5"]["kernel"])
    offline = np.asarray(cnn["variables"]["params"]["conv5"]["kernel"])
    assert not np.array_equal(k(thetas[0]), offline)          # frame 1 adapted
    changed = [not np.array_equal(k(a), k(b)) for a, b in zip(thetas, thetas[1:])]
    assert changed == [f % 3 == 0 for f in range(2, 8)]       # updates on frames 3 and 6
    np.testing.assert_array_equal(np.asarray(state.weights), [1, 1, 1])
    assert int(state.stored) == 4                             # frames 2, 3, 5, 6


def test_without_a_learning_rate_the_wrapper_is_transparent(student):
    ex5, _, cnn = student
    inner = dcf_tracker.make_tracker(CONFIG, ex5)
    settings = dataclasses.replace(SETTINGS, steps=1, learning_rate=0.0, num_target=1,
                                   num_background=1)
    tracker = adapt.make_adaptive(inner, settings, extractor=ex5, cnn_index=None)
    frames, box = _frames(4)
    runs = {}
    for name, t in (("inner", inner), ("adaptive", tracker)):
        init, step = jax.jit(t.init_fn), jax.jit(t.step_fn)
        state = init(cnn, to_canvas(frames[0], CONFIG.canvas_hw), box)
        out = []
        for f in frames[1:]:
            state, b, _ = step(cnn, state, to_canvas(f, CONFIG.canvas_hw))
            out.append(np.asarray(b))
        runs[name] = np.stack(out)
    np.testing.assert_array_equal(runs["adaptive"], runs["inner"])


def test_bad_settings_and_sizes_are_named(student):
    ex5, _, cnn = student
    with pytest.raises(ValueError, match="recent"):
        adapt.AdaptSettings(every=2, recent=3)
    with pytest.raises(ValueError, match="background_distance"):
        adapt.AdaptSettings(background_distance=(2.0, 1.0))
    with pytest.raises(ValueError, match="loss layer"):
        adapt.quantum(ex5, dataclasses.replace(SETTINGS, loss_layers=("conv3",)))
    tracker = adapt.make_adaptive(dcf_tracker.make_tracker(CONFIG, ex5),
                                  dataclasses.replace(SETTINGS, input_size=217),
                                  extractor=ex5, cnn_index=None)
    frames, box = _frames(1)
    with_mean_image = {**cnn, "mean": np.zeros((S, S, 3), np.float32)}
    with pytest.raises(ValueError, match="input_size 217"):
        jax.eval_shape(tracker.init_fn, with_mean_image, to_canvas(frames[0], CONFIG.canvas_hw),
                       box)


def test_feco_online_presets_wrap_feco_with_its_weights():
    from ctjax.trackers import adapt_presets, eco_presets

    assert {"feco-online", "feco-online-recent"} <= set(presets.available())
    built = presets.build("feco-online")
    base = presets.build("feco")
    assert built.weights == base.weights and built.config == base.config
    jax.tree.map(np.testing.assert_array_equal, built.params, base.params)
    s = adapt_presets.FECO_ONLINE
    assert s.input_size == eco_presets.VGGM_INPUT == built.extractor.parts[0].input_size
    assert s.context == pytest.approx(4.5 * 217 / 208)
    assert adapt_presets.FECO_ONLINE_RECENT.every > 0
