"""Writing outputs safely: complete or not at all, with the permissions a plain write would give."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)  # the only way to read it is to set it
    os.umask(current)
    return current


def plain_permissions(path: Path) -> None:
    """Give ``path`` (a file, or a directory and the files in it) the mode that ``open()`` or ``mkdir`` would
    have given under the current umask. Temporary files and directories are created private (0600 / 0700),
    so an output renamed from one would otherwise be unreadable by the lab that shares it."""
    umask = _umask()
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed to ``path`` once the block succeeded (else removed), so an
    interrupted write leaves no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        plain_permissions(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
