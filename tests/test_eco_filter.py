"""ECO filter training (`ctjax.trackers.eco_filter`) against full-spectrum NumPy references.

The oracle is the problem written directly on the full Hermitian spectra in NumPy (the half
spectrum is extended with `conj(rot180(.))` as MATLAB's `full_fourier_coeff.m` does, blocks are
centred on the output grid, the regularisation is `scipy.signal.convolve2d` in 'full' mode):
its residual is linear in a real parameterisation of the half spectra, so its Jacobian `M` is
built column by column and `np.linalg.lstsq` gives the exact minimiser. All in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import convolve2d

from ctjax.ops.cfourier import cfft2
from ctjax.ops.cg import cg_init
from ctjax.trackers import eco_filter as ef

# Two blocks: a 9x9 map (Ho 9, Wh 5) and an even 6x6 map (Ho 7, Wh 4), projected 4 -> 3, 3 -> 2.
SPATIAL = [(9, 9), (6, 6)]
DIMS = [4, 3]
PDIMS = [3, 2]
OUT_HW = (9, 5)


# ----------------------------------------------------------------------------- NumPy oracle

def full_np(h):
    """Half `(Ho, Wh, ...)` -> full `(Ho, 2 Wh - 1, ...)`, kx = -(Wh-1) .. Wh-1."""
    return np.concatenate([np.conj(h[::-1, :0:-1]), h], axis=1)


def embed_np(f, out_hw):
    """Centres a full block spectrum in the full output grid."""
    oh, ow = out_hw[0], 2 * out_hw[1] - 1
    out = np.zeros((oh, ow) + f.shape[2:], complex)
    t, l = (oh - f.shape[0]) // 2, (ow - f.shape[1]) // 2
    out[t:t + f.shape[0], l:l + f.shape[1]] = f
    return out


def crop_np(y, hw):
    t = (y.shape[0] - hw[0]) // 2
    return y[t:t + hw[0], :hw[1]]


def weights_np(shape):
    """full_inner's weights on a half spectrum `(Ho, Wh, ...)`: 1 at kx = 0, else 2."""
    w = np.full(shape, 2.0)
    w[:, 0] = 1.0
    return w


def ip_np(a, b):
    """Real inner product of the full spectra behind two half spectra (kx on axis 1)."""
    return float(np.sum(weights_np(a.shape) * np.real(a * np.conj(b))))


def cplx(v):
    return np.concatenate([v.real.ravel(), v.imag.ravel()])


def pack(hs):
    return np.concatenate([cplx(np.asarray(h)) for h in hs])


def unpack(v, shapes):
    out, i = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(v[i:i + n].reshape(s) + 1j * v[i + n:i + 2 * n].reshape(s))
        i += 2 * n
    return out


def metric(shapes):
    return np.concatenate([np.concatenate([weights_np(s).ravel()] * 2) for s in shapes])


def response_np(hs, zs):
    """sum_d embed(sum_c full(z_dc) full(h_dc)) for one sample."""
    return sum(embed_np(np.sum(full_np(z) * full_np(h), axis=-1), OUT_HW) for h, z in zip(hs, zs))


def reg_rows(hs, kernels):
    return np.concatenate([cplx(convolve2d(full_np(h)[..., c], k, mode="full"))
                           for h, k in zip(hs, kernels) for c in range(h.shape[-1])])


def filter_residual(hs, samples, w, kernels, yfull):
    data = [np.sqrt(w[s]) * cplx(response_np(hs, [x[s] for x in samples]) - yfull)
            for s in range(len(w))]
    return np.concatenate(data + [reg_rows(hs, kernels)])


def objective_np(hs, ps, xs, kernels, lam, yfull):
    """ECO's frame-1 objective on the full spectra."""
    zs = [x @ p for x, p in zip(xs, ps)]
    data = np.sum(np.abs(response_np(hs, zs) - yfull) ** 2)
    reg = np.sum(reg_rows(hs, kernels) ** 2)
    return float(data + reg + lam * sum(np.sum(p ** 2) for p in ps))


