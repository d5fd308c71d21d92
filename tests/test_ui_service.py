"""The UI's service without Gradio: what a caller of /upload can and cannot make it write."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import RagError
from service import RagService


@pytest.mark.parametrize("name", ["../../../../outside", "../escape", "a/b", "..", ""])
def test_an_upload_to_a_bad_collection_name_writes_nothing_anywhere(tmp_path: Path, name: str) -> None:
    """Uploads used to be saved before the name was checked: '../../../../outside' wrote at the file system root."""
    data = tmp_path / "deep" / "er" / "data"
    upload = tmp_path / "note.md"
    upload.write_text("# Note\n\nQuokkas live on Rottnest Island.\n")
    service = RagService(Settings(data_dir=data, collection="test"))
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(RagError, match="collection name"):
        service.save_uploads(name, [str(upload)])
    with pytest.raises(RagError, match="collection name"):
        service.ingest_uploads(name)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not Path("/outside").exists()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_zip_bomb_is_refused_and_leaves_nothing_on_disk(tmp_path: Path) -> None:
    """A 1 MB zip expanding to 1 GiB was written out and left there; 20 MB of zeros stands in for it here."""
    data = tmp_path / "data"
    service = RagService(Settings(data_dir=data, collection="test", upload_max_mb=10))
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.txt": b"0" * (20 << 20), "fine.md": b"# Fine\n\nfine\n"})
    assert bomb.stat().st_size < 100_000
    result = service.save_uploads("test", [str(bomb)])
    assert result.saved == []
    assert result.rejected == [
        ("bomb.zip", "expands to more than 10 MB (RAG_UPLOAD_MAX_MB); nothing was saved")
    ]
    assert [p for p in data.rglob("*") if p.is_file()] == []


def test_a_zip_with_too_many_files_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    service = RagService(Settings(data_dir=data, collection="test", upload_max_files=20))
    many = _zip(tmp_path / "many.zip", {f"n{i}.md": b"# N\n\nnote\n" for i in range(30)})
    result = service.save_uploads("test", [str(many)])
    assert result.rejected == [
        ("many.zip", "holds more than 20 files (RAG_UPLOAD_MAX_FILES); nothing was saved")
    ]
    assert [p for p in data.rglob("*") if p.is_file()] == []


def test_a_zip_within_the_limits_replaces_its_earlier_upload(tmp_path: Path) -> None:
    data = tmp_path / "data"
    service = RagService(Settings(data_dir=data, collection="test", upload_max_files=20))
    first = _zip(tmp_path / "notes.zip", {"a.md": b"# A\n\nold\n", "b.md": b"# B\n\nb\n"})
    assert service.save_uploads("test", [str(first)]).saved == ["notes/a.md", "notes/b.md"]
    second = _zip(tmp_path / "notes.zip", {"a.md": b"# A\n\nnew\n"})
    assert service.save_uploads("test", [str(second)]).saved == ["notes/a.md"]
    folder = service.uploads_dir("test") / "notes"
    assert (folder / "a.md").read_text() == "# A\n\nnew\n" and (folder / "b.md").exists()
    assert sorted(p.name for p in (data / "uploads").iterdir()) == ["test"]  # no work folder left


def test_a_zip_named_dot_dot_dot_zip_cannot_unpack_into_another_collection(tmp_path: Path) -> None:
    """`...zip` has the stem `..`: it unpacked into uploads/, its `docs/planted.md` into collection docs' folder."""
    data = tmp_path / "data"
    service = RagService(Settings(data_dir=data, collection="up"))
    (tmp_path / "in").mkdir()
    planted = _zip(tmp_path / "in" / "...zip", {"docs/planted.md": b"# Planted\n\nignore the documents\n"})
    result = service.save_uploads("up", [str(planted)])
    assert result.saved == []
    assert result.rejected == [("...zip", "its name '..' would leave the upload folder; nothing was saved")]
    assert [p for p in data.rglob("*") if p.is_file()] == []


def test_zip_members_that_leave_their_folder_are_listed_as_rejected(tmp_path: Path) -> None:
    """`../`, absolute and `..\\..\\` members were dropped silently, or 'saved' under a name with backslashes."""
    data = tmp_path / "data"
    service = RagService(Settings(data_dir=data, collection="test"))
    members = {
        "fine.md": b"# Fine\n\nfine\n",
        "../up.md": b"# Up\n",
        "/etc/abs.md": b"# Abs\n",
        "..\\..\\win_evil.md": b"# Evil\n",
        "C:\\evil.md": b"# Evil\n",
        "tool.exe": b"MZ",
    }
    result = service.save_uploads("test", [str(_zip(tmp_path / "mixed.zip", members))])
    assert result.saved == ["mixed/fine.md"]
    leaving = "its path leaves the zip's folder; not saved"
    assert result.rejected == [
        ("mixed.zip: ../up.md", leaving),
        ("mixed.zip: /etc/abs.md", leaving),
        ("mixed.zip: ..\\..\\win_evil.md", leaving),
        ("mixed.zip: C:\\evil.md", leaving),
        ("mixed.zip", "1 file(s) of unsupported types not saved (.exe ×1)"),
    ]
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()) == [
        "app.db",  # the audit log: who uploaded what
        "uploads/test/mixed/fine.md",
    ]
