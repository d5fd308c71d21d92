"""Text from pictures of text: scanned PDF pages and image files, read by Tesseract (Debian's `tesseract-ocr`, run
as a process per page with one OpenMP thread).

Chosen over rapidocr-onnxruntime (PP-OCRv4, in its wheel) by `benchmarks/ocr_bench.py` on pages rendered from
known English text (docs/benchmarks.md, "OCR"): rapidocr's models are Chinese-first and ran words together
("Invoicenumber4711"). PDF pages are rendered by pypdfium2, which is not thread-safe even across documents, so
one lock guards every call into it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.loaders import LoadError, Section, read_pdf

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
INSTALL = "install Tesseract (apt-get install tesseract-ocr tesseract-ocr-eng) or set RAG_OCR=false"
_PDFIUM = threading.Lock()
# Tesseract asks OpenMP for four threads, which spin against each other on a small VM: a full page of text took 21.7 s
# that way and 2.1 s with one thread (2026-12-05, a 2-core Xeon VM; docs/benchmarks.md, "OCR"). Pages of several
# files are read at once by RAG_INGEST_WORKERS processes instead. A limit set in the environment is kept.
OMP_THREADS = "1"


@dataclass(frozen=True)
class OcrOptions:
    enabled: bool = True
    page_seconds: float = 60.0  # Tesseract is stopped on a page that takes longer
    file_seconds: float = 1200.0  # a file whose OCR would take longer is stopped and reported
    min_chars: int = 20  # a PDF page whose text layer has fewer characters is read by OCR
    language: str = "eng"
    dpi: int = 200  # a PDF page is rendered at this resolution for OCR
    # called before each page OCR reads, with its place and the count of such pages in the file: OCR is slow
    on_page: Callable[[int, int], None] | None = None

    def reading(self, done: int, total: int) -> None:
        if self.on_page is not None:
            self.on_page(done, total)


ESTIMATE_AFTER_PAGES = (
    3  # pages read before the file's OCR time is extrapolated (the first pays Tesseract's start)
)


class OcrBudget:
    """A file's OCR time: stopped as soon as the pages read so far say the rest would not fit (a 300-page scan is
    refused in seconds, not after the budget is spent), or when the budget runs out."""

    def __init__(self, seconds: float, pages: int) -> None:
        self.seconds, self.pages = seconds, pages
        self.started = time.monotonic()

    def check(self, done: int) -> None:
        elapsed = time.monotonic() - self.started
        expected = elapsed / done * self.pages if done >= ESTIMATE_AFTER_PAGES else elapsed
        if expected > self.seconds or elapsed > self.seconds:
            raise LoadError(
                f"OCR of its {self.pages} scanned pages would take about {expected:.0f} s, over "
                f"RAG_OCR_FILE_SECONDS={self.seconds:g} (stopped after {done}); raise it to read this file"
            )


def tesseract(image: Any, seconds: float, language: str = "eng") -> str:
    """The image's text; a clear LoadError when Tesseract is missing, fails or runs over its time."""
    if image.mode not in ("1", "L", "RGB", "RGBA"):
        image = image.convert("RGB")  # what a PNG can hold
    env = {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", OMP_THREADS)}
    with tempfile.TemporaryDirectory(prefix="rag-ocr-") as folder:
        page = Path(folder) / "page.png"
        image.save(page)
        try:
            done = subprocess.run(
                ["tesseract", str(page), "stdout", "-l", language],
                capture_output=True,
                timeout=seconds,
                env=env,
            )
        except FileNotFoundError:
            raise LoadError(f"this needs OCR and Tesseract is not installed: {INSTALL}") from None
        except subprocess.TimeoutExpired:  # run() has killed it
            raise LoadError(f"OCR took over {seconds:g} s on a page (RAG_OCR_PAGE_SECONDS)") from None
    if done.returncode:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise LoadError(f"OCR failed: {(reason[-1] if reason else f'exit code {done.returncode}')[:200]}")
    return done.stdout.decode("utf-8", errors="replace")


def image_sections(path: Path, options: OcrOptions) -> Iterator[Section]:
    """Each frame of an image file (a multi-page TIFF has several) read by OCR; page numbers from 1 when there
    are several frames. A frame with under `min_chars` characters is an icon or a photo, not text: a folder of
    HTML pages holds their "Prev" and "Next" buttons (the Debian FAQ's did), which would otherwise be documents."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    if not options.enabled:
        raise LoadError("an image needs OCR, which is off (RAG_OCR=false)")
    try:
        with Image.open(path) as image:
            frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]
    # UnidentifiedImageError's message names the file by its full path, which the summary line names already
    except UnidentifiedImageError:
        raise LoadError("corrupt or unreadable image: not a picture format Pillow knows") from None
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if "truncated" in reason.lower():
            reason = "the file ends before the picture does (truncated)"
        raise LoadError(f"corrupt or unreadable image: {reason}") from None
    budget = OcrBudget(options.file_seconds, len(frames))
    for number, frame in enumerate(frames, 1):
        options.reading(number, len(frames))
        text = tesseract(frame, options.page_seconds, options.language).strip()
        budget.check(number)
        if len(text) >= max(1, options.min_chars):
            yield Section(text, None, number if len(frames) > 1 else None, ocr=True)


def pdf_sections(path: Path, options: OcrOptions) -> Iterator[Section]:
    """Text per page, with the physical 1-based page number: the text layer, or for a page that draws an image and
    has fewer than `min_chars` characters of text (a scan), what OCR reads on it."""
    title, pages = read_pdf(path)
    scans = [p.number for p in pages if options.enabled and p.has_images and len(p.text) < options.min_chars]
    budget = OcrBudget(options.file_seconds, len(scans))
    for page in pages:
        text, ocr = page.text, False
        if page.number in scans:
            done = scans.index(page.number) + 1
            options.reading(done, len(scans))
            text, ocr = pdf_page_text(path, page.number - 1, options) or page.text, True
            budget.check(done)
        if text:
            yield Section(text, title, page.number, ocr=ocr and text != page.text)


def pdf_page_text(path: Path, index: int, options: OcrOptions) -> str:
    """Page `index` (0-based) of the PDF rendered and read by OCR."""
    import pypdfium2 as pdfium

    with _PDFIUM:
        document = pdfium.PdfDocument(str(path))
        try:
            page = document[index]
            image = page.render(scale=options.dpi / 72).to_pil()
            page.close()
        finally:
            document.close()
    return tesseract(image, options.page_seconds, options.language).strip()
