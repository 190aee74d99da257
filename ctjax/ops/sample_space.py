"""ECO's generative sample space: a fixed-size memory of merged training samples.

ECO (Danelljan et al., CVPR 2017, Sec. 3.2) replaces the ever-growing set of training samples
of C-COT by a Gaussian mixture whose components are the stored samples `samplesf[l]` with prior
weights `pi_l`. Each new sample becomes a component of weight `learning_rate`; when the memory
is full, two components are merged (weighted mean) so the count stays fixed. This module
reproduces `update_sample_space_model.m`, `update_distance_matrix.m` and `merge_samples.m`
(martin-danelljan/ECO, merge type 'Merge', distance update 'exact'), with static shapes so that
it runs inside a jitted tracker step.

Conventions:

* A sample is a tuple over feature blocks of centred half spectra (`ctjax.ops.cfourier`), block
  `d` of shape `(Ho_d, Wh_d, C_d)` (C_d: projected channels), complex64 by default. The memory
  holds `S` slots: `samplesf[d]` has shape `(S, Ho_d, Wh_d, C_d)`. Slots `0 .. num_samples - 1`
  are filled, in insertion order until the memory is full; empty slots hold zeros, weight 0.
  With `channels_first=True` the blocks are `(C_d, Ho_d, Wh_d)` instead (the memory
  `(S, C_d, Ho_d, Wh_d)`), the layout `ctjax.trackers.eco_filter` reads fastest; only the
  inner products need to know which axis is `kx`.
* Inner products are those of the full Hermitian spectra (`cfourier.full_inner`) summed over
  blocks. (ECO's MATLAB uses `2 Re<a, b>` over the half spectrum, counting the `kx = 0` column
  twice; its own comment calls that an approximation. Here the exact value is used.)
* `gram_matrix[i, j] = <x_i, x_j>` for filled slots, 0 where a slot is empty.
  `distance_matrix[i, j] = max(||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>, 0)`, `inf` on the diagonal
  and wherever a slot is empty (ECO fills these with inf, or with 0 as a MATLAB NaN artefact,
  and never reads them).
* Slot indices are 0-based (MATLAB's are 1-based). `-1` means "no slot".

Cases of an update (`SampleSpaceInfo.case`):

  0 INSERT        memory not full: the sample goes to slot `num_samples`.
  1 REPLACE       memory full and the lowest prior weight is below `min_sample_weight`: the new
                  sample replaces that slot.
  2 MERGE_NEW     memory full, the new sample is closer to its nearest stored sample than any
                  two stored samples are to each other: it is merged into that sample.
  3 MERGE_PAIR    otherwise the two closest stored samples are merged into one slot (the one of
                  higher weight) and the new sample takes the freed slot.

Weights: every case except the first sample scales the old weights by `1 - learning_rate` (the
replace case renormalises the survivors to `1 - learning_rate`) and gives the new sample
`learning_rate`, so the weights sum to one.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp


INSERT, REPLACE, MERGE_NEW, MERGE_PAIR = 0, 1, 2, 3


class SampleSpace(NamedTuple):
    """The sample memory (ECO `samplesf`, `prior_weights`, `distance_matrix`, `gram_matrix`).

    Attributes:
        samplesf: tuple over blocks of `(S, Ho_d, Wh_d, C_d)` complex half spectra.
        prior_weights: `(S,)` real, the mixture weights; sum to one once a sample is stored.
        distance_matrix: `(S, S)` real squared distances (inf on the diagonal and empty slots).
        gram_matrix: `(S, S)` real inner products (0 for empty slots).
        num_samples: int32 scalar, the number of filled slots (at most S).
    """
    samplesf: tuple
    prior_weights: jnp.ndarray
    distance_matrix: jnp.ndarray
    gram_matrix: jnp.ndarray
    num_samples: jnp.ndarray


class SampleSpaceInfo(NamedTuple):
    """What an update did, so callers can refresh per-slot quantities of the changed slots.

    Attributes:
        case: int32, one of INSERT, REPLACE, MERGE_NEW, MERGE_PAIR.
        merged_slot: int32 slot now holding a merged sample, -1 if none (cases 0, 1).
        new_slot: int32 slot now holding the new sample unchanged, -1 if none (case 2).
    """
    case: jnp.ndarray
    merged_slot: jnp.ndarray
    new_slot: jnp.ndarray


def init_sample_space(block_shapes: Sequence[Sequence[int]], num_slots: int, *,
                      dtype=jnp.complex64) -> SampleSpace:
    """An empty memory of `num_slots` samples (ECO tracker.m initialisation).

    Args:
        block_shapes: per feature block, the `(Ho_d, Wh_d, C_d)` shape of its half spectrum.
        num_slots: S, the number of stored samples (50 in fECO, 30 in ECO-HC).
        dtype: complex dtype of the samples; weights and matrices use the matching real dtype.

    Returns:
        A `SampleSpace` with zero samples and weights, `inf` distances and zero gram matrix.
    """
    real = jnp.finfo(dtype).dtype
    return SampleSpace(
        samplesf=tuple(jnp.zeros((num_slots, *tuple(s)), dtype) for s in block_shapes),
        prior_weights=jnp.zeros((num_slots,), real),
        distance_matrix=jnp.full((num_slots, num_slots), jnp.inf, real),
        gram_matrix=jnp.zeros((num_slots, num_slots), real),
        num_samples=jnp.zeros((), jnp.int32))


def _weighted_conj(x: jnp.ndarray, channels_first: bool) -> jnp.ndarray:
    """`conj(x) w` for one block, `w` = 1 at `kx = 0` and 2 elsewhere (`full_inner`'s weights:
    every `kx > 0` column also stands for its mirror)."""
    kx = -1 if channels_first else -2
    w = jnp.where(jnp.arange(x.shape[kx]) == 0, 1, 2).astype(jnp.real(x).dtype)
    return jnp.conj(x) * (w if channels_first else w[:, None])


def _inner_with_slots(samplesf: tuple, xf: tuple, channels_first: bool) -> jnp.ndarray:
    """`(S,)` inner products <samplesf[l], xf> summed over blocks (ECO find_gram_vector.m).

    `full_inner` written as one matrix-vector product per block,
    `Re(samplesf[l] . conj(xf) w)`: it reads the memory (megabytes) once, where the
    elementwise form materialises the product first.
    """
    out = 0
    for s, x in zip(samplesf, xf):
        v = _weighted_conj(x, channels_first).reshape(-1)
        out = out + jnp.real(jnp.matmul(s.reshape(s.shape[0], -1), v,
                                        precision=jax.lax.Precision.HIGHEST))
    return out


def _norm(xf: tuple, channels_first: bool) -> jnp.ndarray:
    """`<xf, xf>` of the full spectra, summed over blocks."""
    return sum(jnp.sum(jnp.real(x * _weighted_conj(x, channels_first))) for x in xf)


def _set_gram_slot(gram: jnp.ndarray, slot, column: jnp.ndarray, norm) -> jnp.ndarray:
    """Writes row and column `slot` of the symmetric gram matrix, then its diagonal entry."""
    gram = gram.at[:, slot].set(column).at[slot, :].set(column)
    return gram.at[slot, slot].set(norm)


def _set_distance_slot(dist: jnp.ndarray, gram: jnp.ndarray, slot, filled) -> jnp.ndarray:
    """Recomputes row and column `slot` of the distance matrix from the gram matrix."""
    diag = jnp.diagonal(gram)
    column = jnp.maximum(gram[slot, slot] + diag - 2 * gram[:, slot], 0)
    column = jnp.where(filled & filled[slot], column, jnp.inf).at[slot].set(jnp.inf)
    return dist.at[:, slot].set(column).at[slot, :].set(column)


def _blend(a: tuple, b: tuple, alpha) -> tuple:
    """Per-block `alpha a + (1 - alpha) b` (ECO merge_samples.m, type 'Merge')."""
    return tuple((alpha * x + (1 - alpha) * y).astype(x.dtype) for x, y in zip(a, b))


def _read_slot(samplesf: tuple, slot) -> tuple:
    return tuple(jax.lax.dynamic_index_in_dim(s, slot, keepdims=False) for s in samplesf)


def update_sample_space(space: SampleSpace, new_xf: Sequence[jnp.ndarray], *,
                        learning_rate, min_sample_weight,
                        channels_first: bool = False) -> tuple[SampleSpace, SampleSpaceInfo]:
    """Adds one training sample to the memory (ECO update_sample_space_model.m).

    Args:
        space: the current `SampleSpace` with S slots.
        new_xf: tuple over blocks of the new sample's half spectra, `(Ho_d, Wh_d, C_d)`.
        learning_rate: weight given to the new sample (ECO `learning_rate`, 0.011 in fECO);
            a Python float or a traced scalar.
        min_sample_weight: a full memory replaces its lowest-weight sample when that weight is
            below this (ECO: `learning_rate * (1 - learning_rate) ** (2 * S)`).
        channels_first: blocks (and the memory's slots) are `(C_d, Ho_d, Wh_d)`.

    Returns:
        `(space, info)`: the updated memory and a `SampleSpaceInfo` naming the case and the
        changed slots. Jit-compatible: one `lax.switch` over the four cases, static shapes.
    """
    new_xf = tuple(jnp.asarray(x, s.dtype) for x, s in zip(new_xf, space.samplesf))
    weights, dist, gram, n = (space.prior_weights, space.distance_matrix, space.gram_matrix,
                              space.num_samples)
    num_slots = weights.shape[0]
    lr = jnp.asarray(learning_rate, weights.dtype)
    slots = jnp.arange(num_slots)

    gram_vector = _inner_with_slots(space.samplesf, new_xf, channels_first).astype(weights.dtype)
    new_norm = _norm(new_xf, channels_first).astype(weights.dtype)
    filled = slots < n
    dist_vector = jnp.where(filled, jnp.maximum(new_norm + jnp.diagonal(gram)
                                                - 2 * gram_vector, 0), jnp.inf)

    min_weight_slot = jnp.argmin(weights)
    nearest_slot = jnp.argmin(dist_vector)
    # MATLAB's min(D(:)) scans column-major: the first minimum of the transpose in row-major.
    pair = jnp.argmin(dist.T.reshape(-1))
    pair1, pair2 = pair % num_slots, pair // num_slots
    full = n >= num_slots
    replace = full & (weights[min_weight_slot] < min_sample_weight)
    merge_new = dist_vector[nearest_slot] < dist[pair1, pair2]
    case = jnp.where(~full, INSERT, jnp.where(replace, REPLACE,
                                              jnp.where(merge_new, MERGE_NEW, MERGE_PAIR)))

    def store_new(slot, weights):
        # Cases 0 and 1: the new sample lands unchanged in `slot`.
        now_filled = filled.at[slot].set(True)
        g = _set_gram_slot(gram, slot, jnp.where(now_filled, gram_vector, 0), new_norm)
        d = _set_distance_slot(dist, g, slot, now_filled)
        return weights, g, d, slot, new_xf, slot, new_xf, jnp.int32(-1), slot

    def insert():
        first = n == 0
        w = jnp.where(first, 0, weights * (1 - lr)).at[n].set(jnp.where(first, 1, lr))
        return store_new(n.astype(jnp.int32), w)

    def replace_lowest():
        slot = min_weight_slot.astype(jnp.int32)
        w = weights.at[slot].set(0)
        w = (w * (1 - lr) / jnp.sum(w)).at[slot].set(lr)
        return store_new(slot, w)

    def merge_into_nearest():
        slot = nearest_slot.astype(jnp.int32)
        w = weights * (1 - lr)
        alpha = w[slot] / (w[slot] + lr)
        merged = _blend(_read_slot(space.samplesf, slot), new_xf, alpha)
        column = alpha * gram[:, slot] + (1 - alpha) * gram_vector
        norm = (alpha ** 2 * gram[slot, slot] + (1 - alpha) ** 2 * new_norm
                + 2 * alpha * (1 - alpha) * gram_vector[slot])
        g = _set_gram_slot(gram, slot, jnp.where(filled, column, 0), norm)
        d = _set_distance_slot(dist, g, slot, filled)
        w = w.at[slot].add(lr)
        return w, g, d, slot, merged, slot, merged, slot, jnp.int32(-1)

    def merge_closest_pair():
        w = weights * (1 - lr)
        # The heavier sample keeps its slot (ECO swaps only on a strict inequality).
        swap = w[pair2] > w[pair1]
        keep = jnp.where(swap, pair2, pair1).astype(jnp.int32)
        free = jnp.where(swap, pair1, pair2).astype(jnp.int32)
        alpha = w[keep] / (w[keep] + w[free])
        merged = _blend(_read_slot(space.samplesf, keep), _read_slot(space.samplesf, free),
                        alpha)
        column = alpha * gram[:, keep] + (1 - alpha) * gram[:, free]
        norm = (alpha ** 2 * gram[keep, keep] + (1 - alpha) ** 2 * gram[free, free]
                + 2 * alpha * (1 - alpha) * gram[keep, free])
        g = _set_gram_slot(gram, keep, column, norm)
        g_new = gram_vector.at[keep].set(alpha * gram_vector[keep]
                                         + (1 - alpha) * gram_vector[free])
        g = _set_gram_slot(g, free, g_new, new_norm)
        d = _set_distance_slot(_set_distance_slot(dist, g, keep, filled), g, free, filled)
        w = w.at[keep].add(w[free]).at[free].set(lr)
        return w, g, d, keep, merged, free, new_xf, keep, free

    (w, g, d, slot_a, value_a, slot_b, value_b, merged_slot, new_slot) = jax.lax.switch(
        case, (insert, replace_lowest, merge_into_nearest, merge_closest_pair))
    # Two writes cover every case (cases 0-2 write the same slot twice), outside the switch so
    # the memory is updated in place.
    samplesf = tuple(
        jax.lax.dynamic_update_index_in_dim(
            jax.lax.dynamic_update_index_in_dim(s, a, slot_a, 0), b, slot_b, 0)
        for s, a, b in zip(space.samplesf, value_a, value_b))
    space = SampleSpace(samplesf, w, d, g, jnp.minimum(n + 1, num_slots).astype(jnp.int32))
    return space, SampleSpaceInfo(case.astype(jnp.int32), merged_slot, new_slot)


def set_sample(space: SampleSpace, slot, xf: Sequence[jnp.ndarray], *,
               channels_first: bool = False) -> SampleSpace:
    """Overwrites a filled slot with a new value, keeping its weight (ECO tracker.m, frame 1:
    the first sample is re-projected after the Gauss-Newton step and its gram entry updated).

    Args:
        space: a `SampleSpace` in which `slot < num_samples`.
        slot: int slot index (0-based), static or traced.
        xf: tuple over blocks of `(Ho_d, Wh_d, C_d)` half spectra.
        channels_first: blocks (and the memory's slots) are `(C_d, Ho_d, Wh_d)`.

    Returns:
        The memory with `slot` replaced and its gram and distance rows and columns recomputed.
    """
    xf = tuple(jnp.asarray(x, s.dtype) for x, s in zip(xf, space.samplesf))
    samplesf = tuple(jax.lax.dynamic_update_index_in_dim(s, x, slot, 0)
                     for s, x in zip(space.samplesf, xf))
    real = space.prior_weights.dtype
    filled = jnp.arange(space.prior_weights.shape[0]) < space.num_samples
    column = jnp.where(filled, _inner_with_slots(samplesf, xf, channels_first).astype(real), 0)
    gram = _set_gram_slot(space.gram_matrix, slot, column, column[slot])
    dist = _set_distance_slot(space.distance_matrix, gram, slot, filled)
    return space._replace(samplesf=samplesf, gram_matrix=gram, distance_matrix=dist)
