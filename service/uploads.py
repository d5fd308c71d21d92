"""Uploaded files into a collection's upload folder: zips unpacked all or nothing, within limits, never outside."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ingest.formats import loader_for


@dataclass
class Upload:
    saved: list[str]
    rejected: list[tuple[str, str]]


def save_uploads(files: list[str], target: Path, limits: ZipLimits) -> Upload:
    """Copy uploaded files (zips unpacked, safely) into target; what could not be saved is listed with why."""
    target.mkdir(parents=True, exist_ok=True)
    saved: list[str] = []
    rejected: list[tuple[str, str]] = []
    for name in files:
        path = Path(name)
        try:
            if path.suffix.lower() == ".zip":
                unpacked = _unzip(path, _inside(target, path.stem), limits)
                saved += unpacked.saved
                rejected += unpacked.rejected
            elif loader_for(path) is None:
                rejected.append((path.name, f"unsupported file type {path.suffix or '(none)'}"))
            else:
                shutil.copyfile(path, _inside(target, path.name))
                saved.append(path.name)
        except UploadRefused as exc:
            rejected.append((path.name, str(exc)))
        except zipfile.BadZipFile as exc:
            rejected.append((path.name, f"bad zip: {exc}"))
        except (OSError, ValueError) as exc:
            rejected.append((path.name, f"cannot save it: {_reason(exc)}"))
    return Upload(saved, rejected)


NAME_MAX_BYTES = 255  # a file name's limit on Linux, macOS and Windows file systems


class UploadRefused(ValueError):
    """An upload over a limit: the message says which, and that nothing of it was kept."""


@dataclass(frozen=True)
class ZipLimits:
    max_bytes: int
    max_files: int
    work_root: Path  # where a zip is unpacked before its files are moved into place

    def too_big(self) -> UploadRefused:
        return UploadRefused(
            f"expands to more than {self.max_bytes / 2**20:g} MB (RAG_UPLOAD_MAX_MB); nothing was saved"
        )


def _inside(folder: Path, name: str) -> Path:
    """folder/name, refused unless it resolves to a path strictly inside folder: a zip named `...zip` has the stem
    `..`, which would unpack into the folder above (another collection's uploads)."""
    root = folder.resolve()
    path = (folder / name).resolve()
    if name in ("", ".", "..") or path == root or not path.is_relative_to(root):
        raise UploadRefused(f"its name {name!r} would leave the upload folder; nothing was saved")
    if len(os.fsencode(path.name)) > NAME_MAX_BYTES:
        raise UploadRefused(f"its name is longer than {NAME_MAX_BYTES} bytes; nothing was saved")
    return path


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc)).lower()


def _unzip(path: Path, target: Path, limits: ZipLimits) -> Upload:
    """Unpack the zip's supported documents into target, all or nothing: into a work folder first, counting the
    bytes really written (a member's declared size can lie), then moved into place. Members that would leave
    target, or that no loader reads, are listed as rejected."""
    with zipfile.ZipFile(path) as archive:
        files = [m for m in archive.infolist() if not m.is_dir()]
        if len(files) > limits.max_files:
            raise UploadRefused(
                f"holds more than {limits.max_files} files (RAG_UPLOAD_MAX_FILES); nothing was saved"
            )
        rejected = [
            (f"{path.name}: {m.filename}", why) for m in files if (why := _member_problem(m.filename))
        ]
        wanted = [m for m in files if not _member_problem(m.filename)]
        if unread := [m for m in wanted if loader_for(Path(_member_path(m.filename).name)) is None]:
            rejected.append((path.name, _unsupported(unread)))
            wanted = [m for m in wanted if m not in unread]
        if sum(m.file_size for m in wanted) > limits.max_bytes:
            raise limits.too_big()
        if not wanted:
            raise ValueError("no supported document inside")
        limits.work_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=limits.work_root))
        try:
            _extract(archive, wanted, work, limits)
            saved = [_move_into(work, _member_path(m.filename), target) for m in wanted]
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return Upload(saved, rejected)


def _member_path(filename: str) -> PurePosixPath:
    """A member's path with Windows separators read as separators: `..\\..\\evil.md` is a parent path too."""
    return PurePosixPath(filename.replace("\\", "/"))


def _member_problem(filename: str) -> str:
    """Why a zip member is not kept, or "": absolute or parent paths would escape the upload folder."""
    name = _member_path(filename)
    if name.is_absolute() or ".." in name.parts or PureWindowsPath(filename).drive:
        return "its path leaves the zip's folder; not saved"
    if any(len(os.fsencode(part)) > NAME_MAX_BYTES for part in name.parts):
        return f"a name in its path is longer than {NAME_MAX_BYTES} bytes; not saved"
    return ""


def _unsupported(members: list[zipfile.ZipInfo]) -> str:
    """One line for a zip's files no loader reads (a project's 500 images are not 500 lines)."""
    suffixes = Counter(_member_path(m.filename).suffix or "(none)" for m in members)
    kinds = ", ".join(f"{suffix} ×{n}" for suffix, n in suffixes.most_common(5))
    return f"{len(members)} file(s) of unsupported types not saved ({kinds})"


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], work: Path, limits: ZipLimits) -> None:
    written = 0
    for member in members:
        destination = work / Path(*_member_path(member.filename).parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, destination.open("wb") as dst:
            while block := src.read(1 << 20):
                written += len(block)
                if written > limits.max_bytes:
                    raise limits.too_big()
                dst.write(block)


def _move_into(work: Path, name: PurePosixPath, target: Path) -> str:
    destination = target / Path(*name.parts)
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work / Path(*name.parts), destination)
    return str(destination.relative_to(target.parent))
