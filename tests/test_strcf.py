"""STRCF tracker (`ctjax.trackers.strcf`): every numerical piece against an independent NumPy
reference (a direct solve of the STRCF objective built from spatial correlation matrices, a
literal transcription of `tracker.m`'s ADMM, explicit Fourier sums), plus tracking a synthetic
moving texture and the compile-once property of the step."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import need_data

from ctjax import paths
from ctjax.ops import cfourier, fourier
from ctjax.ops.crop import to_canvas
from ctjax.trackers import presets, strcf

# ---------------------------------------------------------------------------------------------
# NumPy references


def _corr_matrix(x):
    """A with (A f)[n] = sum_d sum_m f_d(m) x_d(m + n), circular; f flattened (H, W, D)."""
    h, w, d = x.shape
    n0, n1, m0, m1 = np.meshgrid(np.arange(h), np.arange(w), np.arange(h), np.arange(w),
                                 indexing="ij")
    a = x[(m0 + n0) % h, (m1 + n1) % w]              # (h, w, h, w, d)
    return a.reshape(h * w, h * w * d)


def _objective(x, y, reg, prev, mu, T):
    """STRCF's E(f) in the spatial domain and its direct minimiser."""
    a = _corr_matrix(x)
    w2 = np.repeat(reg.ravel() ** 2, x.shape[-1])

    def energy(f):
        r = a @ f.ravel() - y.ravel()
        return 0.5 / T * r @ r + 0.5 * np.sum(w2 * f.ravel() ** 2) + \
            0.5 * mu * np.sum((f - prev) ** 2)

    m = a.T @ a / T + np.diag(w2) + mu * np.eye(a.shape[1])
    fstar = np.linalg.solve(m, a.T @ y.ravel() / T + mu * prev.ravel()).reshape(x.shape)
    return energy, fstar


def _tracker_m_admm(xf, yf, reg, prev_f, mu, T, iters, gamma, gamma_max, step):
    """Literal NumPy transcription of STRCF `tracker.m` (full fft2 spectra, MATLAB formulas)."""
    ff = np.zeros_like(xf)
    gf, hf = ff.copy(), ff.copy()
    s_xx = np.sum(np.conj(xf) * xf, 2)[..., None]
    sfx_pre = xf * np.sum(np.conj(xf) * prev_f, 2)[..., None]
    yk = yf[..., None]
    for _ in range(iters):
        b = s_xx + T * (gamma + mu)
        sgx = np.sum(np.conj(xf) * gf, 2)[..., None]
        shx = np.sum(np.conj(xf) * hf, 2)[..., None]
        ff = ((1 / (T * (gamma + mu)) * yk * xf) - (1 / (gamma + mu)) * hf
              + (gamma / (gamma + mu)) * gf + (mu / (gamma + mu)) * prev_f
              - ((1 / (T * (gamma + mu))) * xf * (s_xx * yk) + (mu / (gamma + mu)) * sfx_pre
                 - (1 / (gamma + mu)) * xf * shx + (gamma / (gamma + mu)) * xf * sgx) / b)
        big_x = np.real(np.fft.ifft2(gamma * ff + hf, axes=(0, 1)))
        gf = np.fft.fft2(big_x / (reg[..., None] ** 2 + gamma), axes=(0, 1))
        hf = hf + gamma * (ff - gf)
        gamma = min(step * gamma, gamma_max)
    return ff


def _problem(seed, hw=(6, 8), d=3, w_max=1e2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*hw, d))
    y = np.asarray(strcf.strcf_label(hw, 1.0), np.float64)
    reg = np.full(hw, w_max)
    reg[2:4, 3:6] = 1e-3
    prev = 0.1 * rng.standard_normal((*hw, d))
    return x, y, reg, prev


