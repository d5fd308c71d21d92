"""Which loader reads which file: the formats ingestion knows, by suffix. Above ingest.loaders and
ingest.converters, so neither imports the other's dispatch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ingest import converters
from ingest.loaders import Section, load_docx, load_html, load_text
from ingest.ocr import IMAGE_SUFFIXES, OcrOptions, image_sections, pdf_sections

Loader = Callable[[Path], Iterator[Section]]


def _converted(suffix: str) -> Loader:
    """A format read by ingest.converters (markitdown itself loads with the first such file: it is slow to load)."""

    def load(path: Path) -> Iterator[Section]:
        loader = {
            ".eml": converters.load_eml,
            ".odt": converters.load_odt,
            ".json": converters.load_json,
        }.get(suffix)
        yield from (loader or converters.load_with_markitdown)(path)

    return load


LOADERS: dict[str, Loader] = {
    ".txt": lambda p: load_text(p, "none"),
    ".md": lambda p: load_text(p, "markdown"),
    ".markdown": lambda p: load_text(p, "markdown"),
    ".rst": lambda p: load_text(p, "rst"),
    ".html": load_html,
    ".htm": load_html,
    ".pdf": lambda p: pdf_sections(p, OcrOptions()),
    ".docx": load_docx,
    **{
        suffix: _converted(suffix)
        for suffix in (".pptx", ".xlsx", ".csv", ".epub", ".ipynb", ".json", ".eml", ".odt")
    },
    **{suffix: lambda p: image_sections(p, OcrOptions()) for suffix in IMAGE_SUFFIXES},
}
STREAMED = {".txt", ".md", ".markdown", ".rst"}


def file_type(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".htm": "html", ".markdown": "md", ".jpeg": "jpg", ".tiff": "tif"}.get(suffix, suffix.lstrip("."))


def loader_for(path: Path, ocr: OcrOptions | None = None) -> Loader | None:
    """The loader of the path's format; PDFs and images read with these OCR options (the defaults if none)."""
    suffix = path.suffix.lower()
    if ocr is not None and suffix == ".pdf":
        return lambda p: pdf_sections(p, ocr)
    if ocr is not None and suffix in IMAGE_SUFFIXES:
        return lambda p: image_sections(p, ocr)
    return LOADERS.get(suffix)
