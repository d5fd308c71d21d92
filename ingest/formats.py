"""Which loader reads which file: the formats ingestion knows, by suffix. Above ingest.loaders and
ingest.converters, so neither imports the other's dispatch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ingest import converters
from ingest.loaders import Section, load_docx, load_html, load_pdf, load_text

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
    ".pdf": load_pdf,
    ".docx": load_docx,
    **{
        suffix: _converted(suffix)
        for suffix in (".pptx", ".xlsx", ".csv", ".epub", ".ipynb", ".json", ".eml", ".odt")
    },
}
STREAMED = {".txt", ".md", ".markdown", ".rst"}


def file_type(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".htm": "html", ".markdown": "md"}.get(suffix, suffix.lstrip("."))


def loader_for(path: Path) -> Loader | None:
    return LOADERS.get(path.suffix.lower())
