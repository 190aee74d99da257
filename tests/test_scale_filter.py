"""Tests for ctjax.ops.scale_filter: ECO's fDSST scale filter."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax.ops import scale_filter as sf

CONFIG = sf.ScaleFilterConfig()


# --- NumPy transcriptions of ECO's MATLAB (independent of the module) -----------------------

def matlab_resize_dft(inputdft, desired_len):
    """resizeDFT.m, 0-based."""
    n = len(inputdft)
    minsz = min(n, desired_len)
    scaling = desired_len / n
    out = np.zeros(desired_len, complex)
    mids = math.ceil(minsz / 2)
    mide = math.floor((minsz - 1) / 2) - 1
    out[:mids] = scaling * inputdft[:mids]
    if mide + 1 > 0:  # MATLAB's end-mide:end is empty when mide = -1
        out[desired_len - (mide + 1):] = scaling * inputdft[n - (mide + 1):]
    return out


def matlab_ifft_symmetric(x):
    """ifft(x, 'symmetric'): the first half defines a conjugate-symmetric spectrum."""
    n = len(x)
    y = np.array(x, complex)
    y[0] = y[0].real
    for k in range(1, n // 2 + 1):
        y[n - k] = np.conj(y[k])
    if n % 2 == 0:
        y[n // 2] = y[n // 2].real
    return np.fft.ifft(y).real


def eco_init_constants(num_scales=17, num_interp=33, step=1.02, sigma_factor=1 / 16):
    """init_scale_filter.m."""
    scale_sigma = num_interp * sigma_factor
    scale_exp = np.arange(-np.floor((num_scales - 1) / 2),
                          np.ceil((num_scales - 1) / 2) + 1) * num_interp / num_scales
    scale_exp_shift = np.roll(scale_exp, -int(np.floor((num_scales - 1) / 2)))
    interp_exp = np.arange(-np.floor((num_interp - 1) / 2), np.ceil((num_interp - 1) / 2) + 1)
    interp_exp_shift = np.roll(interp_exp, -int(np.floor((num_interp - 1) / 2)))
    ys = np.exp(-0.5 * scale_exp_shift ** 2 / scale_sigma ** 2)
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(num_scales) / (num_scales - 1)))
    return dict(size_factors=step ** scale_exp, interp_factors=step ** interp_exp_shift,
                ys=ys, yf=np.fft.fft(ys), window=window)


class EcoScaleFilter:
    """scale_filter_update.m / scale_filter_track.m with the 'MAX' QR projection; samples are
    MATLAB's (D, S) matrices."""

    def __init__(self, lr=0.025, lam=1e-2, num_interp=33):
        self.c = eco_init_constants()
        self.lr, self.lam, self.num_interp = lr, lam, num_interp
        self.s_num = None

    def update(self, xs):
        first = self.s_num is None
        self.s_num = xs if first else (1 - self.lr) * self.s_num + self.lr * xs
        basis, _ = np.linalg.qr(self.s_num, mode="reduced")
        basis_den, _ = np.linalg.qr(xs, mode="reduced")
        self.basis = basis.T
        sf_proj = np.fft.fft(self.c["window"] * (self.basis @ self.s_num), axis=1)
        self.sf_num = self.c["yf"] * np.conj(sf_proj)
        xsf = np.fft.fft(self.c["window"] * (basis_den.T @ xs), axis=1)
        new_den = np.sum(xsf * np.conj(xsf), axis=0)
        self.sf_den = new_den if first else (1 - self.lr) * self.sf_den + self.lr * new_den

    def track(self, xs):
        xsf = np.fft.fft(self.c["window"] * (self.basis @ xs), axis=1)
        responsef = np.sum(self.sf_num * xsf, axis=0) / (self.sf_den + self.lam)
        response = matlab_ifft_symmetric(matlab_resize_dft(responsef, self.num_interp))
        idx = int(np.flatnonzero(response == response.max())[0])
        n = self.num_interp
        ids = [(idx - 1) % n, idx, (idx + 1) % n]
        px = self.c["interp_factors"][ids]
        a_mat = np.stack([px ** 2, px, np.ones(3)], axis=1)
        poly = np.linalg.solve(a_mat, response[ids])
        return response, -poly[1] / (2 * poly[0])


# --- constants --------------------------------------------------------------------------------

