"""Tests for ctjax.ops.sample_space against a NumPy transcription of ECO's MATLAB update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax.ops import sample_space as ss

BLOCKS = [(5, 3, 4), (3, 2, 2)]


def block_ip(a, b):
    """Sum over blocks of the full-spectrum inner product: kx > 0 columns count twice."""
    total = 0.0
    for x, y in zip(a, b):
        prod = np.real(x * np.conj(y))
        total += 2 * prod.sum() - prod[..., :, 0, :].sum()
    return total


class EcoReference:
    """Plain transcription of update_sample_space_model.m / update_distance_matrix.m /
    merge_samples.m (0-based slots, MATLAB inf initialisation, max() ignoring NaN)."""

    def __init__(self, num_slots, lr, min_weight):
        self.S, self.lr, self.min_weight = num_slots, lr, min_weight
        self.samples = [np.zeros((num_slots, *s), complex) for s in BLOCKS]
        self.weights = np.zeros(num_slots)
        self.dist = np.full((num_slots, num_slots), np.inf)
        self.gram = np.full((num_slots, num_slots), np.inf)
        self.n = 0

    def slot(self, i):
        return [s[i] for s in self.samples]

    def update_distance_matrix(self, gvec, new_norm, id1, id2, w1, w2):
        a1 = w1 / (w1 + w2)
        a2 = 1 - a1
        G, D = self.gram, self.dist
        if id2 < 0:
            norm1 = G[id1, id1]
            if a1 == 0:
                G[:, id1] = gvec
                G[id1, :] = G[:, id1]
                G[id1, id1] = new_norm
            elif a2 != 0:
                G[:, id1] = a1 * G[:, id1] + a2 * gvec
                G[id1, :] = G[:, id1]
                G[id1, id1] = a1**2 * norm1 + a2**2 * new_norm + 2 * a1 * a2 * gvec[id1]
            with np.errstate(invalid="ignore"):
                D[:, id1] = np.fmax(G[id1, id1] + np.diag(G) - 2 * G[:, id1], 0)
            D[id1, :] = D[:, id1]
            D[id1, id1] = np.inf
        else:
            n1, n2, ip12 = G[id1, id1], G[id2, id2], G[id1, id2]
            G[:, id1] = a1 * G[:, id1] + a2 * G[:, id2]
            G[id1, :] = G[:, id1]
            G[id1, id1] = a1**2 * n1 + a2**2 * n2 + 2 * a1 * a2 * ip12
            gvec = gvec.copy()
            gvec[id1] = a1 * gvec[id1] + a2 * gvec[id2]
            G[:, id2] = gvec
            G[id2, :] = G[:, id2]
            G[id2, id2] = new_norm
            for i in (id1, id2):
                with np.errstate(invalid="ignore"):
                    D[:, i] = np.fmax(G[i, i] + np.diag(G) - 2 * G[:, i], 0)
                D[i, :] = D[:, i]
                D[i, i] = np.inf

    def update(self, new):
        S, lr, w = self.S, self.lr, self.weights
        gvec = np.full(S, np.inf)
        for i in range(self.n):
            gvec[i] = block_ip(self.slot(i), new)
        new_norm = block_ip(new, new)
        with np.errstate(invalid="ignore"):
            dvec = np.fmax(new_norm + np.diag(self.gram) - 2 * gvec, 0)
        dvec[self.n:] = np.inf
        merged, merged_id, new_id = None, -1, -1
        if self.n == S:
            min_id = int(np.argmin(w))
            if w[min_id] < self.min_weight:
                case = ss.REPLACE
                self.update_distance_matrix(gvec, new_norm, min_id, -1, 0, 1)
                w[min_id] = 0
                w[:] = w * (1 - lr) / w.sum()
                w[min_id] = lr
                new_id = min_id
            else:
                closest = int(np.argmin(dvec))
                flat = int(np.argmin(self.dist.ravel(order="F")))
                c1, c2 = np.unravel_index(flat, self.dist.shape, order="F")
                assert c1 != c2
                if dvec[closest] < self.dist.ravel(order="F")[flat]:
                    case = ss.MERGE_NEW
                    w *= 1 - lr
                    merged_id = closest
                    a = w[closest] / (w[closest] + lr)
                    merged = [a * s + (1 - a) * x for s, x in zip(self.slot(closest), new)]
                    self.update_distance_matrix(gvec, new_norm, closest, -1, w[closest], lr)
                    w[closest] += lr
                else:
                    case = ss.MERGE_PAIR
                    w *= 1 - lr
                    if w[c2] > w[c1]:
                        c1, c2 = c2, c1
                    a = w[c1] / (w[c1] + w[c2])
                    merged = [a * s1 + (1 - a) * s2
                              for s1, s2 in zip(self.slot(c1), self.slot(c2))]
                    self.update_distance_matrix(gvec, new_norm, c1, c2, w[c1], w[c2])
                    w[c1] += w[c2]
                    w[c2] = lr
                    merged_id, new_id = int(c1), int(c2)
        else:
            case = ss.INSERT
            pos = self.n
            self.update_distance_matrix(gvec, new_norm, pos, -1, 0, 1)
            if pos == 0:
                w[pos] = 1
            else:
                w *= 1 - lr
                w[pos] = lr
            new_id = pos
        assert abs(1 - w.sum()) < 1e-5
        self.n = min(self.n + 1, S)
        for k in range(len(BLOCKS)):
            if merged_id >= 0:
                self.samples[k][merged_id] = merged[k]
            if new_id >= 0:
                self.samples[k][new_id] = new[k]
        return case, merged_id, new_id


def sample_stream(rng, count):
    """Fresh samples, near-copies of earlier ones and a few large outliers, so that every
    case of the update occurs."""
    fed = []
    for t in range(count):
        kind = rng.integers(3) if t >= 3 else 0
        if kind == 1:
            base = fed[rng.integers(len(fed))]
            new = [b + 0.05 * (rng.normal(size=b.shape) + 1j * rng.normal(size=b.shape))
                   for b in base]
        else:
            scale = 3.0 if kind == 2 else 1.0
            new = [scale * (rng.normal(size=s) + 1j * rng.normal(size=s)) for s in BLOCKS]
        fed.append(new)
        yield new


def assert_matches_reference(space, ref, rtol, channels_first=False):
    n = ref.n
    assert int(space.num_samples) == n
    np.testing.assert_allclose(space.prior_weights, ref.weights, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(space.gram_matrix[:n, :n], ref.gram[:n, :n], rtol=rtol)
    d, d_ref = np.asarray(space.distance_matrix)[:n, :n], ref.dist[:n, :n]
    np.testing.assert_array_equal(np.isinf(d), np.isinf(d_ref))
    np.testing.assert_allclose(d[np.isfinite(d)], d_ref[np.isfinite(d_ref)], rtol=rtol,
                               atol=rtol * np.abs(ref.gram[:n, :n]).max())
    for s, s_ref in zip(space.samplesf, ref.samples):
        s = np.moveaxis(np.asarray(s), 1, -1) if channels_first else s
        np.testing.assert_allclose(s, s_ref, rtol=rtol, atol=1e-12)
    # Conventions for empty slots: inf distances, zero gram rows, zero samples and weights.
    assert np.all(np.isinf(np.asarray(space.distance_matrix)[n:]))
    assert np.all(np.asarray(space.gram_matrix)[n:] == 0)
    assert np.all(np.asarray(space.prior_weights)[n:] == 0)


@pytest.mark.parametrize("channels_first", [False, True])
def test_update_matches_eco_transcription_in_every_case(channels_first):
    """Both layouts: blocks (Ho, Wh, C) and, as the ECO tracker stores them, (C, Ho, Wh)."""
    num_slots, lr = 5, 0.2
    min_weight = lr * (1 - lr) ** (2 * num_slots)  # ECO's minimum_sample_weight
    traces = []

    def step(space, new, lr, min_weight):
        traces.append(None)
        return ss.update_sample_space(space, new, learning_rate=lr, min_sample_weight=min_weight,
                                      channels_first=channels_first)

    layout = (lambda b: np.moveaxis(b, -1, 0)) if channels_first else (lambda b: b)
    shapes = [layout(np.zeros(b)).shape for b in BLOCKS]
    with jax.enable_x64(True):
        step_jit = jax.jit(step)
        space = ss.init_sample_space(shapes, num_slots, dtype=jnp.complex128)
        assert space.samplesf[0].shape == (num_slots, *shapes[0])
        ref = EcoReference(num_slots, lr, min_weight)
        cases = []
        for new in sample_stream(np.random.default_rng(0), 60):
            space, info = step_jit(space, tuple(layout(b) for b in new), lr, min_weight)
            case, merged_id, new_id = ref.update(new)
            assert (int(info.case), int(info.merged_slot), int(info.new_slot)) == (
                case, merged_id, new_id)
            assert_matches_reference(space, ref, rtol=1e-9, channels_first=channels_first)
            np.testing.assert_allclose(float(jnp.sum(space.prior_weights)), 1.0, rtol=1e-12)
            cases.append(case)
    assert len(traces) == 1
    counts = np.bincount(cases, minlength=4)
    assert counts[ss.INSERT] == num_slots
    assert all(counts[c] > 0 for c in (ss.REPLACE, ss.MERGE_NEW, ss.MERGE_PAIR)), counts


def test_float32_weights_sum_to_one_and_compile_once():
    num_slots, lr = 8, 0.011
    traces = []

    @jax.jit
    def step(space, new):
        traces.append(None)
        return ss.update_sample_space(space, new, learning_rate=lr,
                                      min_sample_weight=lr * (1 - lr) ** (2 * num_slots))

    space = ss.init_sample_space(BLOCKS, num_slots)
    assert space.samplesf[0].dtype == jnp.complex64
    assert space.prior_weights.dtype == jnp.float32
    cases = set()
    for new in sample_stream(np.random.default_rng(1), 30):
        space, info = step(space, tuple(np.complex64(b) for b in new))
        cases.add(int(info.case))
        assert space.samplesf[0].dtype == jnp.complex64
        np.testing.assert_allclose(float(jnp.sum(space.prior_weights)), 1.0, rtol=1e-5)
        assert bool(jnp.all(space.prior_weights >= 0))
    assert len(traces) == 1
    assert {ss.INSERT, ss.MERGE_NEW, ss.MERGE_PAIR} <= cases


def test_distance_is_squared_norm_of_difference():
    # Independent of the gram bookkeeping: ||a - b||^2 of the full spectra, recomputed.
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        space = ss.init_sample_space(BLOCKS, 3, dtype=jnp.complex128)
        fed = []
        for _ in range(3):
            new = [rng.normal(size=s) + 1j * rng.normal(size=s) for s in BLOCKS]
            fed.append(new)
            space, _ = ss.update_sample_space(space, tuple(new), learning_rate=0.1,
                                              min_sample_weight=0.0)
        for i in range(3):
            for j in range(3):
                expected = np.inf if i == j else block_ip(
                    [a - b for a, b in zip(fed[i], fed[j])],
                    [a - b for a, b in zip(fed[i], fed[j])])
                np.testing.assert_allclose(space.distance_matrix[i, j], expected, rtol=1e-10)
        np.testing.assert_allclose(space.prior_weights, [0.81, 0.09, 0.1], rtol=1e-12)


def test_set_sample_refreshes_gram_and_distances():
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        space = ss.init_sample_space(BLOCKS, 4, dtype=jnp.complex128)
        fed = []
        for _ in range(3):
            new = [rng.normal(size=s) + 1j * rng.normal(size=s) for s in BLOCKS]
            fed.append(new)
            space, _ = ss.update_sample_space(space, tuple(new), learning_rate=0.1,
                                              min_sample_weight=0.0)
        replacement = [rng.normal(size=s) + 1j * rng.normal(size=s) for s in BLOCKS]
        fed[1] = replacement
        out = ss.set_sample(space, 1, tuple(replacement))
        np.testing.assert_array_equal(out.prior_weights, space.prior_weights)
        # the same on the channels-first layout
        def first(blocks):
            return tuple(jnp.moveaxis(jnp.asarray(b), -1, -3) for b in blocks)

        out_cf = ss.set_sample(space._replace(samplesf=first(space.samplesf)), 1,
                               first(replacement), channels_first=True)
        for i in range(3):
            for j in range(3):
                np.testing.assert_allclose(out.gram_matrix[i, j], block_ip(fed[i], fed[j]),
                                           rtol=1e-10)
                np.testing.assert_allclose(out_cf.gram_matrix[i, j], block_ip(fed[i], fed[j]),
                                           rtol=1e-10)
                diff = [a - b for a, b in zip(fed[i], fed[j])]
                expected = np.inf if i == j else block_ip(diff, diff)
                np.testing.assert_allclose(out.distance_matrix[i, j], expected, rtol=1e-10)
        np.testing.assert_array_equal(out.samplesf[0][1], replacement[0])
        assert np.all(np.isinf(np.asarray(out.distance_matrix)[3]))
        assert np.all(np.asarray(out.gram_matrix)[3] == 0)
