"""Office, e-book, notebook, data and mail formats: one small file of each, made here by the library that owns the
format, ingested and asked about; a broken file of each gets a one-line reason and exit 1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rag.answer import open_chat
from rag.collection import Collection
from rag.config import Settings
from tests.conftest import RAG_BIN, cli_env
from tests.formats_factory import write_eml, write_epub, write_ipynb, write_odt, write_pptx, write_xlsx

GOOD = {
    "deck.pptx": "pptx",
    "prices.xlsx": "xlsx",
    "food.csv": "csv",
    "guide.epub": "epub",
    "analysis.ipynb": "ipynb",
    "animals.json": "json",
    "sighting.eml": "eml",
    "memo.odt": "odt",
}


def _folder(root: Path) -> Path:
    root.mkdir()
    write_pptx(
        root / "deck.pptx",
        [("Alpacas", "Alpacas are shorn in spring."), ("Llamas", "Llamas guard sheep flocks.")],
    )
    write_xlsx(
        root / "prices.xlsx",
        {"Prices": [["animal", "price"], ["alpaca", 3000]], "Weights": [["animal", "kg"], ["tapir", 250]]},
    )
    (root / "food.csv").write_text("animal,food\nokapi,leaves and fruit\n")
    write_epub(
        root / "guide.epub",
        [("Deserts", "Fennec foxes have huge ears."), ("Rivers", "Platypuses hunt with electroreception.")],
    )
    write_ipynb(
        root / "analysis.ipynb",
        [("markdown", "# Census\n\nWe counted 41 capybaras at the lake."), ("code", "print(41)")],
    )
    (root / "animals.json").write_text(json.dumps({"animals": [{"name": "wombat", "poop": "cube-shaped"}]}))
    write_eml(
        root / "sighting.eml",
        "Quokka sighting",
        "",
        "<html><body><p>We saw quokkas on Rottnest Island.</p></body></html>",
    )
    write_odt(root / "memo.odt", "Ostrich memo", ["Ostriches lay the largest eggs of any living bird."])
    for name in GOOD:
        broken = root / f"broken-{name}"
        broken.write_bytes(b"PK\x03\x04 not really this format " + b"\x00" * 8)
    (root / "truncated.json").write_text('{"a": ')
    return root


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, subprocess.CompletedProcess[str]]:
    root = _folder(tmp_path_factory.mktemp("formats") / "docs")
    data = tmp_path_factory.mktemp("data")
    result = subprocess.run(
        [RAG_BIN, "ingest", str(root), "--no-progress"],
        env=cli_env(data) | {"RAG_COLLECTION": "formats"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Settings(data_dir=data, collection="formats"), result


def test_each_format_is_ingested_and_each_broken_file_fails_in_one_line(
    ingested: tuple[Settings, subprocess.CompletedProcess[str]],
) -> None:
    settings, result = ingested
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "added 8, updated 0, unchanged 0, deleted 0, skipped 0, failed 9"
    failed = sorted(line for line in result.stdout.splitlines() if line.startswith("  FAILED"))
    assert failed == [
        "  FAILED  broken-analysis.ipynb: corrupt or unreadable IPYNB: JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
        "  FAILED  broken-animals.json: binary content (NUL bytes), not text",
        "  FAILED  broken-deck.pptx: corrupt or unreadable PPTX: BadZipFile: File is not a zip file",
        "  FAILED  broken-food.csv: binary content (NUL bytes), not text",
        "  FAILED  broken-guide.epub: corrupt or unreadable EPUB: BadZipFile: File is not a zip file",
        "  FAILED  broken-memo.odt: corrupt or unreadable ODT: BadZipFile: File is not a zip file",
        "  FAILED  broken-prices.xlsx: corrupt or unreadable XLSX: BadZipFile: File is not a zip file",
        "  FAILED  broken-sighting.eml: corrupt or unreadable EML: no mail headers",
        "  FAILED  truncated.json: corrupt JSON: JSONDecodeError: Expecting value: line 1 column 7 (char 6)",
    ]
    with Collection(settings) as collection:
        docs = {d.source: d for d in collection.documents()}
    assert {name: docs[name].file_type for name in GOOD} == GOOD
    assert docs["deck.pptx"].pages == 2  # slides are pages


@pytest.mark.parametrize(
    ("question", "source", "fact", "title", "page"),
    [
        ("What do llamas guard?", "deck.pptx", "sheep flocks", "Llamas", 2),
        ("How much does a tapir weigh?", "prices.xlsx", "250", "Weights", None),
        ("What does the okapi eat?", "food.csv", "leaves and fruit", None, None),
        ("How do platypuses hunt?", "guide.epub", "electroreception", "Rivers", None),
        ("How many capybaras were counted?", "analysis.ipynb", "41 capybaras", "Census", None),
        ("What shape is wombat poop?", "animals.json", "cube-shaped", None, None),
        ("Where were the quokkas seen?", "sighting.eml", "Rottnest Island", "Quokka sighting", None),
        ("Which bird lays the largest eggs?", "memo.odt", "largest eggs", "Ostrich memo", None),
    ],
)
def test_each_format_answers_with_its_section_and_page(
    ingested: tuple[Settings, subprocess.CompletedProcess[str]],
    question: str,
    source: str,
    fact: str,
    title: str | None,
    page: int | None,
) -> None:
    settings, _ = ingested
    with Collection(settings) as collection:
        answer = open_chat(collection, with_llm=False).ask(question, mode="evidence")
    top = answer.context[0]
    assert (top.source, top.page) == (source, page) and fact in top.text
    assert top.title == title