def test_factors_label_window_match_init_scale_filter():
    c = eco_init_constants()
    np.testing.assert_allclose(sf.scale_factors(CONFIG), c["size_factors"], rtol=1e-14)
    np.testing.assert_allclose(sf.interp_scale_factors(CONFIG), c["interp_factors"], rtol=1e-14)
    np.testing.assert_allclose(sf.scale_label(CONFIG), c["ys"], rtol=1e-14)
    np.testing.assert_allclose(sf.scale_window(CONFIG), c["window"], atol=1e-15)
    # Published numbers: 17 samples 1.02^(k*33/17), k = -8..8; 33 bins of 1.02^j.
    assert sf.scale_factors(CONFIG)[8] == 1.0
    np.testing.assert_allclose(sf.scale_factors(CONFIG)[-1], 1.02 ** (8 * 33 / 17))
    np.testing.assert_allclose(sf.interp_scale_factors(CONFIG)[[0, 1, 16, 17, 32]],
                               1.02 ** np.array([0, 1, 16, -16, -1]))
    ys = sf.scale_label(CONFIG)
    assert ys.argmax() == 0 and ys[0] == 1.0
    np.testing.assert_allclose(ys[1], ys[-1])
    np.testing.assert_allclose(ys[1], np.exp(-0.5 * (33 / 17) ** 2 / (33 / 16) ** 2))


@pytest.mark.parametrize("hw,expected", [((40, 40), (22, 22)), ((10, 20), (10, 20)),
                                          ((5, 100), (8, 100)), ((100, 300), (13, 39)),
                                          ((16, 32), (16, 32))])
def test_scale_model_size(hw, expected):
    assert sf.scale_model_size(hw, CONFIG) == expected


def test_scale_model_size_rejects_bad_target():
    with pytest.raises(ValueError, match="positive"):
        sf.scale_model_size((0, 10), CONFIG)


@pytest.mark.parametrize("n,length", [(17, 33), (16, 33), (17, 17), (5, 3), (4, 9), (2, 5),
                                      (1, 4), (33, 17)])
def test_resize_dft_matches_matlab(n, length):
    rng = np.random.default_rng(n * 100 + length)
    x = rng.normal(size=n) + 1j * rng.normal(size=n)
    with jax.enable_x64(True):
        out = np.asarray(sf.resize_dft(jnp.asarray(x), length))
        # Trailing axes are carried along.
        out2 = np.asarray(sf.resize_dft(jnp.asarray(np.stack([x, 2 * x], 1)), length))
    expected = matlab_resize_dft(x, length)
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(out2[:, 1], 2 * expected, rtol=1e-14, atol=1e-14)


def test_resize_dft_interpolates_a_band_limited_signal():
    # Zero-padding the DFT of an odd-length band-limited signal samples it on a finer grid.
    t = np.arange(17) / 17
    signal = 1 + np.cos(2 * np.pi * 3 * t + 0.4) + 0.5 * np.sin(2 * np.pi * 7 * t)
    with jax.enable_x64(True):
        fine = np.fft.ifft(np.asarray(sf.resize_dft(jnp.fft.fft(jnp.asarray(signal)), 51))).real
    np.testing.assert_allclose(fine[::3], signal, atol=1e-12)
    tf = np.arange(51) / 51
    np.testing.assert_allclose(
        fine, 1 + np.cos(2 * np.pi * 3 * tf + 0.4) + 0.5 * np.sin(2 * np.pi * 7 * tf),
        atol=1e-12)


# --- the filter against ECO's QR-projected transcription ---------------------------------------

@pytest.mark.parametrize("dim", [60, 10])
def test_filter_matches_eco_transcription(dim):
    # dim < num_scales exercises ECO's square QR basis.
    rng = np.random.default_rng(dim)
    base = rng.normal(size=(17, dim))
    frames = [base + 0.3 * rng.normal(size=base.shape) for _ in range(5)]
    ref = EcoScaleFilter()
    with jax.enable_x64(True):
        state = sf.init_scale_filter(jnp.asarray(frames[0]), CONFIG)
        ref.update(frames[0].T)
        for xs in frames[1:]:
            response = np.asarray(sf.interp_scale_response(state, jnp.asarray(xs), CONFIG))
            change = float(sf.locate_scale(state, jnp.asarray(xs), CONFIG))
            ref_response, ref_change = ref.track(xs.T)
            np.testing.assert_allclose(response, ref_response, rtol=1e-9,
                                       atol=1e-12 * np.abs(ref_response).max())
            np.testing.assert_allclose(change, ref_change, rtol=1e-9)
            state = sf.update_scale_filter(state, jnp.asarray(xs), CONFIG)
            ref.update(xs.T)
            np.testing.assert_allclose(state.sf_den, ref.sf_den.real, rtol=1e-10)


def test_update_is_linear_interpolation_with_the_learning_rate():
    rng = np.random.default_rng(5)
    x0, x1 = rng.normal(size=(2, 17, 30)).astype(np.float32)
    lr = CONFIG.learning_rate
    s0 = sf.init_scale_filter(x0, CONFIG)
    s1 = sf.update_scale_filter(s0, x1, CONFIG)
    alone = sf.init_scale_filter(x1, CONFIG)
    assert s1.s_num.dtype == jnp.float32 and s1.sf_num.dtype == jnp.complex64
    np.testing.assert_allclose(s1.s_num, (1 - lr) * x0 + lr * x1, rtol=1e-6)
    np.testing.assert_allclose(s1.sf_den, (1 - lr) * s0.sf_den + lr * alone.sf_den, rtol=1e-5)
    np.testing.assert_allclose(s1.sf_num, (1 - lr) * s0.sf_num + lr * alone.sf_num,
                               rtol=1e-4, atol=1e-4 * np.abs(s1.sf_num).max())
    # The first-frame denominator is the windowed sample energy per scale frequency.
    spec = np.fft.fft(np.hanning(17)[:, None] * x0, axis=0)
    np.testing.assert_allclose(s0.sf_den, np.sum(np.abs(spec) ** 2, axis=1), rtol=1e-5)


