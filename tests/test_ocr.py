"""Scanned PDF pages and images, read by Tesseract: answered with the right page, marked as OCR'd; OCR off; a
page over its time budget; broken images."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from rag.answer import open_chat
from rag.collection import Collection
from rag.config import Settings
from rag.embedder import LocalEmbedder
from tests.conftest import RAG_BIN, cli_env

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"


def scan(lines: list[str], skew: float = 0.0) -> Image.Image:
    """An A4 page at 150 dpi with the lines printed on it, as a scanner would give it (optionally askew)."""
    image = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 30)
    for i, line in enumerate(lines):
        draw.text((120, 150 + i * 55), line, font=font, fill=0)
    return image.rotate(skew, fillcolor=255) if skew else image


def write_manual(path: Path) -> None:
    """Page 1 has a text layer; pages 2 and 3 are scans (an image and no text)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    pdf.drawString(72, 800, "Maintenance manual for the Orca pump. Chapter one covers installation.")
    pdf.showPage()
    for lines in (
        ["The Orca pump filter must be replaced every 300 hours.", "Use only filters of type F-220."],
        ["Warranty: two years from the date of purchase.", "Keep the receipt with the pump."],
    ):
        pdf.drawImage(ImageReader(scan(lines)), 0, 0, width=A4[0], height=A4[1])
        pdf.showPage()
    pdf.save()


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    write_manual(root / "manual.pdf")
    scan(["The heron nests in tall reeds beside the lake.", "Its eggs hatch after twenty-five days."]).save(
        root / "heron.png"
    )
    scan(["Otters hold hands while they sleep so they do not drift apart."], skew=3).save(root / "otter.jpg")
    return root


def _rag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAG_BIN, *args], env=env, capture_output=True, text=True, timeout=300)


def test_scanned_pages_and_images_are_read_and_cited_with_their_page(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    """Ingested by the CLI as a user would; asked in-process (the same pipeline as `rag ask`, without a process start
    per question) and once by the CLI, whose sources say where and how each passage was read."""
    env = cli_env(tmp_path / "data")
    ingested = _rag(env, "ingest", str(_folder(tmp_path / "docs")))
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr[-2000:]
    assert "added 3" in ingested.stdout and "failed 0" in ingested.stdout
    # signs of life: OCR takes seconds a page, so a log says when a file's pages start being read
    assert (
        "reading manual.pdf by OCR (2 pages)" in ingested.stderr
        and "reading heron.png by OCR (1 page)" in (ingested.stderr)
    )

    with Collection(Settings(data_dir=tmp_path / "data")) as collection:
        chat = open_chat(collection, with_llm=False)
        filters = chat.ask("How often must the pump filter be replaced?")
        top = filters.sources[0]
        assert (top.source, top.page, top.ocr) == ("manual.pdf", 2, True), filters.sources
        assert "300 hours" in filters.answer
        installation = chat.ask("Which chapter covers installation of the Orca pump?").sources[0]
        assert (installation.source, installation.page, installation.ocr) == ("manual.pdf", 1, False)
        heron = chat.ask("Where does the heron nest?")
        assert heron.sources[0].source == "heron.png" and "tall reeds" in heron.answer
        otter = chat.ask("Why do otters hold hands?")
        assert otter.sources[0].source == "otter.jpg" and "drift apart" in otter.answer  # scanned askew

    listed = {d["source"]: d for d in json.loads(_rag(env, "docs", "--json").stdout)}
    assert (listed["manual.pdf"]["pages"], listed["manual.pdf"]["ocr_pages"]) == (3, 2)
    assert listed["heron.png"]["ocr_pages"] == 1 and listed["heron.png"]["file_type"] == "png"
    shown = _rag(env, "ask", "How often must the pump filter be replaced?").stdout
    assert "manual.pdf, page 2 (OCR)" in shown


def test_with_ocr_off_images_are_skipped_and_scanned_pages_unread(tmp_path: Path) -> None:
    env = {**cli_env(tmp_path / "data"), "RAG_OCR": "false"}
    ingested = _rag(env, "ingest", str(_folder(tmp_path / "docs")))
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr[-2000:]
    assert "an image, and OCR is off (RAG_OCR=false)" in ingested.stdout + ingested.stderr
    listed = {d["source"]: d for d in json.loads(_rag(env, "docs", "--json").stdout)}
    assert set(listed) == {"manual.pdf"} and listed["manual.pdf"]["pages"] == 1


def test_a_page_over_the_ocr_time_budget_and_broken_images_are_one_line_each(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    scan(["A page that takes too long to read."]).save(docs / "slow.png")
    (docs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 50)
    (docs / "empty.png").write_bytes(b"")
    (docs / "fine.md").write_text("# Kept\n\nThe rest of the folder is still ingested.\n")
    env = {**cli_env(tmp_path / "data"), "RAG_OCR_PAGE_SECONDS": "0.01"}
    ingested = _rag(env, "ingest", str(docs))
    out = ingested.stdout + ingested.stderr
    assert ingested.returncode == 1, out
    assert "slow.png: OCR took over 0.01 s on a page (RAG_OCR_PAGE_SECONDS)" in out
    assert "corrupt.png: corrupt or unreadable image" in out
    assert "empty.png" in out and "empty file" in out
    listed = {d["source"] for d in json.loads(_rag(env, "docs", "--json").stdout)}
    assert listed == {"fine.md"}


def test_without_tesseract_a_scan_is_one_line_that_says_what_to_install(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    scan(["A heron."]).save(docs / "heron.png")
    env = {**cli_env(tmp_path / "data"), "PATH": str(Path(RAG_BIN).parent)}  # no /usr/bin: no tesseract
    ingested = _rag(env, "ingest", str(docs))
    assert ingested.returncode == 1
    assert (
        "heron.png: this needs OCR and Tesseract is not installed: install Tesseract (apt-get install "
        "tesseract-ocr tesseract-ocr-eng) or set RAG_OCR=false"
    ) in ingested.stdout + ingested.stderr


def test_an_icon_is_not_a_document(tmp_path: Path) -> None:
    """A page's 'Next' button beside HTML pages (the Debian FAQ ships four) is skipped, not a one-word chunk."""
    docs = tmp_path / "docs"
    docs.mkdir()
    icon = Image.new("L", (120, 40), 255)
    ImageDraw.Draw(icon).text((10, 5), "Next", font=ImageFont.truetype(FONT, 24), fill=0)
    icon.save(docs / "next.png")
    ingested = _rag(cli_env(tmp_path / "data"), "ingest", str(docs))
    assert "skipped next.png: no extractable text" in ingested.stdout + ingested.stderr
