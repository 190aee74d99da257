"""Where ctjax finds data it does not ship: one setting, `CTJAX_DATA`.

`CTJAX_DATA` points at a folder laid out like `../shared/data`:

    sequences/<name>/img/0001.jpg ...      OTB-format sequences
    sequences/<name>/groundtruth_rect.txt
    sequences/splits.json                  {"train": [...], "eval": [...]}
    weights/CF_VGGM.mat                    the authors' released student (not shipped)
    weights/efficientnet_lite0_imagenet_torch_layout.npz
    lookup/CNnorm.mat

When unset, the default is `../shared/data` beside the repository checkout. Every accessor
fails with `DataNotFoundError` naming the missing path and the setting, never with a bare
`FileNotFoundError` deep inside a loader.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CTJAX_DATA"
_REPO_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT = _REPO_ROOT.parent / "shared" / "data"
ASSETS = Path(__file__).resolve().parent / "assets"


class DataNotFoundError(FileNotFoundError):
    """A data file or folder that ctjax needs is missing."""


def data_root() -> Path:
    """The data folder: `$CTJAX_DATA`, else `../shared/data` beside the checkout."""
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else _DEFAULT


def require(path: Path | str, what: str) -> Path:
    """Returns `path` if it exists, else raises `DataNotFoundError` naming `what`."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(
            f"{what} not found at {path}. Set {ENV_VAR} to your data folder "
            f"(currently {data_root()}); see README, 'Data'.")
    return path


def sequences_dir() -> Path:
    """The folder of OTB-format sequences."""
    return require(data_root() / "sequences", "sequence folder")


def sequence_dir(name: str) -> Path:
    """One named sequence under `sequences_dir()`."""
    return require(sequences_dir() / name, f"sequence {name!r}")


def splits_file() -> Path:
    """`sequences/splits.json`: {"train": [...], "eval": [...]}."""
    return require(data_root() / "sequences" / "splits.json", "split list")


def weights_file(name: str) -> Path:
    """A weight file under `<data>/weights/`."""
    return require(data_root() / "weights" / name, f"weight file {name!r}")


def released_student() -> Path:
    """The authors' released student `CF_VGGM.mat` (never shipped: no licence)."""
    return weights_file("CF_VGGM.mat")


def lookup_file(name: str) -> Path:
    """A lookup table under `<data>/lookup/` (e.g. `CNnorm.mat`)."""
    return require(data_root() / "lookup" / name, f"lookup table {name!r}")
