"""OCR engines side by side on pages rendered from known text: character error rate and seconds per page.

    python -m benchmarks.ocr_bench [--engines tesseract,rapidocr]

Each page is a paragraph of English (a docs-like mix of words, numbers and punctuation) drawn with one of the
DejaVu fonts this machine has, at several sizes, then degraded as scans are: a 3-degree skew, a 100-dpi scan, JPEG
noise. The CER is the edit distance between the engine's text and the drawn text (whitespace runs collapsed to
one space) over the drawn text's length. rapidocr is measured when `rapidocr_onnxruntime` is importable (it is not a
dependency: `uv pip install --python .venv/bin/python --no-deps rapidocr-onnxruntime==1.4.4` and then
`opencv-python-headless pyclipper shapely`; its own dependency, the GUI build of OpenCV, needs libGL).
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from PIL import Image, ImageDraw, ImageFont

FONTS = {
    "sans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "serif": "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "mono": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
}
LINES = [
    "Invoice 4711 was paid on 12 March 2026 by bank transfer.",
    "The pump delivers 35 litres per minute at 2.5 bar; see section 7.",
    "Replace the filter every 300 hours, or sooner in dusty sites.",
    "Contact: support@example.org, phone +44 20 7946 0958.",
    "Warranty claims need the serial number (e.g. SN-88-1042-B).",
    "Do not store the unit below -10 degrees Celsius.",
]


def page(font: str, size: int, width_px: int = 1700) -> Image.Image:
    """A white page (200 dpi, A4 width) with the lines drawn in black."""
    face = ImageFont.truetype(FONTS[font], size)
    height = 200 + len(LINES) * int(size * 1.8)
    image = Image.new("L", (width_px, height), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(LINES):
        draw.text((100, 100 + i * int(size * 1.8)), line, font=face, fill=0)
    return image


def skewed(image: Image.Image) -> Image.Image:
    return image.rotate(3, expand=True, fillcolor=255)


def low_res(image: Image.Image) -> Image.Image:
    """Scanned at 100 dpi instead of 200."""
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)


def jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=30)
    return Image.open(io.BytesIO(buffer.getvalue()))


def cases() -> list[tuple[str, Image.Image]]:
    out = [(f"{font} {size}px", page(font, size)) for font in FONTS for size in (24, 36)]
    base = page("sans", 32)
    out += [("sans 32px, skewed 3 degrees", skewed(base)), ("sans 32px, 100 dpi", low_res(base))]
    out += [("serif 32px, JPEG quality 30", jpeg(page("serif", 32)))]
    return out


def cer(found: str, truth: str) -> float:
    a, b = " ".join(found.split()), " ".join(truth.split())
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] / max(1, len(b))


def engines() -> dict[str, Callable[[Image.Image], str]]:
    from ingest import ocr

    found: dict[str, Callable[[Image.Image], str]] = {"tesseract": lambda image: ocr.tesseract(image, 60)}
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return found
    engine = RapidOCR(intra_op_num_threads=2, inter_op_num_threads=1)

    def rapid(image: Image.Image) -> str:
        result, _ = engine(image.convert("RGB"))
        boxes = sorted(
            result or [], key=lambda r: (round(r[0][0][1] / 20), r[0][0][0])
        )  # rows, then left to right
        return " ".join(text for _, text, _ in boxes)

    found["rapidocr"] = rapid
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engines", default="tesseract,rapidocr")
    args = parser.parse_args()
    truth = " ".join(LINES)
    chosen = {name: run for name, run in engines().items() if name in args.engines.split(",")}
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}")
    print(f"{'page':<32}" + "".join(f"{name + ' CER':>16}{'s/page':>9}" for name in chosen))
    totals: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
    for label, image in cases():
        row = f"{label:<32}"
        for name, run in chosen.items():
            run(image)  # warm-up: model loading is not per page
            started = time.perf_counter()
            text = run(image)
            seconds = time.perf_counter() - started
            totals[name].append((cer(text, truth), seconds))
            row += f"{totals[name][-1][0]:>16.3f}{seconds:>9.2f}"
        print(row, flush=True)
    row = f"{'mean':<32}"
    for name in chosen:
        row += f"{statistics.mean(c for c, _ in totals[name]):>16.3f}"
        row += f"{statistics.mean(s for _, s in totals[name]):>9.2f}"
    print(row)


if __name__ == "__main__":
    main()
