"""Preconditioned conjugate gradient over pytrees, with ECO's warm start.

The solver works on any pytree `x` (a tuple of half spectra, a tuple of (filter, projection)
pairs, a plain vector) and needs only three things from the caller: the operator
`apply_a(x) -> x`, symmetric positive definite for `inner`; the inner product
`inner(a, b) -> real scalar` that makes it symmetric (ECO: the sum over feature blocks of
`ctjax.ops.cfourier.full_inner`, which counts every `kx > 0` column twice); and optionally a
diagonal preconditioner, a pytree of positive reals shaped like `x` that the residual is
divided by elementwise.

It runs a fixed number of iterations (`lax.fori_loop`, no data-dependent exit), so it composes
inside the tracker's jitted init and step. Where ECO's `pcg_ccot.m` breaks out of the loop
(`rho` zero or not finite, `p^T A p <= 0`, a non-finite step), the iterate and the state are
frozen at the last good iteration instead.

Warm start (ECO's sparse updates): the state `(p, rho, r_prev)` of one call is handed to the
next, whose first direction is `z + beta p` with `rho` divided by the forgetting factor
`(1 - learning_rate) ** CG_forgetting_rate`, so an old direction weighs less the more the
problem has changed since. `cg_init` gives the cold state, for which the first direction is the
preconditioned residual (ECO's empty state).

References: M. Danelljan et al., "ECO: Efficient Convolution Operators for Tracking", CVPR
2017, Sec. 4 and MATLAB `pcg_ccot.m`; pytracking `libs/optimization.py` (ConjugateGradient).
J. Nocedal and S. Wright, Numerical Optimization, Alg. 5.3 (PCG) and Sec. 5.2 (FR, PR).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

PyTree = Any


class CGState(NamedTuple):
    """What a CG call leaves for the next one (ECO `pcg_ccot.m`'s `state`).

    Attributes:
      p: the last search direction, a pytree shaped like `x`.
      rho: `inner(r, z)` at the last iteration (`z` the preconditioned residual), a real
        scalar; 1 in the cold state.
      r_prev: the residual at which `rho` was computed, shaped like `x` (used by the
        Polak-Ribiere formula, zeros in the cold state).
    """

    p: PyTree
    rho: jnp.ndarray
    r_prev: PyTree


def _real_dtype(x: PyTree):
    leaf = jax.tree_util.tree_leaves(x)[0]
    return jnp.finfo(leaf.dtype).dtype


def cg_init(x: PyTree) -> CGState:
    """The cold CG state for unknowns shaped like `x`: no previous direction.

    With `p = 0` the first direction is `z + beta * 0 = z` under either beta formula, which is
    what `pcg_ccot.m` does with an empty state.
    """
    zeros = jax.tree_util.tree_map(jnp.zeros_like, x)
    return CGState(p=zeros, rho=jnp.ones((), _real_dtype(x)), r_prev=zeros)


def _axpy(a, x, y):
    """`a * x + y` over two pytrees of the same structure."""
    return jax.tree_util.tree_map(lambda u, v: (a * u + v).astype(v.dtype), x, y)


def _divide(u, m):
    """`u / m` in `u`'s dtype; a complex `u` by a real `m` as two real divisions (jnp would
    promote `m` and divide complex numbers, several times slower on CPU)."""
    if jnp.iscomplexobj(u) and not jnp.iscomplexobj(m):
        m = m.astype(jnp.real(u).dtype)
        return lax.complex(jnp.real(u) / m, jnp.imag(u) / m)
    return (u / m).astype(u.dtype)


def _select(ok, new, old):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(ok, u, v), new, old)


def pcg(
    apply_a: Callable[[PyTree], PyTree],
    b: PyTree,
    x0: PyTree,
    state: Optional[CGState] = None,
    *,
    inner: Callable[[PyTree, PyTree], jnp.ndarray],
    num_iters: int,
    diag: Optional[PyTree] = None,
    fletcher_reeves: bool = False,
    standard_alpha: bool = True,
    forget_factor: float = 1.0,
) -> tuple[PyTree, CGState]:
    """Solves `A x = b` by `num_iters` iterations of preconditioned CG (ECO `pcg_ccot.m`).

    Args:
      apply_a: `x -> A x`, self-adjoint and positive definite for `inner`; traced once.
      b: right-hand side, a pytree (real or complex leaves).
      x0: starting point, same structure as `b`.
      state: the `CGState` returned by the previous call (warm start), or None for a cold
        start. Ignored when `forget_factor <= 0` (ECO: no state is loaded then).
      inner: `(a, b) -> ` real scalar inner product on the pytrees.
      num_iters: number of iterations (static).
      diag: optional preconditioner, a pytree shaped like `b` of positive reals; the
        preconditioned residual is `r / diag`.
      fletcher_reeves: True for `beta = rho / rho_prev` (ECO's frame-1 Gauss-Newton), False
        for Polak-Ribiere `beta = (rho - <r_prev, z>) / rho_prev` (ECO's updates), in both
        cases clipped at 0.
      standard_alpha: True for `alpha = rho / <p, A p>`; False for
        `alpha = <p, r> / <p, A p>` (ECO's `CG_standard_alpha`).
      forget_factor: the loaded `rho` is divided by this (ECO's `init_forget_factor`,
        `(1 - learning_rate) ** CG_forgetting_rate`); static.

    Returns:
      `(x, state)`: the iterate after `num_iters` iterations and the state for the next call.
    """
    if num_iters < 1:
        raise ValueError(f"pcg needs num_iters >= 1, got {num_iters}")
    if state is None or forget_factor <= 0:
        state = cg_init(x0)
        rho0 = state.rho
    else:
        rho0 = state.rho / forget_factor
    rdtype = jax.eval_shape(inner, b, b).dtype
    precond = (lambda r: r) if diag is None else (
        lambda r: jax.tree_util.tree_map(_divide, r, diag))
    r0 = _axpy(-1.0, apply_a(x0), b)

    def body(_, carry):
        x, r, p, rho_prev, r_prev, done = carry
        z = precond(r)
        rho = inner(r, z)
        if fletcher_reeves:
            beta = rho / rho_prev
        else:
            beta = (rho - inner(r_prev, z)) / rho_prev
        beta = jnp.maximum(beta, 0.0)
        p_new = _axpy(beta, p, z)
        q = apply_a(p_new)
        pq = inner(p_new, q)
        alpha = rho / pq if standard_alpha else inner(p_new, r) / pq
        ok = (~done & (rho != 0) & jnp.isfinite(rho) & jnp.isfinite(beta)
              & (pq > 0) & jnp.isfinite(pq) & jnp.isfinite(alpha))
        new = (_axpy(alpha, p_new, x), _axpy(-alpha, q, r), p_new, rho, r)
        x, r, p, rho_prev, r_prev = _select(ok, new, (x, r, p, rho_prev, r_prev))
        return x, r, p, rho_prev, r_prev, done | ~ok

    carry = (x0, r0, state.p, jnp.asarray(rho0, rdtype), state.r_prev, jnp.asarray(False))
    x, _, p, rho, r_prev, _ = lax.fori_loop(0, num_iters, body, carry)
    return x, CGState(p=p, rho=rho, r_prev=r_prev)