def test_bad_sample_shape_is_rejected():
    with pytest.raises(ValueError, match="num_scales=17"):
        sf.init_scale_filter(np.zeros((16, 30)), CONFIG)


# --- synthetic zoom -------------------------------------------------------------------------------

def smooth_texture(size, seed):
    """White noise blurred by a Gaussian of sigma 1 px: fine detail that bilinear resampling
    still follows."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(size, size))
    k = np.fft.fftfreq(size)
    blur = np.exp(-2 * np.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    image = np.fft.ifft2(np.fft.fft2(noise) * blur).real
    return image / image.std()


def bilinear(image, rows, cols):
    r0 = np.clip(np.floor(rows).astype(int), 0, image.shape[0] - 2)
    c0 = np.clip(np.floor(cols).astype(int), 0, image.shape[1] - 2)
    fr, fc = rows - r0, cols - c0
    return ((1 - fr) * (1 - fc) * image[r0, c0] + (1 - fr) * fc * image[r0, c0 + 1]
            + fr * (1 - fc) * image[r0 + 1, c0] + fr * fc * image[r0 + 1, c0 + 1])


def zoomed(image, zoom):
    """The image magnified by `zoom` about its centre."""
    c = (image.shape[0] - 1) / 2
    rr, cc = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")
    return bilinear(image, (rr - c) / zoom + c, (cc - c) / zoom + c)


def scale_samples(image, center, target_hw, scales, model_hw):
    """Patches of target_hw x scale around center, resampled to model_hw, described by their
    absolute vertical and horizontal gradients (unsigned gradient energy, as HOG sees it)."""
    rows = []
    for s in scales:
        ph, pw = target_hw[0] * s, target_hw[1] * s
        r = center[0] + (np.arange(model_hw[0]) + 0.5) * ph / model_hw[0] - ph / 2
        c = center[1] + (np.arange(model_hw[1]) + 0.5) * pw / model_hw[1] - pw / 2
        patch = bilinear(image, *np.meshgrid(r, c, indexing="ij"))
        rows.append(np.abs(np.stack(np.gradient(patch))).ravel())
    return np.stack(rows).astype(np.float32)


def test_synthetic_zoom_is_recovered():
    image = smooth_texture(256, seed=7)
    center = ((256 - 1) / 2,) * 2
    target = (48.0, 36.0)
    model_hw = sf.scale_model_size(target, CONFIG)
    assert model_hw == (26, 19)
    scales = sf.scale_factors(CONFIG)
    locate = jax.jit(lambda state, xs: sf.locate_scale(state, xs, CONFIG))
    state = sf.init_scale_filter(scale_samples(image, center, target, scales, model_hw), CONFIG)
    first, refined = [], []
    for k in range(-3, 4):
        view = zoomed(image, 1.02 ** k)
        scale = 1.0
        for it in range(3):
            # As the tracker does on later frames: sample again around the new scale.
            xs = scale_samples(view, center, target, scale * scales, model_hw)
            scale *= float(locate(state, xs))
            if it == 0:
                first.append(math.log(scale) / math.log(1.02))
        refined.append(math.log(scale) / math.log(1.02))
    steps = np.arange(-3, 4)
    # One detection lands within a third of a 1.02 step (the Hann window over the scale axis
    # pulls the peak slightly towards "no change"); re-detecting converges.
    assert np.abs(np.array(first) - steps).max() < 0.35, first
    assert np.all(np.diff(first) > 0.5), first
    assert np.abs(np.array(refined) - steps).max() < 0.15, refined


def test_jitted_tracking_loop_compiles_once():
    traces = []

    def step(state, xs):
        traces.append(None)
        change = sf.locate_scale(state, xs, CONFIG)
        return sf.update_scale_filter(state, xs, CONFIG), change

    step = jax.jit(step)
    rng = np.random.default_rng(9)
    base = rng.normal(size=(17, 40)).astype(np.float32)
    state = sf.init_scale_filter(base, CONFIG)
    for _ in range(6):
        state, change = step(state, base + 0.01 * rng.normal(size=base.shape).astype(np.float32))
        assert change.dtype == jnp.float32
        # The unchanged target keeps its scale.
        assert abs(float(change) - 1) < 0.02
    assert len(traces) == 1
