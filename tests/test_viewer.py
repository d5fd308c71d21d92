"""The citation viewer's pieces over a real collection: the section around a passage, its marks, the file rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rag.collection import Collection
from rag.config import Settings
from rag.errors import DocumentNotFound
from service.viewer import citation_url, original_file, source_view, unlinked, view_html
from tests.test_ingest import run_ingest

PARAGRAPHS = [
    f"Paragraph {i} is about topic number {i}, and it says a few more words about it." for i in range(40)
]


def test_the_viewer_shows_the_section_around_the_passage_with_its_quote_marked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", collection="test", chunk_tokens=48, chunk_overlap=8)
    root = tmp_path / "docs"
    root.mkdir()
    (root / "long.md").write_text("# Topics\n\n" + "\n\n".join(PARAGRAPHS) + "\n")
    run_ingest(settings, root)
    with Collection(settings) as collection:
        [record] = collection.documents()
        assert record.chunks > 8
        view = source_view(collection, record.doc_id, 5)
    assert view.cited.chunk_index == 5 and [c.chunk_index for c in view.context] == [3, 4, 5, 6, 7]
    quote = next(p for p in PARAGRAPHS if p in view.cited.text)
    page = view_html(view, [quote])
    context = page.split("<div class='context'>")[1]
    assert context.count(f"<mark class='quote'>{quote}</mark>") == 1
    passage = context.split("<mark class='passage'>")[1].split("</mark>")[0]
    assert quote in passage  # the quote inside the marked passage
    for paragraph in PARAGRAPHS[:60]:  # overlapping chunks joined: no paragraph of the section twice
        assert context.count(paragraph) <= 1
    assert "<img" not in page and "Download long.md" in page


def test_a_file_is_served_only_from_inside_the_folder_it_was_ingested_from(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", collection="test")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "note.md").write_text("# Note\n\nQuokkas live on Rottnest Island.\n")
    (tmp_path / "secret.txt").write_text("not yours")
    run_ingest(settings, root)
    with Collection(settings) as collection:
        [record] = collection.documents()
    assert original_file(record) == (root / "note.md").resolve()
    with pytest.raises(DocumentNotFound, match="not inside the folder"):
        original_file(replace(record, source="../secret.txt"))
    (root / "note.md").unlink()
    with pytest.raises(DocumentNotFound, match="no longer at"):
        original_file(record)


def test_citation_links_carry_the_passage_and_the_quote_and_come_off_for_the_model() -> None:
    url = citation_url("my docs", "abc", 3, ["It says [so] & more."])
    assert url == "view/my%20docs/abc?chunk=3&hl=It+says+%5Bso%5D+%26+more."
    linked = f'Quokkas live there. <a class="cite" href="{url}" title="t">[1]</a>'
    assert unlinked(linked) == "Quokkas live there. [1]"