def jacobian(fun, n):
    """Columns of an affine map's linear part."""
    f0 = fun(np.zeros(n))
    return np.stack([fun(e) - f0 for e in np.eye(n)], axis=1), -f0


def dense_operator(op, n):
    return np.stack([op(e) for e in np.eye(n)], axis=1)


# ----------------------------------------------------------------------------- problem

def eco_kernel(size, k):
    """An ECO-like reg kernel: the central k x k DFT coefficients of a quadratic window."""
    yy, xx = np.meshgrid(np.arange(size) - size // 2, np.arange(size) - size // 2, indexing="ij")
    window = 1e-4 + (1e-2 - 1e-4) * ((yy / 2.0) ** 2 + (xx / 2.0) ** 2)
    dft = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(window))) / window.size
    c = size // 2
    return np.real(dft[c - k // 2:c + k // 2 + 1, c - k // 2:c + k // 2 + 1])


def label_np(sigma=1.5):
    """ECO's Gaussian label (Poisson formula) on the half output grid, real."""
    ho, wh = OUT_HW
    ky = np.arange(ho) - ho // 2
    kx = np.arange(wh)

    def g(k, n):
        return np.sqrt(2 * np.pi) * sigma / n * np.exp(-2 * (np.pi * sigma * k / n) ** 2)

    return np.outer(g(ky, ho), g(kx, 2 * wh - 1))


def make_problem(seed=0, num_samples=3, asymmetric_reg=False):
    rng = np.random.default_rng(seed)
    samples = [np.asarray(cfft2(jnp.asarray(rng.standard_normal((num_samples, h, w, c)))))
               for (h, w), c in zip(SPATIAL, PDIMS)]
    weights = rng.uniform(0.2, 1.0, num_samples)
    weights /= weights.sum()
    if asymmetric_reg:
        kernels = [rng.standard_normal((3, 3)), rng.standard_normal((5, 3))]
    else:
        kernels = [eco_kernel(9, 3), eco_kernel(9, 5)]
    y = label_np()
    return samples, weights, kernels, y


def shapes_of(samples):
    return [x.shape[1:] for x in samples]


def to_j(xs):
    return tuple(jnp.asarray(x) for x in xs)


# ----------------------------------------------------------------------------- settings

def test_settings_match_the_matlab_runfiles():
    s = ef.FilterSettings()  # CF-VGG fECO/runfiles/testing_ECO.m
    assert (s.cg_iter, s.init_cg_iter, s.init_gn_iter, s.cg_use_fr, s.cg_standard_alpha) == (
        5, 200, 10, False, True)
    assert (s.cg_forgetting_rate, s.precond_data_param, s.precond_reg_param,
            s.precond_proj_param, s.projection_reg, s.learning_rate) == (
        75, 0.3, 0.015, 35, 5e-8, 0.011)
    assert s.init_cg_per_gn == 20
    assert s.init_forget_factor == pytest.approx(0.989 ** 75)
    h = ef.FilterSettings.eco_hc()  # ECO runfiles/OTB_HC_settings.m
    assert (h.cg_iter, h.init_cg_iter, h.init_gn_iter, h.cg_forgetting_rate,
            h.precond_data_param, h.precond_reg_param, h.precond_proj_param, h.projection_reg,
            h.learning_rate) == (5, 150, 10, 50, 0.75, 0.25, 40, 1e-7, 0.009)
    assert h.init_cg_per_gn == 15
    assert ef.FilterSettings(cg_forgetting_rate=float("inf")).init_forget_factor == 0.0
    with pytest.raises(ValueError, match="cg_iter"):
        ef.FilterSettings(cg_iter=0)


# ----------------------------------------------------------------------------- adjoints

def test_data_operator_adjoint():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        samples, *_ = make_problem(1)
        hs = [rng.standard_normal(s) + 1j * rng.standard_normal(s) for s in shapes_of(samples)]
        r = rng.standard_normal((3,) + OUT_HW) + 1j * rng.standard_normal((3,) + OUT_HW)
        ah = np.asarray(jax.jit(ef.apply_data)(to_j(hs), to_j(samples)))
        ahr = jax.jit(ef.apply_data_adjoint)(jnp.asarray(r), to_j(samples))
        lhs = sum(ip_np(ah[s], r[s]) for s in range(3))
        rhs = sum(ip_np(h, np.asarray(g)) for h, g in zip(hs, ahr))
        assert abs(lhs) > 1.0
        assert lhs == pytest.approx(rhs, rel=1e-12)
        # and A itself is the full-spectrum response restricted to kx >= 0
        want = response_np(hs, [x[1] for x in samples])[:, OUT_HW[1] - 1:]
        np.testing.assert_allclose(ah[1], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ho,wh,ksize", [(9, 5, (3, 3)), (7, 4, (5, 5)), (5, 2, (5, 3)),
                                          (3, 1, (3, 3))])
def test_reg_operator_is_self_adjoint_and_positive(ho, wh, ksize):
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        k = rng.standard_normal(ksize)
        a, b = (rng.standard_normal((ho, wh, 2)) + 1j * rng.standard_normal((ho, wh, 2))
                for _ in range(2))
        reg = jax.jit(ef.apply_reg)
        la, lb = (np.asarray(reg(jnp.asarray(u), jnp.asarray(k))) for u in (a, b))
        assert ip_np(la, b) == pytest.approx(ip_np(a, lb), rel=1e-11)
        # <h, W^H W h> = ||W E h||^2 with the full-spectrum convolution
        want = sum(np.sum(np.abs(convolve2d(full_np(a)[..., c], k)) ** 2) for c in range(2))
        assert ip_np(a, la) == pytest.approx(want, rel=1e-11)


@pytest.mark.parametrize("ho,wh,k", [(9, 5, 3), (7, 4, 5), (5, 2, 5), (9, 5, 7)])
def test_reg_operator_matches_eco_lhs_operation(ho, wh, k):
    """ECO's convn(convn(., reg), reg, 'valid') transcribed to kx >= 0, on Hermitian filters."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        ker = rng.standard_normal((k, k))
        ker = 0.5 * (ker + ker[::-1, ::-1])  # ECO's kernels are point-symmetric
        h = rng.standard_normal((ho, wh, 3)) + 1j * rng.standard_normal((ho, wh, 3))
        h[:, 0] = 0.5 * (h[:, 0] + np.conj(h[::-1, 0]))
        pad = min(k - 1, wh - 1)
        ext = np.concatenate([np.conj(h[::-1, pad:0:-1]), h], axis=1)  # kx = -pad .. wh-1
        want = np.stack([convolve2d(convolve2d(ext[..., c], ker, "full")[:, pad:], ker, "valid")
                         for c in range(3)], axis=-1)
        # leading batch axes are carried through
        hb = jnp.stack([jnp.asarray(h), 2 * jnp.asarray(h)])
        got = np.asarray(jax.jit(ef.apply_reg)(hb, jnp.asarray(ker)))
        np.testing.assert_allclose(got[0], want, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(got[1], 2 * want, rtol=1e-11, atol=1e-12)


def random_cross(rng, kh, kw):
    """A random `(kh, kw)` kernel that is zero off its centre row and column."""
    k = np.zeros((kh, kw))
    k[:, kw // 2] = rng.standard_normal(kh)
    k[kh // 2, :] = rng.standard_normal(kw)
    return k


@pytest.mark.parametrize("ho,wh,ksize", [(9, 5, (3, 5)), (7, 4, (5, 5)), (5, 2, (5, 3)),
                                          (13, 7, (7, 7)), (9, 5, (1, 7)), (9, 5, (7, 1))])
def test_cross_kernel_reg_operator_is_the_dense_one(ho, wh, ksize):
    """`apply_reg` with `cross_kernel(k)` (Kh + Kw - 1 taps) equals the full convolution with
    the dense k, general (non-Hermitian kx = 0 column) filters and leading axes included."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(11)
        k = random_cross(rng, *ksize)
        h = rng.standard_normal((2, ho, wh, 3)) + 1j * rng.standard_normal((2, ho, wh, 3))
        cross = ef.cross_kernel(jnp.asarray(k))
        np.testing.assert_array_equal(np.asarray(cross.col), k[:, ksize[1] // 2])
        np.testing.assert_array_equal(np.asarray(cross.row), k[ksize[0] // 2])
        got = np.asarray(jax.jit(ef.apply_reg)(jnp.asarray(h), cross))
        # the oracle: <a, W^H W h> = <W E a, W E h> with scipy's full convolution
        for s in range(2):
            a = rng.standard_normal((ho, wh, 3)) + 1j * rng.standard_normal((ho, wh, 3))
            want = sum(np.sum(np.real(np.conj(convolve2d(full_np(a)[..., c], k))
                                      * convolve2d(full_np(h[s])[..., c], k)))
                       for c in range(3))
            assert ip_np(a, got[s]) == pytest.approx(want, rel=1e-11)
        dense = np.asarray(jax.jit(ef.apply_reg)(jnp.asarray(h), jnp.asarray(k)))
        np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("channels_first", [False, True])
def test_filter_lhs_with_cross_kernels_matches_the_dense_least_squares(channels_first):
    """The normal operator with `CrossKernel`s (as the tracker passes them), against M^T M."""
    with jax.enable_x64(True):
        samples, w, _, y = make_problem(9, num_samples=7)  # 7: the sample loop's odd chunks
        rng = np.random.default_rng(9)
        kernels = [random_cross(rng, 3, 5), random_cross(rng, 5, 3)]
        shapes = shapes_of(samples)
        n = sum(2 * int(np.prod(s)) for s in shapes)
        m, _ = jacobian(
            lambda v: filter_residual(unpack(v, shapes), samples, w, kernels, full_np(y)), n)
        cross = tuple(ef.cross_kernel(jnp.asarray(k)) for k in kernels)
        stored = to_j(channels_first_np(samples) if channels_first else samples)
        op = jax.jit(lambda v: ef.filter_lhs(v, stored, jnp.asarray(w), cross,
                                             channels_first=channels_first))
        lhs = dense_operator(lambda e: pack(op(to_j(unpack(e, shapes)))), n)
        np.testing.assert_allclose(metric(shapes)[:, None] * lhs, m.T @ m, rtol=1e-10,
                                   atol=1e-10)


def test_projection_operator_adjoint():
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        xs = [np.asarray(cfft2(jnp.asarray(rng.standard_normal((h, w, c)))))
              for (h, w), c in zip(SPATIAL, DIMS)]
        h0 = [rng.standard_normal(x.shape[:2] + (p,)) + 1j * rng.standard_normal(x.shape[:2] + (p,))
              for x, p in zip(xs, PDIMS)]
        dps = [rng.standard_normal((c, p)) for c, p in zip(DIMS, PDIMS)]
        r = rng.standard_normal(OUT_HW) + 1j * rng.standard_normal(OUT_HW)
        bdp = np.asarray(jax.jit(ef.apply_proj)(to_j(dps), to_j(xs), to_j(h0)))
        bhr = jax.jit(ef.apply_proj_adjoint)(jnp.asarray(r), to_j(xs), to_j(h0))
        lhs = ip_np(bdp[..., None], r[..., None])
        rhs = sum(float(np.sum(d * np.asarray(g))) for d, g in zip(dps, bhr))
        assert abs(lhs) > 1.0
        assert lhs == pytest.approx(rhs, rel=1e-12)
        want = response_np(h0, [x @ d for x, d in zip(xs, dps)])[:, OUT_HW[1] - 1:]
        np.testing.assert_allclose(bdp, want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- normal equations

def channels_first_np(samples):
    """The memory layout the tracker uses: `(S, C, Ho, Wh)` per block."""
    return [np.ascontiguousarray(np.moveaxis(x, -1, 1)) for x in samples]


@pytest.mark.parametrize("channels_first", [False, True])
def test_filter_normal_equations_match_the_dense_least_squares(channels_first):
    """G L = M^T M and G rhs = M^T y (G: full_inner's metric), for a non-symmetric kernel;
    samples in either layout."""
    with jax.enable_x64(True):
        samples, w, kernels, y = make_problem(5, asymmetric_reg=True)
        shapes = shapes_of(samples)
        yfull = full_np(y)
        n = sum(2 * int(np.prod(s)) for s in shapes)
        m, target = jacobian(
            lambda v: filter_residual(unpack(v, shapes), samples, w, kernels, yfull), n)
        stored = to_j(channels_first_np(samples) if channels_first else samples)
        op = jax.jit(lambda v: ef.filter_lhs(v, stored, jnp.asarray(w), to_j(kernels),
                                             channels_first=channels_first))
        lhs = dense_operator(lambda e: pack(op(to_j(unpack(e, shapes)))), n)
        g = metric(shapes)
        np.testing.assert_allclose(g[:, None] * lhs, m.T @ m, rtol=1e-10, atol=1e-10)
        yf = [crop_np(y, s[:2]) for s in shapes]
        rhs = pack(ef.filter_rhs(stored, jnp.asarray(w), to_j(yf),
                                 channels_first=channels_first))
        np.testing.assert_allclose(g * rhs, m.T @ target, rtol=1e-10, atol=1e-12)


def test_train_filter_converges_to_the_least_squares_filter():
    with jax.enable_x64(True):
        # six samples so the (realistically weak) regularisation leaves it well posed
        samples, w, kernels, y = make_problem(6, num_samples=6)
        shapes = shapes_of(samples)
        yfull = full_np(y)
        n = sum(2 * int(np.prod(s)) for s in shapes)
        m, target = jacobian(
            lambda v: filter_residual(unpack(v, shapes), samples, w, kernels, yfull), n)
        v_star = np.linalg.lstsq(m, target, rcond=None)[0]
        yf = [crop_np(y, s[:2]) for s in shapes]
        energy = [np.sum(w[:, None, None, None] * np.abs(x) ** 2, axis=0) for x in samples]
        reg_energy = [np.sum(k ** 2) for k in kernels]
        settings = ef.FilterSettings(cg_iter=200)
        hf0 = tuple(jnp.zeros(s, complex) for s in shapes)
        hf, _ = jax.jit(lambda h: ef.train_filter(
            h, cg_init(h), to_j(samples), jnp.asarray(w), to_j(yf), to_j(kernels), to_j(energy),
            reg_energy, settings=settings))(hf0)
        np.testing.assert_allclose(pack(hf), v_star, rtol=1e-8, atol=1e-10 * np.abs(v_star).max())
        # the filter is the spectrum of a real map: kx = 0 column Hermitian in ky
        for h in hf:
            h = np.asarray(h)
            np.testing.assert_allclose(h[:, 0], np.conj(h[::-1, 0]), atol=1e-12)


def test_train_filter_five_iterations_lower_the_objective_and_warm_start():
    """ECO's update: 5 warm-started PR iterations; two updates beat one, objective falls."""
    with jax.enable_x64(True):
        samples, w, kernels, y = make_problem(7)
        shapes = shapes_of(samples)
        yf = [crop_np(y, s[:2]) for s in shapes]
        energy = [np.sum(w[:, None, None, None] * np.abs(x) ** 2, axis=0) for x in samples]
        reg_energy = [np.sum(k ** 2) for k in kernels]
        settings = ef.FilterSettings()
        f = jax.jit(lambda h, s: ef.train_filter(h, s, to_j(samples), jnp.asarray(w), to_j(yf),
                                                 to_j(kernels), to_j(energy), reg_energy,
                                                 settings=settings))
        objective = lambda h: float(np.sum(filter_residual(  # noqa: E731
            [np.asarray(u) for u in h], samples, w, kernels, full_np(y)) ** 2))
        hf = tuple(jnp.zeros(s, complex) for s in shapes)
        state = cg_init(hf)
        values = [objective(hf)]
        for _ in range(3):
            hf, state = f(hf, state)
            values.append(objective(hf))
        assert all(b < a for a, b in zip(values, values[1:])), values
        assert float(state.rho) > 0 and np.any(np.asarray(state.p[0]) != 0)


def test_train_filter_channels_first_is_the_same_update():
    """The tracker's layout (samples `(S, C, Ho, Wh)`) gives the same warm-started updates."""
    with jax.enable_x64(True):
        samples, w, kernels, y = make_problem(10, num_samples=5)
        shapes = shapes_of(samples)
        yf = to_j([crop_np(y, s[:2]) for s in shapes])
        energy = to_j([np.sum(w[:, None, None, None] * np.abs(x) ** 2, axis=0) for x in samples])
        reg_energy = [np.sum(k ** 2) for k in kernels]
        cross = tuple(ef.cross_kernel(jnp.asarray(k)) for k in kernels)

        def run(stored, first):
            f = jax.jit(lambda h, st: ef.train_filter(
                h, st, stored, jnp.asarray(w), yf, cross, energy, reg_energy,
                settings=ef.FilterSettings(), channels_first=first))
            hf = tuple(jnp.zeros(s, complex) for s in shapes)
            state = cg_init(hf)
            for _ in range(3):
                hf, state = f(hf, state)
            return hf, state

        (h0, s0), (h1, s1) = run(to_j(samples), False), run(to_j(channels_first_np(samples)), True)
        for a, b in zip(jax.tree_util.tree_leaves((h0, s0)), jax.tree_util.tree_leaves((h1, s1))):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-14)
        assert max(float(np.abs(np.asarray(h)).max()) for h in h0) > 1e-3


def test_filter_precond_formula():
    rng = np.random.default_rng(8)
    m = [rng.uniform(0, 2, (5, 3, 4)), rng.uniform(0, 2, (3, 2, 2))]
    e = [0.7, 1.3]
    s = ef.FilterSettings.eco_hc()
    got = ef.filter_precond(to_j(m), e, settings=s)
    for g, mm, ee in zip(got, m, e):
        want = 0.75 * (0.75 * mm + 0.25 * mm.mean(axis=-1, keepdims=True)) + 0.25 * ee
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6)


# ----------------------------------------------------------------------------- frame 1

def make_joint(seed=9):
    rng = np.random.default_rng(seed)
    maps = []
    for (h, w), c in zip(SPATIAL, DIMS):
        mix = rng.standard_normal((c, c)) * np.linspace(2.0, 0.3, c)
        maps.append(rng.standard_normal((h, w, c)) @ mix.T + 0.5)
    xs = [np.asarray(cfft2(jnp.asarray(m))) for m in maps]
    return maps, xs, [eco_kernel(9, 3), eco_kernel(9, 5)], label_np()


def test_joint_operator_is_the_gauss_newton_normal_operator():
    """G L = J^T J for the residual linearised in NumPy (non-zero h0, random P)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(10)
        _, xs, kernels, y = make_joint()
        lam = 0.3
        ps = [rng.standard_normal((c, p)) for c, p in zip(DIMS, PDIMS)]
        hshapes = [x.shape[:2] + (p,) for x, p in zip(xs, PDIMS)]
        h0 = [rng.standard_normal(s) + 1j * rng.standard_normal(s) for s in hshapes]
        nh = sum(2 * int(np.prod(s)) for s in hshapes)
        npj = sum(c * p for c, p in zip(DIMS, PDIMS))

        def split(v):
            hs = unpack(v[:nh], hshapes)
            dps, i = [], nh
            for c, p in zip(DIMS, PDIMS):
                dps.append(v[i:i + c * p].reshape(c, p))
                i += c * p
            return hs, dps

        def residual(v):
            hs, dps = split(v)
            zs = [x @ p for x, p in zip(xs, ps)]
            lin = response_np(hs, zs) + response_np(h0, [x @ d for x, d in zip(xs, dps)])
            return np.concatenate([cplx(lin), reg_rows(hs, kernels),
                                   np.concatenate([np.sqrt(lam) * d.ravel() for d in dps])])

        m, _ = jacobian(residual, nh + npj)
        zf = tuple(ef.project(jnp.asarray(x), jnp.asarray(p)) for x, p in zip(xs, ps))
        op = jax.jit(lambda hs, dps: ef.joint_lhs((hs, dps), zf, to_j(xs), to_j(h0),
                                                  to_j(kernels), lam))

        def apply(v):
            hs, dps = split(v)
            oh, op_ = op(to_j(hs), to_j(dps))
            return np.concatenate([pack(oh)] + [np.asarray(d).ravel() for d in op_])

        lhs = dense_operator(apply, nh + npj)
        g = np.concatenate([metric(hshapes), np.ones(npj)])
        np.testing.assert_allclose(g[:, None] * lhs, m.T @ m, rtol=1e-10, atol=1e-9)
        # adjoint identity <L a, b> = <a, L b> in the joint inner product
        a, b = rng.standard_normal(nh + npj), rng.standard_normal(nh + npj)
        assert np.dot(g * apply(a), b) == pytest.approx(np.dot(g * a, apply(b)), rel=1e-11)


def test_pca_projection_matches_numpy_svd():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((7, 8, 5)) @ (rng.standard_normal((5, 5)) * [3, 2, 1.5, 1, 0.5])
    p = np.asarray(ef.pca_projection(jnp.asarray(x, jnp.float32), 3))
    xc = x.reshape(-1, 5) - x.reshape(-1, 5).mean(axis=0)
    u, _, _ = np.linalg.svd(xc.T @ xc)
    np.testing.assert_allclose(np.abs(p.T @ u[:, :3]), np.eye(3), atol=1e-4)
    assert p.dtype == np.float32
    big = p[np.argmax(np.abs(p), axis=0), np.arange(3)]
    assert np.all(big > 0)
    with pytest.raises(ValueError, match="dim"):
        ef.pca_projection(jnp.asarray(x), 6)


def test_gauss_newton_lowers_the_joint_objective_each_iteration():
    with jax.enable_x64(True):
        maps, xs, kernels, y = make_joint()
        settings = ef.FilterSettings()
        lam = settings.projection_reg
        p0 = tuple(ef.pca_projection(jnp.asarray(mp), p) for mp, p in zip(maps, PDIMS))
        yf = [crop_np(y, x.shape[:2]) for x in xs]
        energy = tuple(jnp.abs(ef.project(jnp.asarray(x), p)) ** 2 for x, p in zip(xs, p0))
        reg_energy = [np.sum(k ** 2) for k in kernels]
        diag = ef.joint_precond(to_j(yf), p0, energy, reg_energy, settings=settings)
        step = jax.jit(lambda h, p: ef.joint_gn_step(h, p, to_j(xs), to_j(yf), to_j(kernels), diag,
                                                     settings=settings))
        obj = lambda h, p: objective_np([np.asarray(u) for u in h],  # noqa: E731
                                        [np.asarray(q) for q in p], xs, kernels, lam, full_np(y))
        hf = tuple(jnp.zeros(x.shape[:2] + (p,), complex) for x, p in zip(xs, PDIMS))
        p = p0
        values = [obj(hf, p)]
        for _ in range(settings.init_gn_iter):
            hf, p = step(hf, p)
            values.append(obj(hf, p))
        assert all(b < a for a, b in zip(values, values[1:])), values
        assert values[-1] < 1e-4 * values[0]
        # the projection moved away from the PCA start
        assert max(float(np.abs(np.asarray(q - q0)).max()) for q, q0 in zip(p, p0)) > 1e-3
        # train_joint runs the same iterations from hf = 0, P = p0; the tracker runs it jitted
        # in float32, which must keep its dtypes and reach the same fit
        f32 = lambda xs: tuple(jnp.asarray(x, jnp.float32) for x in xs)  # noqa: E731
        c64 = tuple(jnp.asarray(x, jnp.complex64) for x in xs)
        p32 = tuple(ef.pca_projection(jnp.asarray(mp, jnp.float32), p)
                    for mp, p in zip(maps, PDIMS))
        e32 = tuple(jnp.abs(ef.project(x, p)) ** 2 for x, p in zip(c64, p32))
        hj, pj = jax.jit(lambda x, y, k, p, e: ef.train_joint(x, y, k, p, e, reg_energy,
                                                              settings=settings))(
            c64, f32(yf), f32(kernels), p32, e32)
        assert all(h.dtype == jnp.complex64 for h in hj) and all(q.dtype == jnp.float32 for q in pj)
        got = obj([np.asarray(h, complex) for h in hj], [np.asarray(q, float) for q in pj])
        assert got == pytest.approx(values[-1], rel=3e-2)
