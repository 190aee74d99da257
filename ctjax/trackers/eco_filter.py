"""ECO's filter training: the normal equations, their CG solve, and the frame-1 Gauss-Newton.

Layout (see `ctjax.ops.cfourier`): every Fourier array is a centred half spectrum, rows
`ky = -(Ho-1)/2 .. (Ho-1)/2` (odd `Ho`), columns `kx = 0 .. Wh-1`; the full Hermitian spectrum
it stands for has `Wo = 2 Wh - 1` columns. Per feature block `d` (a tuple over blocks):

* `xlf[d]`      `(Ho_d, Wh_d, C_d)` complex, the unprojected frame-1 sample (windowed, cfft2'd,
                interpolated by the tracker);
* `P[d]`        `(C_d, Cp_d)` float, the projection (factorized convolution);
* `samplesf[d]` `(S, Ho_d, Wh_d, Cp_d)` complex, projected samples of the sample memory, with
                `sample_weights` `(S,)` (0 for empty slots, summing to 1);
* `hf[d]`       `(Ho_d, Wh_d, Cp_d)` complex, the filter;
* `yf[d]`       `(Ho_d, Wh_d)` real or complex, the label on the output grid cropped to block
                `d` (ECO builds one label per block from that block's `ky`, `kx`);
* `reg[d]`      `(Kh, Kw)` real, odd sizes, centred: the DFT of the spatial regularisation
                window (`ctjax.ops.cfourier.reg_filter(...).kernel`), and
                `reg_energy[d] = sum(reg[d] ** 2)`. The solvers also take a `CrossKernel`
                (`cross_kernel(reg[d])`), the same operator with fewer taps for a kernel
                that is zero off its centre row and column, as ECO's always are.

The output grid is `(max Ho_d, max Wh_d)`; block `d` sits at rows `(Ho - Ho_d) // 2 ...` and
columns `0 .. Wh_d - 1`. The response to sample `s` is `r_s = sum_d pad(sum_c hf_dc x_sdc)`
(no conjugation, as in ECO). The filter minimises, in the full (Hermitian) spectrum,

    sum_s w_s || r_s - y ||^2 + sum_d || reg_d * hf_d ||^2                    (ECO eq. 10)

where `*` is 2-D convolution (the spatial window multiplying the filter). Its normal equations
`(A^H Gamma A + W^H W) hf = A^H Gamma y` are written with the adjoints taken for the real inner
product of the full spectra, `sum_d full_inner` (ECO `inner_product_filter.m`), so CG applies.

Two deliberate departures from the MATLAB code, so that both operators are self-adjoint on
every half spectrum (tested), as CG assumes:
* `apply_reg` maps back to the half spectrum with the true adjoint of the Hermitian extension
  (ECO's `lhs_operation.m` keeps the `kx >= 0` columns as they are). Identical to ECO on
  filters whose `kx = 0` column is Hermitian, which is all CG produces from ECO's right-hand
  sides.
* The projection part of the frame-1 operator and right-hand side weighs the `kx = 0` column
  once, as `full_inner` does and as pytracking's autograd version does. ECO's
  `lhs_operation_joint.m` and `train_joint.m` weigh it 0 (`2 real(XH fBP - XH_dc fBP_dc)`),
  which drops that column from the projection gradient and makes ECO's joint operator
  slightly non-symmetric; the frame-1 projection therefore differs slightly from ECO's.

References: M. Danelljan et al., "ECO: Efficient Convolution Operators for Tracking", CVPR
2017, Sec. 3.1-3.2, 4; MATLAB ECO `implementation/training/` (`train_filter.m`,
`lhs_operation.m`, `train_joint.m`, `lhs_operation_joint.m`, `diag_precond.m`),
`dim_reduction/init_projection_matrix.m`, `tracker.m`, `runfiles/OTB_HC_settings.m`; CF-VGG
`fECO/runfiles/testing_ECO.m` (Wang et al., TIP 2020); pytracking `tracker/eco/optim.py`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Sequence

import jax.numpy as jnp
from jax import lax

from ctjax.ops.cfourier import crop_from, full_inner, pad_to, symmetrize
from ctjax.ops.cg import CGState, pcg

_HI = lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class FilterSettings:
    """ECO's filter-learning settings (names as in the MATLAB `params`, lower-cased).

    Defaults are fECO on OTB (CF-VGG `fECO/runfiles/testing_ECO.m`); `eco_hc()` gives ECO-HC
    (`ECO/runfiles/OTB_HC_settings.m`).

    Attributes:
      cg_iter: CG iterations per filter update after frame 1.
      init_cg_iter: total CG iterations on frame 1, split evenly over the Gauss-Newton
        iterations (`ceil(init_cg_iter / init_gn_iter)` each). The frame-1 CG always uses
        Fletcher-Reeves and the standard step (hard-coded in ECO's `tracker.m`).
      init_gn_iter: Gauss-Newton iterations on frame 1 (filter and projection jointly).
      cg_use_fr: Fletcher-Reeves (True) or Polak-Ribiere (False) in the updates.
      cg_standard_alpha: `alpha = rho / <p, Ap>` (True) or `<p, r> / <p, Ap>`.
      cg_forgetting_rate: the warm-start `rho` is divided by
        `(1 - learning_rate) ** cg_forgetting_rate`; `inf` disables the warm start.
      precond_data_param, precond_reg_param: weights of the per-channel sample energy (vs its
        channel mean) and of the regularisation energy in the diagonal preconditioner.
      precond_proj_param: weight of the projection part of the frame-1 preconditioner.
      projection_reg: `lambda` of `lambda ||P||_F^2` on frame 1.
      learning_rate: the sample-memory learning rate; here it only sets the forgetting factor.
    """

    cg_iter: int = 5
    init_cg_iter: int = 10 * 20
    init_gn_iter: int = 10
    cg_use_fr: bool = False
    cg_standard_alpha: bool = True
    cg_forgetting_rate: float = 75.0
    precond_data_param: float = 0.3
    precond_reg_param: float = 0.015
    precond_proj_param: float = 35.0
    projection_reg: float = 5e-8
    learning_rate: float = 0.011

    def __post_init__(self):
        for name in ("cg_iter", "init_cg_iter", "init_gn_iter"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FilterSettings.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("precond_data_param", "precond_reg_param", "learning_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"FilterSettings.{name} must lie in [0, 1], got {getattr(self, name)}")

    @classmethod
    def eco_hc(cls) -> "FilterSettings":
        """ECO-HC on OTB (`OTB_HC_settings.m`)."""
        return cls(init_cg_iter=10 * 15, cg_forgetting_rate=50.0, precond_data_param=0.75,
                   precond_reg_param=0.25, precond_proj_param=40.0, projection_reg=1e-7,
                   learning_rate=0.009)

    @property
    def init_forget_factor(self) -> float:
        """ECO's `CG_opts.init_forget_factor`; 0 means no warm start."""
        if math.isinf(self.cg_forgetting_rate) or self.learning_rate >= 1:
            return 0.0
        return (1.0 - self.learning_rate) ** self.cg_forgetting_rate

    @property
    def init_cg_per_gn(self) -> int:
        return -(-self.init_cg_iter // self.init_gn_iter)


# ----------------------------------------------------------------------------- grid bookkeeping

def _grid_hw(blocks: Sequence[jnp.ndarray]) -> tuple[int, int]:
    """Full odd size `(max Ho, 2 max Wh - 1)` of the output grid of blocks `(..., Ho, Wh, C)`."""
    return max(b.shape[-3] for b in blocks), 2 * max(b.shape[-2] for b in blocks) - 1


def _block_hw(x: jnp.ndarray) -> tuple[int, int]:
    """Full odd size `(Ho, 2 Wh - 1)` of a block `(..., Ho, Wh, C)`."""
    return x.shape[-3], 2 * x.shape[-2] - 1


def _kx_weights(wh: int, dtype) -> jnp.ndarray:
    """`full_inner`'s column weights: 1 for `kx = 0`, 2 for the columns standing for two."""
    return jnp.where(jnp.arange(wh) == 0, 1.0, 2.0).astype(dtype)


# ----------------------------------------------------------------------------- operators

def apply_data(hf: Sequence[jnp.ndarray], samplesf: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """The data operator `A`: responses of the filter to the samples, on the output grid.

    Args:
      hf: per block `(Ho_d, Wh_d, C_d)` complex filters.
      samplesf: per block `(..., Ho_d, Wh_d, C_d)` complex samples (e.g. `(S, ...)`).

    Returns:
      `(..., Ho, Wh)` complex: `sum_d pad(sum_c hf_dc x_dc)`.
    """
    out_hw = _grid_hw(hf)
    return sum(pad_to(jnp.sum(x * h, axis=-1), out_hw) for h, x in zip(hf, samplesf))


def apply_data_adjoint(rf: jnp.ndarray, samplesf: Sequence[jnp.ndarray]) -> tuple:
    """`A^H` for `full_inner`: `conj(x_dc) * crop_d(r)`, summed over the sample axes.

    Args:
      rf: `(..., Ho, Wh)` complex, one residual per sample, on the output grid.
      samplesf: per block `(..., Ho_d, Wh_d, C_d)` complex samples.

    Returns:
      Tuple of `(Ho_d, Wh_d, C_d)` complex.
    """
    out = []
    for x in samplesf:
        r = crop_from(rf, _block_hw(x))[..., None]
        out.append(jnp.sum(jnp.conj(x) * r, axis=tuple(range(x.ndim - 3))))
    return tuple(out)


class CrossKernel(NamedTuple):
    """A regularisation kernel that is zero off its centre row and column.

    ECO's kernels always are: the spatial window is a function of y plus a function of x
    (`ctjax.ops.cfourier.reg_filter`), so its DFT lives on the axes `kx = 0` and `ky = 0`
    (the sparsity threshold zeroes the round-off elsewhere). Convolving with the cross takes
    `Kh + Kw - 1` taps instead of `Kh Kw` (13 instead of 49 for 7 x 7).

    Attributes:
      col: `(Kh,)` the kernel's centre column (`kx = 0`), odd `Kh`.
      row: `(Kw,)` its centre row (`ky = 0`), odd `Kw`; `row[Kw // 2] == col[Kh // 2]`.
    """
    col: jnp.ndarray
    row: jnp.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.col.shape[0], self.row.shape[0]


def cross_kernel(kernel: jnp.ndarray) -> CrossKernel:
    """The centre row and column of a `(Kh, Kw)` kernel (odd sizes), as a `CrossKernel`.

    Only for kernels that are zero elsewhere (e.g. `cfourier.reg_filter`'s): the rest is
    dropped.
    """
    kh, kw = kernel.shape
    return CrossKernel(kernel[:, kw // 2], kernel[kh // 2, :])


def _flip_kernel(kernel):
    if isinstance(kernel, CrossKernel):
        return CrossKernel(jnp.flip(kernel.col), jnp.flip(kernel.row))
    return jnp.flip(kernel)


def _correlate_valid(x: jnp.ndarray, kernel, group: int = 1) -> jnp.ndarray:
    """Valid 2-D cross-correlation over the last two axes `(H, W * group)` with a real kernel.

    The last axis holds `W` positions of `group` values each (a `(..., H, W, C)` map with its
    last two axes merged, `group = C`): a tap `j` along it is a shift by `j * group`. Every
    shifted slice is then a run along the contiguous last axis, which XLA CPU's fused loop
    vectorises (with the few channels as a separate innermost axis it does not: 2x slower).
    A sum of `Kh Kw` shifted slices, or `Kh + Kw - 1` for a `CrossKernel`, fused into one
    loop; several times faster than `lax.conv_general_dilated` with one channel per (re, im,
    channel) map.
    """
    kh, kw = kernel.shape
    h, w = x.shape[-2] - kh + 1, x.shape[-1] - (kw - 1) * group
    rdtype = jnp.real(x).dtype

    def tap(i, j):
        return x[..., i:i + h, j * group:j * group + w]

    if isinstance(kernel, CrossKernel):
        col, row = kernel.col.astype(rdtype), kernel.row.astype(rdtype)
        cy, cx = kh // 2, kw // 2
        # The centre tap is in both the row and the column: count it once.
        out = -row[cx] * tap(cy, cx)
        for i in range(kh):
            out = out + col[i] * tap(i, cx)
        for j in range(kw):
            out = out + row[j] * tap(cy, j)
        return out
    kernel = kernel.astype(rdtype)
    out = jnp.zeros(x.shape[:-2] + (h, w), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out = out + kernel[i, j] * tap(i, j)
    return out


def _materialize(x: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    """`x` unchanged, computed once when several shifted slices of it are read.

    XLA CPU fuses a producer made of cheap elementwise ops into every consumer, so a
    correlation reading `K` shifted slices of another correlation would recompute it `K`
    times (169 taps per element instead of 26 for two 13-tap crosses). A division is
    "expensive" to XLA's fusion heuristics, so dividing by a traced exact 1 (`exp(0)`, made
    from `like` so it is not constant-folded) keeps `x` a materialised array.
    (`lax.optimization_barrier` does not stop this fusion on CPU.)
    """
    one = jnp.exp(0 * jnp.sum(like)).astype(jnp.real(x).dtype)
    if jnp.iscomplexobj(x):  # two real divisions, not a complex one
        return lax.complex(jnp.real(x) / one, jnp.imag(x) / one)
    return x / one


def apply_reg(hf: jnp.ndarray, reg_kernel: jnp.ndarray) -> jnp.ndarray:
    """The regularisation term `W^H W hf` of ECO's `lhs_operation.m`, in the half layout.

    `W` convolves the full Hermitian spectrum of `hf` with `reg_kernel` (the DFT of the spatial
    window, so `W` multiplies the filter by the window); the result is mapped back with the
    adjoint of the Hermitian extension. The columns `kx < 0` that the kernel reaches are
    rebuilt as `conj(hf(-ky, -kx))`. For a point-symmetric kernel (ECO's) and a filter whose
    `kx = 0` column is Hermitian this is exactly ECO's `convn(convn(., reg), reg, 'valid')`.

    Args:
      hf: `(..., Ho, Wh, C)` complex half spectrum, odd `Ho`.
      reg_kernel: `(Kh, Kw)` real, odd sizes, centred (`ky = kx = 0` at the middle), or a
        `CrossKernel` (the same operator for a kernel that is zero off its axes, fewer taps).

    Returns:
      `(..., Ho, Wh, C)` complex.
    """
    kh, kw = reg_kernel.shape
    wh, c = hf.shape[-2:]
    m = min(2 * (kw - 1), wh - 1)  # kx < 0 columns the two convolutions reach
    ext = jnp.concatenate([jnp.conj(jnp.flip(hf[..., :, 1:m + 1, :], axis=(-3, -2))), hf], axis=-2)
    # Zero rows / columns around the spectrum so both convolutions are linear (not truncated):
    # the result covers kx = -(kw-1) .. wh-1.
    pad = [(kh - 1, kh - 1), (2 * (kw - 1) - m, kw - 1), (0, 0)]
    ext = jnp.pad(ext, [(0, 0)] * (ext.ndim - 3) + pad)
    # Columns and channels merged into one contiguous axis (see `_correlate_valid`).
    ext = ext.reshape(ext.shape[:-2] + (-1,))
    # W: true convolution = correlation with the flipped kernel; W^H: correlation.
    wext = _correlate_valid(ext, _flip_kernel(reg_kernel), c)
    if isinstance(reg_kernel, CrossKernel):
        wext = _materialize(wext, reg_kernel.row)
    g = _correlate_valid(wext, reg_kernel, c)
    g = g.reshape(g.shape[:-1] + (-1, c))
    out = g[..., :, kw - 1:, :]
    m2 = min(kw - 1, wh - 1)
    if m2 > 0:
        # Adjoint of the extension: column kx > 0 also receives conj of the (-ky, -kx) value.
        # Only kx <= kw - 1 can differ (a non-Hermitian kx = 0 column spreads that far).
        neg = jnp.conj(jnp.flip(g[..., :, kw - 1 - m2:kw - 1, :], axis=(-3, -2)))
        out = out.at[..., :, 1:m2 + 1, :].set(0.5 * (out[..., :, 1:m2 + 1, :] + neg))
    return out


def filter_inner(af: Sequence[jnp.ndarray], bf: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """ECO `inner_product_filter.m`: `sum_d full_inner(a_d, b_d)`, a real scalar."""
    return sum(full_inner(a, b) for a, b in zip(af, bf))


_CHUNK = 5  # samples per iteration of `_data_normal`'s loop (the largest divisor of S up to it)


def _data_normal(hf, samplesf, sample_weights, channels_first: bool = False) -> tuple:
    """`A^H Gamma A hf` (`apply_data_adjoint(apply_data(hf, x) * w, x)`), one sample at a time.

    A loop over the sample axis reads each sample once, while it is in cache, for both
    operators; the batched form streams the whole memory (megabytes) twice and XLA CPU
    materialises the product of the adjoint before summing it over the samples. Samples
    with the channels first, `(S, C_d, Ho_d, Wh_d)`, make the sum over the channels one over
    whole contiguous spectra (1.6x faster than over the innermost 3-12 channels).
    """
    out_hw = _grid_hw(hf)
    num = samplesf[0].shape[0]
    k = max(c for c in range(1, _CHUNK + 1) if num % c == 0)
    rdtype = jnp.real(hf[0]).dtype
    if channels_first:
        hc = tuple(jnp.moveaxis(h, -1, 0) for h in hf)  # (C, Ho, Wh)

        def body(i, acc):
            x = tuple(lax.dynamic_slice_in_dim(s, i * k, k) for s in samplesf)
            w = lax.dynamic_slice_in_dim(sample_weights, i * k, k).astype(rdtype)
            r = sum(pad_to(jnp.sum(u * h, axis=1), out_hw) for h, u in zip(hc, x))
            r = r * w[:, None, None]
            return tuple(a + jnp.sum(jnp.conj(u) * crop_from(r, (u.shape[2], 2 * u.shape[3] - 1))
                                     [:, None], axis=0) for a, u in zip(acc, x))

        out = lax.fori_loop(0, num // k, body, tuple(jnp.zeros_like(h) for h in hc))
        return tuple(jnp.moveaxis(a, 0, -1) for a in out)

    def body(i, acc):
        x = tuple(lax.dynamic_slice_in_dim(s, i * k, k) for s in samplesf)
        w = lax.dynamic_slice_in_dim(sample_weights, i * k, k).astype(rdtype)
        r = apply_data(hf, x) * w[:, None, None]
        return tuple(a + g for a, g in zip(acc, apply_data_adjoint(r, x)))

    return lax.fori_loop(0, num // k, body, tuple(jnp.zeros_like(h) for h in hf))


def filter_lhs(hf, samplesf, sample_weights, reg, *, channels_first: bool = False) -> tuple:
    """`(A^H Gamma A + W^H W) hf` (ECO `lhs_operation.m`).

    Args:
      hf: per block `(Ho_d, Wh_d, Cp_d)` complex.
      samplesf: per block `(S, Ho_d, Wh_d, Cp_d)` complex, or `(S, Cp_d, Ho_d, Wh_d)` with
        `channels_first` (the faster layout; `hf` and the result keep theirs).
      sample_weights: `(S,)` real.
      reg: per block `(Kh, Kw)` real reg kernel or `CrossKernel`.

    Returns:
      Tuple shaped like `hf`.
    """
    data = _data_normal(hf, samplesf, sample_weights, channels_first)
    return tuple(a + apply_reg(h, k) for a, h, k in zip(data, hf, reg))


def filter_rhs(samplesf, sample_weights, yf, *, channels_first: bool = False) -> tuple:
    """`A^H Gamma y = conj(sum_s w_s x_s) * y` (ECO `train_filter.m`).

    Args:
      samplesf: per block `(S, Ho_d, Wh_d, Cp_d)` complex, or `(S, Cp_d, Ho_d, Wh_d)` with
        `channels_first` (the result is `(Ho_d, Wh_d, Cp_d)` either way).
      sample_weights: `(S,)` real.
      yf: per block `(Ho_d, Wh_d)` label.

    Returns:
      Tuple of `(Ho_d, Wh_d, Cp_d)` complex.
    """
    out = []
    for x, y in zip(samplesf, yf):
        # A matrix-vector product reads the memory once (a weighted sum over the sample axis
        # is materialised before it is reduced on XLA CPU).
        xbar = jnp.tensordot(sample_weights.astype(x.dtype), x, axes=1, precision=_HI)
        if channels_first:
            xbar = jnp.moveaxis(xbar, 0, -1)
        out.append(jnp.conj(xbar) * y[..., None])
    return tuple(out)


def filter_precond(sample_energy, reg_energy, *, settings: FilterSettings) -> tuple:
    """ECO's diagonal preconditioner (`train_filter.m`, divided by in `diag_precond.m`).

    `(1 - rp) (dp m + (1 - dp) mean_c m) + rp reg_energy` with `dp = precond_data_param`,
    `rp = precond_reg_param`.

    Args:
      sample_energy: per block `(Ho_d, Wh_d, Cp_d)` real, `|xf|^2` of the projected sample
        (frame 1) updated with the learning rate after (the tracker's job).
      reg_energy: per block scalar `sum(reg ** 2)`.
      settings: `FilterSettings`.

    Returns:
      Tuple of `(Ho_d, Wh_d, Cp_d)` positive reals.
    """
    dp, rp = settings.precond_data_param, settings.precond_reg_param
    return tuple((1 - rp) * (dp * m + (1 - dp) * jnp.mean(m, axis=-1, keepdims=True)) + rp * e
                 for m, e in zip(sample_energy, reg_energy))


def train_filter(hf, cg_state: CGState, samplesf, sample_weights, yf, reg, sample_energy,
                 reg_energy, *, settings: FilterSettings,
                 channels_first: bool = False) -> tuple[tuple, CGState]:
    """One sparse filter update: `settings.cg_iter` warm-started PCG iterations (ECO
    `train_filter.m` with `pcg_ccot.m`), then `symmetrize`.

    ECO symmetrises only after the frame-1 training; here every update does, which only
    removes round-off (the iterates stay Hermitian in exact arithmetic).

    Args:
      hf: per block `(Ho_d, Wh_d, Cp_d)` complex, the current filter (the CG start).
      cg_state: the `CGState` of the previous update (`ctjax.ops.cg.cg_init(hf)` for the first
        update after frame 1, as ECO empties the state there).
      samplesf, sample_weights, yf, reg: see the module docstring.
      sample_energy, reg_energy: see `filter_precond`.
      settings: `FilterSettings` (cg_iter, cg_use_fr, cg_standard_alpha, the forgetting).
      channels_first: `samplesf` is `(S, Cp_d, Ho_d, Wh_d)` per block (see `filter_lhs`).

    Returns:
      `(hf, cg_state)`.
    """
    rhs = filter_rhs(samplesf, sample_weights, yf, channels_first=channels_first)
    diag = filter_precond(sample_energy, reg_energy, settings=settings)
    hf, cg_state = pcg(lambda h: filter_lhs(h, samplesf, sample_weights, reg,
                                            channels_first=channels_first), rhs, tuple(hf),
                       cg_state, inner=filter_inner, num_iters=settings.cg_iter, diag=diag,
                       fletcher_reeves=settings.cg_use_fr,
                       standard_alpha=settings.cg_standard_alpha,
                       forget_factor=settings.init_forget_factor)
    return tuple(symmetrize(h) for h in hf), cg_state


# ----------------------------------------------------------------------------- frame 1

def pca_projection(x: jnp.ndarray, dim: int) -> jnp.ndarray:
    """ECO's PCA initialisation of the projection (`init_projection_matrix.m`, 'pca').

    The leading `dim` singular vectors of the covariance `X^T X` of the mean-subtracted
    features, each column's sign fixed so that its largest-magnitude entry is positive.

    Args:
      x: `(H, W, C)` real spatial feature map (ECO: before the cosine window).
      dim: compressed dimension `Cp <= C` (static).

    Returns:
      `(C, dim)` projection, float32 (or the input's float dtype).
    """
    c = x.shape[-1]
    if not 1 <= dim <= c:
        raise ValueError(f"pca_projection: dim must lie in [1, {c}], got {dim}")
    x = x.reshape(-1, c)
    x = x - jnp.mean(x, axis=0)
    u, _, _ = jnp.linalg.svd(jnp.matmul(x.T, x, precision=_HI))
    p = u[:, :dim]
    big = jnp.take_along_axis(p, jnp.argmax(jnp.abs(p), axis=0)[None], axis=0)
    return p * jnp.where(big < 0, -1.0, 1.0).astype(p.dtype)


def project(xf: jnp.ndarray, p: jnp.ndarray) -> jnp.ndarray:
    """Projects the channels of a spectrum: `(..., C) @ (C, Cp) -> (..., Cp)`.

    A complex spectrum and a real `p` as real products of its real and imaginary parts (a
    complex product with `p`'s zero imaginary part would do four times the work).
    """
    if jnp.iscomplexobj(xf) and not jnp.iscomplexobj(p):
        p = p.astype(jnp.real(xf).dtype)
        both = jnp.matmul(jnp.stack([jnp.real(xf), jnp.imag(xf)]), p, precision=_HI)
        return lax.complex(both[0], both[1])
    return jnp.matmul(xf, p.astype(xf.dtype), precision=_HI)


def apply_proj(dp, xlf, hf0) -> jnp.ndarray:
    """The projection part `B` of the frame-1 Jacobian: `sum_d pad(sum_c (x_d dP_d)_c hf0_dc)`.

    Args:
      dp: per block `(C_d, Cp_d)` real, a projection increment.
      xlf: per block `(Ho_d, Wh_d, C_d)` complex, the unprojected sample.
      hf0: per block `(Ho_d, Wh_d, Cp_d)` complex, the filter at the linearisation point.

    Returns:
      `(Ho, Wh)` complex on the output grid.
    """
    return apply_data(hf0, tuple(project(x, d) for x, d in zip(xlf, dp)))


def _proj_adjoint_blocks(r_blocks, xlf, hf0) -> tuple:
    out = []
    for r, x, h in zip(r_blocks, xlf, hf0):
        u = jnp.conj(h) * r[..., None]
        w = _kx_weights(x.shape[-2], jnp.real(x).dtype)[:, None]
        # Re(sum_k w conj(x_kc') u_kp) = sum_k w (Re x Re u + Im x Im u): one real product.
        a = jnp.concatenate([jnp.real(x) * w, jnp.imag(x) * w]).reshape(-1, x.shape[-1])
        b = jnp.concatenate([jnp.real(u), jnp.imag(u)]).reshape(-1, u.shape[-1])
        out.append(jnp.matmul(a.T, b, precision=_HI))
    return tuple(out)


def apply_proj_adjoint(rf: jnp.ndarray, xlf, hf0) -> tuple:
    """`B^H` for `full_inner` on the output and the Frobenius product on the projections.

    `(B^H r)_{c'c} = sum_k w_k Re(conj(x_{kc'}) conj(hf0_{kc}) r_k)`, `w_k` = 1 at `kx = 0`, else 2.

    Args:
      rf: `(Ho, Wh)` complex on the output grid.
      xlf, hf0: as in `apply_proj`.

    Returns:
      Tuple of `(C_d, Cp_d)` real.
    """
    return _proj_adjoint_blocks([crop_from(rf, _block_hw(x)) for x in xlf], xlf, hf0)


def joint_inner(a, b) -> jnp.ndarray:
    """ECO `inner_product_joint.m` on `(hf, P)` pairs: `filter_inner` plus `sum(Pa * Pb)`."""
    return filter_inner(a[0], b[0]) + sum(jnp.sum(pa * pb) for pa, pb in zip(a[1], b[1]))


def joint_lhs(v, zf, xlf, hf0, reg, projection_reg) -> tuple:
    """The Gauss-Newton normal operator of frame 1 (ECO `lhs_operation_joint.m`).

    With `J (hf, dP) = A hf + B dP` (`A` over the projected sample `zf`, `B` linearised at
    `hf0`), returns `(J^H J (hf, dP)) + (W^H W hf, projection_reg dP)`.

    Args:
      v: `(hf, dP)`: per block `(Ho_d, Wh_d, Cp_d)` complex and `(C_d, Cp_d)` real.
      zf: per block `(Ho_d, Wh_d, Cp_d)`, the sample projected with the current `P`.
      xlf: per block `(Ho_d, Wh_d, C_d)`, the unprojected sample.
      hf0: per block filter at the linearisation point.
      reg: per block reg kernels.
      projection_reg: `lambda`.

    Returns:
      `(hf_out, dP_out)` shaped like `v`.
    """
    hf, dp = v
    r = apply_data(hf, zf) + apply_proj(dp, xlf, hf0)
    out_h = tuple(a + apply_reg(h, k) for a, h, k in zip(apply_data_adjoint(r, zf), hf, reg))
    out_p = tuple(g + projection_reg * d for g, d in zip(apply_proj_adjoint(r, xlf, hf0), dp))
    return out_h, out_p


def joint_precond(yf, p0, sample_energy, reg_energy, *, settings: FilterSettings) -> tuple:
    """The frame-1 diagonal preconditioner on `(hf, dP)` (ECO `train_joint.m`, `tracker.m`).

    The filter part is `filter_precond`; the projection part is
    `precond_proj_param (proj_energy + projection_reg)` with ECO's
    `proj_energy = 2 sum|yf_d|^2 / sum_d C_d` (sum over the half spectrum).

    Args:
      yf: per block `(Ho_d, Wh_d)` label.
      p0: per block `(C_d, Cp_d)` projection (only its shape and dtype are used).
      sample_energy, reg_energy: see `filter_precond`.
      settings: `FilterSettings`.

    Returns:
      `(diag_h, diag_p)`: tuples shaped like the filter and the projections.
    """
    total_dim = sum(p.shape[0] for p in p0)
    lam = settings.projection_reg
    diag_p = tuple(settings.precond_proj_param * (2 * jnp.sum(jnp.abs(y) ** 2) / total_dim + lam)
                   * jnp.ones_like(p) for y, p in zip(yf, p0))
    return filter_precond(sample_energy, reg_energy, settings=settings), diag_p


def joint_gn_step(hf, p, xlf, yf, reg, diag, *, settings: FilterSettings) -> tuple[tuple, tuple]:
    """One frame-1 Gauss-Newton iteration (the body of ECO `train_joint.m`'s loop).

    Linearises at `(hf, p)`, runs `settings.init_cg_per_gn` cold-started Fletcher-Reeves PCG
    iterations (standard step, as ECO's `init_CG_opts`) on the normal equations in
    `(hf, dP)` from `(hf, 0)`, symmetrises `hf` and returns `(hf, p + dP)`.

    Args:
      hf: per block `(Ho_d, Wh_d, Cp_d)` complex filter.
      p: per block `(C_d, Cp_d)` real projection.
      xlf, yf, reg: see `train_joint`.
      diag: `joint_precond(...)`.
      settings: `FilterSettings`.
    """
    lam = settings.projection_reg
    zf = tuple(project(x, q) for x, q in zip(xlf, p))
    rhs = (tuple(jnp.conj(z) * y[..., None] for z, y in zip(zf, yf)),
           tuple(g - lam * q for g, q in zip(_proj_adjoint_blocks(yf, xlf, hf), p)))
    x0 = (tuple(hf), tuple(jnp.zeros_like(q) for q in p))
    (hf_new, dp), _ = pcg(lambda v: joint_lhs(v, zf, xlf, hf, reg, lam), rhs, x0, None,
                          inner=joint_inner, num_iters=settings.init_cg_per_gn, diag=diag,
                          fletcher_reeves=True, standard_alpha=True)
    return tuple(symmetrize(h) for h in hf_new), tuple(q + d for q, d in zip(p, dp))


def train_joint(xlf, yf, reg, p0, sample_energy, reg_energy, *,
                settings: FilterSettings) -> tuple[tuple, tuple]:
    """Frame 1: the filter and the projection by Gauss-Newton (ECO `train_joint.m`).

    Lowers `||sum_d pad(sum_c hf_dc (x_d P_d)_c) - y||^2 + sum_d ||reg_d * hf_d||^2
    + projection_reg sum_d ||P_d||_F^2` from `hf = 0`, `P = p0` by `settings.init_gn_iter`
    iterations of `joint_gn_step`. The truncated CG matters: from `hf = 0` the exact
    Gauss-Newton step would zero `P` (the projection Jacobian vanishes with the filter), while
    a few preconditioned iterations barely move it (its diagonal is large).

    Args:
      xlf: per block `(Ho_d, Wh_d, C_d)` complex, the unprojected frame-1 sample.
      yf: per block `(Ho_d, Wh_d)` label.
      reg: per block `(Kh, Kw)` real reg kernel.
      p0: per block `(C_d, Cp_d)` real, the PCA initialisation (`pca_projection`).
      sample_energy: per block `(Ho_d, Wh_d, Cp_d)`, `|project(xlf, p0)|^2`.
      reg_energy: per block scalar.
      settings: `FilterSettings`.

    Returns:
      `(hf, P)`: per block `(Ho_d, Wh_d, Cp_d)` complex and `(C_d, Cp_d)` real.
    """
    xlf, yf, p0 = tuple(xlf), tuple(yf), tuple(p0)
    diag = joint_precond(yf, p0, sample_energy, reg_energy, settings=settings)
    hf = tuple(jnp.zeros(x.shape[:-1] + (p.shape[-1],), x.dtype) for x, p in zip(xlf, p0))

    def step(_, carry):
        return joint_gn_step(*carry, xlf, yf, reg, diag, settings=settings)

    return lax.fori_loop(0, settings.init_gn_iter, step, (hf, p0))
