"""Small real documents of every supported format, made on the spot."""

from __future__ import annotations

from pathlib import Path

HTML = """<!DOCTYPE html><html><head><title>Llama care</title><style>.x{color:red}</style>
<script>var secret = "SCRIPTTEXT";</script></head><body>
<nav><a href="/">NAVTEXT home</a></nav>
<div class="sphinxsidebar">SIDEBARTEXT</div>
<h1>Llama care<a class="headerlink" href="#">¶</a></h1>
<p>Llamas need <b>fresh hay</b> every day.</p>
<h2>Shearing</h2><p>Shear llamas in spring, once a year.</p>
<footer>FOOTERTEXT</footer></body></html>"""


def write_pdf(path: Path, pages: list[str]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    for text in pages:
        y = 800
        for line in text.split("\n"):
            pdf.drawString(72, y, line)
            y -= 16
        pdf.showPage()
    pdf.save()


def write_docx(path: Path, heading: str, paragraphs: list[str]) -> None:
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "cell one"
    table.rows[0].cells[1].text = "cell two"
    document.save(str(path))


def make_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "guide.md").write_text(
        "# Alpaca guide\n\nAlpacas are smaller than llamas.\n\n## Feeding\n\nAlpacas eat grass and hay.\n"
    )
    (root / "notes.txt").write_text("The capybara is the largest living rodent.\n")
    (root / "manual.rst").write_text("Vicuna manual\n=============\n\nVicunas live in the high Andes.\n")
    (root / "care.html").write_text(HTML)
    write_pdf(
        root / "report.pdf", ["Page one talks about guanacos.", "Page two talks about the Andes condor."]
    )
    write_docx(root / "memo.docx", "Memo on ostriches", ["Ostriches cannot fly.", "They run fast."])
    sub = root / "sub" / "deeper"
    sub.mkdir(parents=True)
    (sub / "nested.md").write_text("# Nested\n\nA document about wombats in a nested folder.\n")
    return root
