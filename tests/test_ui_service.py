"""The UI's service without Gradio: what a caller of /upload can and cannot make it write."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import RagError
from ui.service import RagService


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
