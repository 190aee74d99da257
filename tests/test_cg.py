"""Generic preconditioned CG (`ctjax.ops.cg`) against NumPy linear algebra (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax.ops.cg import CGState, cg_init, pcg


def _spd(n, cond, seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, cond, n)) @ q.T, rng.standard_normal(n)


def _dot(a, b):
    return sum(jnp.vdot(u, v).real for u, v in zip(jax.tree_util.tree_leaves(a),
                                                    jax.tree_util.tree_leaves(b)))


def _np_pcg_step(a, b, x, m, p, rho_prev, r_prev, fr):
    """One iteration of pcg_ccot.m, re-derived in NumPy."""
    r = b - a @ x
    z = r / m
    rho = r @ z
    beta = rho / rho_prev if fr else (rho - r_prev @ z) / rho_prev
    p = z + max(beta, 0.0) * p
    alpha = rho / (p @ a @ p)
    return x + alpha * p, p, rho, r


@pytest.mark.parametrize("fr", [True, False])
@pytest.mark.parametrize("standard_alpha", [True, False])
def test_pcg_solves_spd_system(fr, standard_alpha):
    with jax.enable_x64(True):
        a, b = _spd(24, 1e3, seed=1)
        m = np.diag(a) * np.random.default_rng(2).uniform(0.5, 2.0, 24)
        x, state = pcg(lambda v: jnp.asarray(a) @ v, jnp.asarray(b), jnp.zeros(24), None,
                       inner=jnp.vdot, num_iters=120, diag=jnp.asarray(m),
                       fletcher_reeves=fr, standard_alpha=standard_alpha)
        assert isinstance(state, CGState)
        np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, b), rtol=1e-9, atol=1e-9)


def test_pcg_on_a_complex_pytree():
    """Unknowns split over a tuple of complex arrays with the real inner product Re <a, b>."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        n = 16  # real dimension: 8 complex numbers = (3,) + (5,)
        a, b = _spd(n, 50.0, seed=4)

        def to_tree(v):
            z = v[:8] + 1j * v[8:]
            return (z[:3], z[3:])

        def to_vec(t):
            z = jnp.concatenate(t)
            return jnp.concatenate([z.real, z.imag])

        x0 = to_tree(jnp.asarray(rng.standard_normal(n)))
        x, _ = pcg(lambda t: to_tree(jnp.asarray(a) @ to_vec(t)), to_tree(jnp.asarray(b)), x0,
                   inner=_dot, num_iters=60)
        np.testing.assert_allclose(np.asarray(to_vec(x)), np.linalg.solve(a, b), rtol=1e-9,
                                   atol=1e-9)


@pytest.mark.parametrize("fr", [True, False])
def test_warm_start_continues_where_it_stopped(fr):
    """4 + 5 iterations with the saved state (no forgetting) = 9 iterations in one call."""
    with jax.enable_x64(True):
        a, b = _spd(30, 1e4, seed=5)
        m = jnp.asarray(np.diag(a))
        kw = dict(inner=jnp.vdot, diag=m, fletcher_reeves=fr)
        op = lambda v: jnp.asarray(a) @ v  # noqa: E731
        x_all, s_all = pcg(op, jnp.asarray(b), jnp.zeros(30), num_iters=9, **kw)
        x4, s4 = pcg(op, jnp.asarray(b), jnp.zeros(30), num_iters=4, **kw)
        x9, s9 = pcg(op, jnp.asarray(b), x4, s4, num_iters=5, forget_factor=1.0, **kw)
        # Still far from converged, so the test can tell a restart from a continuation.
        assert np.linalg.norm(np.asarray(x_all) - np.linalg.solve(a, b)) > 1e-3
        x_restart, _ = pcg(op, jnp.asarray(b), x4, None, num_iters=5, **kw)
        assert np.linalg.norm(np.asarray(x_restart - x_all)) > 1e-6
        np.testing.assert_allclose(np.asarray(x9), np.asarray(x_all), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(np.asarray(s9.p), np.asarray(s_all.p), rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(float(s9.rho), float(s_all.rho), rtol=1e-8)


@pytest.mark.parametrize("fr", [True, False])
def test_forgetting_factor_first_step(fr):
    """The first direction of a warm call is z + beta p with rho divided by the factor."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(6)
        a, b = _spd(12, 20.0, seed=7)
        m = np.diag(a).copy()
        x0 = rng.standard_normal(12)
        p, r_prev = rng.standard_normal(12), rng.standard_normal(12)
        rho_saved, ff = 3.0, 0.4
        state = CGState(p=jnp.asarray(p), rho=jnp.asarray(rho_saved), r_prev=jnp.asarray(r_prev))
        x1, s1 = pcg(lambda v: jnp.asarray(a) @ v, jnp.asarray(b), jnp.asarray(x0), state,
                     inner=jnp.vdot, num_iters=1, diag=jnp.asarray(m), fletcher_reeves=fr,
                     forget_factor=ff)
        want_x, want_p, want_rho, want_r = _np_pcg_step(a, b, x0, m, p, rho_saved / ff, r_prev, fr)
        np.testing.assert_allclose(np.asarray(x1), want_x, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(s1.p), want_p, rtol=1e-10)
        np.testing.assert_allclose(float(s1.rho), want_rho, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(s1.r_prev), want_r, rtol=1e-10)
        # forget_factor <= 0 ignores the state: a cold start (first direction = z).
        x_cold, _ = pcg(lambda v: jnp.asarray(a) @ v, jnp.asarray(b), jnp.asarray(x0), state,
                        inner=jnp.vdot, num_iters=1, diag=jnp.asarray(m), forget_factor=0.0)
        want_cold = _np_pcg_step(a, b, x0, m, np.zeros(12), 1.0, np.zeros(12), fr)[0]
        np.testing.assert_allclose(np.asarray(x_cold), want_cold, rtol=1e-10)
        assert np.abs(want_cold - want_x).max() > 1e-3


def test_exact_solution_freezes_instead_of_nan():
    """Once the residual is zero ECO breaks out; the fixed-length loop must stay finite."""
    b = jnp.asarray([1.0, -2.0, 0.5])
    x, state = jax.jit(lambda b: pcg(lambda v: 2.0 * v, b, jnp.zeros(3), cg_init(b),
                                     inner=jnp.vdot, num_iters=10))(b)
    np.testing.assert_allclose(np.asarray(x), np.asarray(b) / 2, rtol=1e-6)
    assert np.isfinite(float(state.rho)) and np.all(np.isfinite(np.asarray(state.p)))


def test_pcg_jits_and_keeps_float32():
    a, b = _spd(10, 10.0, seed=8)
    a32, b32 = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    f = jax.jit(lambda b: pcg(lambda v: a32 @ v, b, jnp.zeros_like(b), inner=jnp.vdot,
                              num_iters=30))
    x, state = f(b32)
    assert x.dtype == jnp.float32 and state.rho.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, b), rtol=1e-3, atol=1e-4)


def test_pcg_rejects_zero_iterations():
    with pytest.raises(ValueError, match="num_iters"):
        pcg(lambda v: v, jnp.ones(2), jnp.zeros(2), inner=jnp.vdot, num_iters=0)
