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

The module also owns the few file-system rules every writer follows: `atomic_write` (results,
summaries, configs and logs are replaced whole, under unique temporary names, with normal
permissions), `check_writable` (outputs are checked before work starts) and `digest` (the
checksum that identifies a weights file or folder in result keys).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

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


# ---------------------------------------------------------------------------------------------
# Writing results: atomic, unique temporary names, normal permissions


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_open(path: Path | str) -> Iterator[BinaryIO]:
    """A binary file to write that replaces `path` atomically when the block ends.

    Readers see the old file or the new one, never a part; if the block raises (or the
    process is interrupted by an exception) no temporary file is left behind and `path` is
    untouched; two writers of the same file never share a temporary name (the last
    `os.replace` wins). The file gets the permissions a plain `open(path, "w")` would give
    (0666 & ~umask), not `mkstemp`'s 0600. Parent folders are created.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path | str, data: str | bytes) -> Path:
    """Writes a whole file atomically (see `atomic_open`); `str` is written as UTF-8.

    Returns:
      `path` as a `Path`.
    """
    with atomic_open(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else bytes(data))
    return Path(path)


def check_writable(path: Path | str, what: str = "output file") -> Path:
    """Checks, before any work is done, that `path` can be written as a file.

    Creates missing parent folders and writes (then removes) a temporary file beside `path`,
    so a read-only folder, a path that is a folder, or a parent that is a file fails at once
    with an error naming `what` and the path, not after a whole sequence was tracked.

    Returns:
      `path` as a `Path`.

    Raises:
      OSError (`IsADirectoryError`, `NotADirectoryError`, `PermissionError`, ...): with a
        message naming the path.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(f"cannot write {what} {path}: {folder} is a file, "
                                         "not a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".check")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise type(e)(e.errno, f"cannot write {what} {path}: {e.strerror or e}") from None
    return path


def check_writable_dir(path: Path | str, what: str = "output folder") -> Path:
    """`check_writable` for a folder: creates it and checks that files can be made in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} exists and is not a folder")
    check_writable(path / ".ctjax-write-check", what=f"{what} {path}: a file")
    return path


def digest(path: Path | str, *, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, or of a folder's files (relative names and bytes, in
    sorted order, hidden files skipped): what identifies a weights file or student folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot checksum {path}: it does not exist")
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts))
    for p in files:
        if p != path:
            h.update(str(p.relative_to(path)).encode() + b"\0")
        with p.open("rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()