def _admm(x, y, reg, prev, *, mu, T, penalties):
    hw = x.shape[:2]
    st = strcf.admm_solve(fourier.rfft2(jnp.asarray(x)), fourier.rfft2_map(jnp.asarray(y)),
                          jnp.asarray(reg), fourier.rfft2(jnp.asarray(prev)), mu=mu, T=T, hw=hw,
                          penalties=penalties)
    return (np.asarray(fourier.irfft2(st.ff, hw)), np.asarray(fourier.irfft2(st.gf, hw)))


# ---------------------------------------------------------------------------------------------
# ADMM


def test_published_admm_matches_a_transcription_of_tracker_m():
    cfg = strcf.StrcfConfig()
    assert strcf.penalty_schedule(cfg) == (1.0, 0.1)
    with jax.enable_x64(True):
        for hw, mu in (((6, 8), 15.0), ((7, 5), 0.0)):
            x, y, reg, prev = _problem(1, hw, w_max=1e5)
            T = 61.0
            got = strcf.admm_solve(
                fourier.rfft2(jnp.asarray(x)), fourier.rfft2_map(jnp.asarray(y)),
                jnp.asarray(reg), fourier.rfft2(jnp.asarray(prev)), mu=mu, T=T, hw=hw,
                penalties=strcf.penalty_schedule(cfg)).ff
            want = _tracker_m_admm(np.fft.fft2(x, axes=(0, 1)), np.fft.fft2(y), reg,
                                   np.fft.fft2(prev, axes=(0, 1)), mu, T, 2, 1.0, 0.1, 10.0)
            np.testing.assert_allclose(np.asarray(got), want[:, :hw[1] // 2 + 1],
                                       rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mu", [2.0, 15.0])
def test_admm_converges_to_the_direct_solve(mu):
    with jax.enable_x64(True):
        x, y, reg, prev = _problem(2)
        T = 48.0
        _, fstar = _objective(x, y, reg, prev, mu, T)
        f, g = _admm(x, y, reg, prev, mu=mu, T=T, penalties=(1.0,) * 1000)
        scale = np.abs(fstar).max()
        np.testing.assert_allclose(f, fstar, atol=1e-8 * scale)
        np.testing.assert_allclose(g, fstar, atol=1e-8 * scale)


def test_zero_temporal_weight_gives_the_srdcf_solution():
    """mu = 0: the minimiser of 1/(2T)||r||^2 + 1/2||w f||^2 (SRDCF's single-sample
    objective), whatever the previous filter."""
    with jax.enable_x64(True):
        x, y, reg, prev = _problem(3)
        T = 48.0
        _, srdcf = _objective(x, y, reg, np.zeros_like(prev), 0.0, T)
        f1, _ = _admm(x, y, reg, prev, mu=0.0, T=T, penalties=(1.0,) * 300)
        f2, _ = _admm(x, y, reg, 5 * prev, mu=0.0, T=T, penalties=(1.0,) * 300)
        np.testing.assert_allclose(f1, srdcf, atol=1e-9)
        np.testing.assert_allclose(f2, srdcf, atol=1e-9)
        # and the temporal term matters when mu > 0
        f3, _ = _admm(x, y, reg, prev, mu=15.0, T=T, penalties=(1.0,) * 300)
        assert np.abs(f3 - srdcf).max() > 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_admm_lowers_the_objective_at_each_iteration(seed):
    """With the penalty held at its published start (gamma = 1), E at the spatially
    regularised iterate g falls at every iteration from the zero start towards E(f*)."""
    with jax.enable_x64(True):
        x, y, reg, prev = _problem(seed, w_max=1e5)
        T, mu = 48.0, 15.0 if seed % 2 else 2.0
        energy, fstar = _objective(x, y, reg, prev, mu, T)
        values = [energy(np.zeros_like(x))]
        for k in range(1, 13):
            values.append(energy(_admm(x, y, reg, prev, mu=mu, T=T, penalties=(1.0,) * k)[1]))
        values = np.array(values)
        assert np.all(np.diff(values) < 0), values
        assert values[-1] >= energy(fstar) - 1e-12


# ---------------------------------------------------------------------------------------------
# Windows, labels, features


def test_label_and_reg_window_follow_tracker_m():
    for n in (6, 7, 13, 52):
        # MATLAB: rg = circshift(-floor((n-1)/2):ceil((n-1)/2), [0 -floor((n-1)/2)])
        rg = np.roll(np.arange(-((n - 1) // 2), (n - 1) - (n - 1) // 2 + 1), -((n - 1) // 2))
        want = np.exp(-0.5 * (rg[:, None] ** 2 + rg[None, :] ** 2) / 1.7 ** 2)
        np.testing.assert_allclose(np.asarray(strcf.strcf_label((n, n), 1.7)), want, rtol=1e-6,
                                   atol=1e-7)
    for (h, w), (sh, sw) in (((52, 52), (9, 14)), ((13, 13), (3, 4)), ((14, 11), (5, 2))):
        want = np.full((h, w), 1e5)
        ch = (h + 1) // 2 + (h + 1) % 2            # 1-based centre, as tracker.m
        cw = (w + 1) // 2 + (w + 1) % 2
        rows = np.arange(ch - sh // 2, ch + sh - 1 - sh // 2 + 1) - 1
        cols = np.arange(cw - sw // 2, cw + sw - 1 - sw // 2 + 1) - 1
        want[np.ix_(rows, cols)] = 1e-3
        got = strcf.reg_window((h, w), jnp.array([sh, sw], jnp.float32), w_min=1e-3, w_max=1e5)
        np.testing.assert_array_equal(np.asarray(got), want.astype(np.float32))


def test_min_max_and_window():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(np.asarray(strcf.min_max_channels(jnp.asarray(x))),
                               (x - lo) / (hi + 1e-7 - lo), atol=1e-6)
    np.testing.assert_allclose(strcf.cos_window((5, 4))[..., 0],
                               np.outer(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(5) / 4),
                                        0.5 - 0.5 * np.cos(2 * np.pi * np.arange(4) / 3)),
                               atol=1e-7)


def test_hand_crafted_block_and_colour_gating():
    """Block 0 is grey, fHOG and colour names side by side, unnormalised; colour names are
    zero on grey sequences (STRCF's `useForGray = false`)."""
    from ctjax.features import colornames, fhog
    rng = np.random.default_rng(3)
    patches = jnp.asarray(rng.uniform(0, 255, (2, 32, 32, 3)), jnp.float32)
    table = jnp.asarray(rng.uniform(0, 1, (32768, 10)), jnp.float32)
    feats = strcf.StrcfFeatures(support=32, colour_names=True)
    want = jax.jit(lambda x, t: jnp.concatenate(
        [colornames.grey(x, cell=4), fhog.fhog(x, cell=4),
         colornames.colour_names(x, t, cell=4)], axis=-1))(patches, table)
    run = jax.jit(lambda x, t, c: feats({"cn": t, "cnn": None}, x, c)[0])
    np.testing.assert_allclose(np.asarray(run(patches, table, True)), want, atol=1e-6)
    grey = run(patches, table, False)
    np.testing.assert_allclose(np.asarray(grey[..., :32]), want[..., :32], atol=1e-6)
    assert not np.any(np.asarray(grey[..., 32:]))


# ---------------------------------------------------------------------------------------------
# Fourier series of the response


@pytest.mark.parametrize("hw", [(8, 10), (7, 9), (6, 5)])
def test_centred_spectrum_is_the_trigonometric_interpolant(hw):
    h, w = hw
    rng = np.random.default_rng(1)
    r = rng.standard_normal(hw)
    with jax.enable_x64(True):
        c = strcf.centred_spectrum(fourier.rfft2_map(jnp.asarray(r)), hw)
        # sample_fs on a grid twice as fine: even samples are the map's cells
        fine = np.asarray(cfourier.sample_fs(c, (2 * h, 2 * w)))
    np.testing.assert_allclose(fine[::2, ::2], r, atol=1e-10)
    # half-cell values of a band-limited cosine are the cosine's
    ky, kx = 1, 2
    n, m = np.arange(h)[:, None], np.arange(w)[None, :]
    cosine = np.cos(2 * np.pi * (ky * n / h + kx * m / w) + 0.3)
    with jax.enable_x64(True):
        c = strcf.centred_spectrum(fourier.rfft2_map(jnp.asarray(cosine)), hw)
        fine = np.asarray(cfourier.sample_fs(c, (2 * h, 2 * w)))
    n2, m2 = np.arange(2 * h)[:, None] / 2, np.arange(2 * w)[None, :] / 2
    np.testing.assert_allclose(fine, np.cos(2 * np.pi * (ky * n2 / h + kx * m2 / w) + 0.3),
                               atol=1e-10)


def test_response_spectrum_sums_block_correlations():
    """Two blocks (12 x 12 cells and 3 x 3 cells of 4x the size): the summed series, read at
    the coarse cells, is the sum of each block's spatial circular correlation."""
    rng = np.random.default_rng(2)
    fine_x, coarse_x = rng.standard_normal((2, 12, 12, 2)), rng.standard_normal((2, 3, 3, 4))
    fine_f, coarse_f = rng.standard_normal((12, 12, 2)), rng.standard_normal((3, 3, 4))
    geo = strcf.Geometry(48, ((12, 12), (3, 3)), (13, 13), 144.0)
    with jax.enable_x64(True):
        spec = strcf.response_spectrum(
            (fourier.rfft2(jnp.asarray(fine_f)), fourier.rfft2(jnp.asarray(coarse_f))),
            (fourier.rfft2(jnp.asarray(fine_x)), fourier.rfft2(jnp.asarray(coarse_x))), geo)
        grid = np.asarray(cfourier.sample_fs(spec, (24, 24)))    # 2 samples per fine cell
    for s in range(2):
        want = (_corr_matrix(fine_x[s]) @ fine_f.ravel()).reshape(12, 12)[::4, ::4] + \
            (_corr_matrix(coarse_x[s]) @ coarse_f.ravel()).reshape(3, 3)
        np.testing.assert_allclose(grid[s, ::8, ::8], want, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# The tracker


def _texture(seed, hw):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (hw[0] // 4 + 2, hw[1] // 4 + 2, 3))
    big = np.kron(noise, np.ones((4, 4, 1)))          # blocky texture with strong gradients
    return big[:hw[0], :hw[1]].astype(np.uint8)


def _moving_sequence(n, shift, *, seed=0, frame_hw=(120, 160), box=(60, 40, 24, 20)):
    """The whole scene translates by `shift` (dy, dx) px per frame; so does the target."""
    base = _texture(seed, (frame_hw[0] + 2 * 40, frame_hw[1] + 2 * 40))
    frames, boxes = [], []
    for t in range(n):
        dy, dx = (int(round(v * t)) for v in shift)
        frames.append(base[40 - dy:40 - dy + frame_hw[0], 40 - dx:40 - dx + frame_hw[1]])
        boxes.append([box[0] + dx, box[1] + dy, box[2], box[3]])
    return frames, np.array(boxes, np.float32)


def _small_tracker(with_cnn: bool):
    cfg = strcf.StrcfConfig(canvas_hw=(128, 160), search_area_scale=4.0)
    if not with_cnn:
        return cfg, strcf.StrcfFeatures(support=96), {"cn": None, "cnn": None}
    from ctjax.features.cnn import LayerSpec, cnn_extractor, cnn_params
    from ctjax.models import registry, weights
    from ctjax.models.student import student_preprocessing
    config = registry.MODEL_CONFIGS["cf_vggm_r64"]
    loaded = weights.LoadedModel(
        config=config, variables=registry.init_variables(config, jax.random.PRNGKey(0),
                                                         input_hw=(80, 80)),
        preprocessing=student_preprocessing(), source="random")
    ex = cnn_extractor(loaded, (LayerSpec("conv3"),))
    feats = strcf.StrcfFeatures(support=64, cnn=ex, cnn_input=80)     # conv3: 4 x 4 cells
    return cfg, feats, {"cn": None, "cnn": cnn_params(loaded, 80)}


def _track(step, init, params, cfg, frames, gt):
    state = init(params, to_canvas(frames[0], cfg.canvas_hw), gt[0])
    for frame, want in zip(frames[1:], gt[1:]):
        state, box, score = step(params, state, to_canvas(frame, cfg.canvas_hw))
        got_c = np.asarray(box[:2] + box[2:] / 2)
        want_c = want[:2] + want[2:] / 2
        assert np.abs(got_c - want_c).max() < 4.0, (got_c, want_c)   # within one HOG cell
        assert np.isfinite(float(score))
    np.testing.assert_allclose(np.asarray(box[2:]), gt[-1, 2:], rtol=0.1)


def test_tracks_moving_textures_within_a_cell_and_the_step_traces_once():
    """Two sequences (different boxes and motions, sub-pixel steps) through one jitted step,
    which must trace exactly once over all their frames."""
    cfg, feats, params = _small_tracker(False)
    tr = strcf.make_tracker(cfg, feats)

    def step_fn(params, state, frame):
        return tr.step_fn(params, state, frame)

    init = jax.jit(tr.init_fn)
    step = jax.jit(chex.assert_max_traces(step_fn, n=1))
    for seed, box, shift in ((0, (60, 40, 24, 20), (1.5, -2.0)), (1, (30, 50, 40, 12), (0, 2.5))):
        frames, gt = _moving_sequence(12, shift, seed=seed, box=box)
        _track(step, init, params, cfg, frames, gt)


def test_tracks_a_moving_texture_with_a_cnn_block():
    cfg, feats, params = _small_tracker(True)
    tr = strcf.make_tracker(cfg, feats)
    frames, gt = _moving_sequence(6, (-2.0, 1.0), seed=2)
    _track(jax.jit(tr.step_fn), jax.jit(tr.init_fn), params, cfg, frames, gt)


def test_bad_configurations_are_rejected():
    with pytest.raises(ValueError, match="number_of_scales"):
        strcf.StrcfConfig(number_of_scales=4)
    with pytest.raises(ValueError, match="multiple of the cell"):
        strcf.StrcfFeatures(support=98)


def test_presets_carry_the_published_settings():
    need_data(paths.released_student)
    need_data(paths.lookup_file, "CNnorm.mat")
    need_data(paths.weights_file, "efficientnet_lite0_imagenet_torch_layout.npz")
    assert {"strcf", "deepstrcf", "fdeepstrcf"} <= set(presets.available())
    f = presets.build("fdeepstrcf", weights="released")
    assert (f.config.number_of_scales, f.config.scale_step) == (3, 1.02)
    assert (f.config.temporal_reg, strcf.penalty_schedule(f.config)) == (15.0, (1.0, 0.1))
    assert f.extractor.cnn.layers[0].name == "conv3" and not f.extractor.colour_names
    assert f.params["cnn"]["variables"]["params"]["conv3"]["kernel"].shape == (3, 3, 32, 64)
    d = presets.build("deepstrcf")
    assert (d.config.number_of_scales, d.config.scale_step) == (5, 1.01)
    assert d.extractor.colour_names and d.extractor.support == f.extractor.support
    assert strcf.geometry(f.extractor).block_hw == strcf.geometry(d.extractor).block_hw
    h = presets.build("strcf")
    assert h.extractor.cnn is None and h.config.search_area_scale == 5.0
    assert h.params["cn"].shape == (32768, 10)
    with pytest.raises(ValueError, match="no --weights"):
        presets.build("strcf", weights="released")
