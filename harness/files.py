"""Files that are never half-written: a lock between processes, SHA-256, write-then-rename.

Every store the harness keeps on disk (teacher cache, scratch twins, trial
models, exports) is written beside its destination and renamed into place,
so a crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(blob: str, length: int = 20) -> str:
    """A short SHA-256 of a text (cache keys)."""
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


@contextmanager
def locked(path: Path):
    """An exclusive `flock` on `path` (created if missing): one process at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tmp_beside(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def replacing(path: Path, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it replaces `path` (file or folder).

    `suffix` keeps an extension some writers insist on (Keras saves only to `.keras`).
    On an exception the temporary is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path, suffix)
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    old = _tmp_beside(path, ".old")
    if path.is_dir():  # os.replace cannot put a folder over a non-empty folder
        os.replace(path, old)
    os.replace(tmp, path)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def make_folder(path) -> list[Path]:
    """Create `path` and its missing parents; the folders made, deepest first (for `remove_empty`)."""
    w = Path(path).expanduser().absolute()
    made = [d for d in [w, *w.parents] if not d.exists()]
    w.mkdir(parents=True, exist_ok=True)
    return made


def remove_empty(folders: list[Path]) -> None:
    """Remove those of `folders` (deepest first) that are still empty."""
    for d in folders:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
