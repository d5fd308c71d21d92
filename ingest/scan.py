"""Walk an ingestion root: every file with its status, symlink loops and unreadable entries reported."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class FoundFile:
    path: Path
    source: str  # path relative to the root, with '/' separators
    size: int = 0
    mtime_ns: int = 0
    error: str | None = None


def scan(root: Path) -> list[FoundFile]:
    """Files under root in a stable order; directory symlinks are followed unless they loop."""
    found: list[FoundFile] = []
    seen_dirs: set[tuple[int, int]] = set()
    _walk(root, root, seen_dirs, found)
    return sorted(found, key=lambda f: f.source)


def _walk(root: Path, folder: Path, seen: set[tuple[int, int]], out: list[FoundFile]) -> None:
    try:
        info = folder.stat()
        seen.add((info.st_dev, info.st_ino))
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        out.append(FoundFile(folder, _rel(root, folder), error=os_error_reason(exc)))
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        try:
            stat = path.stat()
        except OSError as exc:
            out.append(FoundFile(path, _rel(root, path), error=os_error_reason(exc)))
            continue
        if path.is_dir():
            if (stat.st_dev, stat.st_ino) in seen:
                out.append(
                    FoundFile(path, _rel(root, path), error="symlink loop: points back to a parent folder")
                )
            else:
                _walk(root, path, seen, out)
        elif path.is_file():
            out.append(FoundFile(path, _rel(root, path), stat.st_size, stat.st_mtime_ns))


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def os_error_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "broken symlink or vanished file"
    return exc.strerror or str(exc)
