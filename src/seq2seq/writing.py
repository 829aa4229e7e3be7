"""Every file and folder seq2seq writes is written here, one way.

- A file is written beside its place under a name of its own, flushed to the disk and renamed
  into place; a folder (a checkpoint, an export) is filled beside its place and renamed into it
  whole. A failure or a stop part way never leaves a half-written file or folder where a command
  would find it, and never loses the one it replaces.
- What is written gets the modes a plain `open` gives under the user's umask (0644 files and
  0755 folders under the usual 022), so a shared cache or run folder is readable by its group.
- A failure the user can fix (no permission, a full disk, a file-size limit, a file where a
  folder should be) is a `WriteError`: one line naming the place, the reason and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from seq2seq.errors import Seq2SeqError

log = logging.getLogger(__name__)

_NO_ROOM = "free some space, or write to another disk"
_FIXES = {
    errno.ENOSPC: _NO_ROOM,
    errno.EDQUOT: _NO_ROOM,
    errno.EFBIG: "the file is larger than this process may write (ulimit -f); raise the limit, "
    "or write elsewhere",
    errno.EACCES: "give a place you may write to",
    errno.EPERM: "give a place you may write to",
    errno.EROFS: "give a place on a disk that is not read-only",
    errno.ENOTDIR: "a part of the path is a file, not a folder; give another place",
    errno.EEXIST: "a part of the path is a file, not a folder; give another place",
    errno.ENOENT: "its folder does not exist; make it, or give another place",
}


class WriteError(Seq2SeqError, OSError):
    """A file or folder could not be written; the message names it, why, and the fix."""


def write_error(error: OSError, place: str | Path) -> WriteError:
    reason = error.strerror or str(error)
    fix = _FIXES.get(error.errno, "give another place")
    return WriteError(f"cannot write {place}: {reason}; {fix}")


@contextlib.contextmanager
def errors(place: str | Path) -> Iterator[None]:
    """Any OSError within, as the one-line `WriteError` about `place`."""
    try:
        yield
    except WriteError:
        raise  # already about its own place
    except OSError as error:
        raise write_error(error, place) from None


def make_dirs(path: str | Path) -> Path:
    path = Path(path)
    with errors(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def replacing(path: str | Path, *, parents: bool = False) -> Iterator[BinaryIO]:
    """A binary handle whose bytes become `path` when the block ends without an error, in one
    rename; until then `path` is as it was. Its folder must exist, unless `parents` says to
    make it (a missing folder in a user's output path is more often a typo than a wish).
    What is not a plain file (`/dev/stdout`, a pipe) is written through, never replaced, and
    a link keeps linking: the file it names is replaced."""
    path = Path(path)
    if path.exists() and not path.is_file():
        with errors(path), open(path, "wb") as handle:
            yield handle
        return
    path = path.resolve() if path.is_symlink() else path
    temporary = _beside(path)
    with errors(path):
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Created by open, so the user's umask sets the mode (mkstemp's is private).
            with open(temporary, "xb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            fsync(path.parent)
        finally:
            with contextlib.suppress(OSError):  # gone once renamed; unreachable if never made
                temporary.unlink()


def write_file(path: str | Path, data: bytes | str, *, parents: bool = False) -> None:
    """`data` (str as UTF-8) as the whole of `path`, replaced in one rename (`replacing`)."""
    with replacing(path, parents=parents) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_cache(path: str | Path, data: bytes) -> None:
    """A cache entry, as `write_file` writes it; a cache that cannot be written only costs
    time, so a failure is a warning."""
    try:
        write_file(path, data, parents=True)
    except WriteError as error:
        log.warning("%s (the cache only saves time: going on without it)", error)


@contextlib.contextmanager
def staged_dir(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """A new, empty folder beside `target` to fill. When the block ends without an error, its
    files and itself are flushed to the disk and it is renamed to `target` (an existing
    `target` is replaced whole if `replace`); otherwise it is removed."""
    target = Path(target)
    staging = _beside(target)
    with errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(staging, 0o777)  # the user's umask sets the mode (mkdtemp's is private)
            yield staging
            _follow_umask(staging)
            fsync(staging)
            if replace:
                _replace_dir(staging, target)
            else:
                staging.rename(target)
                fsync(target.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def previous(path: Path) -> Path:
    """Where a folder being replaced waits until its successor is in place: after a stop
    mid-swap, the only whole copy (a reader looks here when `path` is missing)."""
    return path.with_name(f".{path.name}.old")


def _replace_dir(new: Path, target: Path) -> None:
    """Swap `new` in as `target`; at every moment one whole copy exists on disk, either under
    `target` or, mid-swap, under `previous(target)`."""
    old = previous(target)
    if old.exists():
        if target.exists():  # a swap finished but its clean-up was interrupted
            shutil.rmtree(old)
        else:  # a swap was interrupted: the old copy is the only whole one
            old.rename(target)
    if target.exists():
        target.rename(old)
    new.rename(target)
    fsync(target.parent)  # the renames reach the disk before the old copy goes
    shutil.rmtree(old, ignore_errors=True)


def _follow_umask(folder: Path) -> None:
    """Give what libraries wrote into `folder` with private modes (safetensors' files) the
    modes a plain open gives, and flush each file. The folder was made with mode 0777 under
    the umask, so its own mode says what the umask leaves; os.umask reads it only by setting
    it, which races with other threads."""
    allowed = folder.stat().st_mode & 0o777
    for path in folder.rglob("*"):
        path.chmod(allowed if path.is_dir() else allowed & 0o666)
        if path.is_file():
            fsync(path)


def fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk: without it a power loss can
    leave a renamed file empty, or undo the rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_tensors(tensors: dict, path: Path) -> None:
    """safetensors' save_file, whose I/O failures (a SafetensorError, "... (os error 27)") are
    raised as the OSError they are."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, path)
    except SafetensorError as error:
        code = re.search(r"os error (\d+)", str(error))
        if code is None:
            raise
        number = int(code[1])
        raise OSError(number, os.strerror(number), str(path)) from None


def _beside(path: Path) -> Path:
    """A name of its own next to `path`, hidden, for what will be renamed to `path`."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
