"""Tables longer than a chunk: split between rows, each chunk repeating the header row, in every format that has
tables; and a question about row 50 of a 200-row table answered from a passage that names its columns."""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest

from ingest.chunking import Chunker
from ingest.formats import loader_for
from rag.tables import pipe_row
from rag.tokens import count_tokens
from tests.conftest import RAG_BIN, cli_env
from tests.formats_factory import write_xlsx

HEADER = ["ticket", "opened", "due", "closed"]
START = date(2026, 1, 1)


def _rows(count: int = 200) -> list[list[str]]:
    """Three dates a row, so only the column names tell which one is the due date."""
    rows = []
    for i in range(1, count + 1):
        opened = START + timedelta(days=i)
        rows.append(
            [
                f"T-{1000 + i}",
                str(opened),
                str(opened + timedelta(days=30 + i % 7)),
                str(opened + timedelta(days=45)),
            ]
        )
    return rows


def _write_csv(path: Path) -> None:
    path.write_text("\n".join(",".join(row) for row in [HEADER, *_rows()]) + "\n")


def _write_html(path: Path) -> None:
    head = "".join(f"<th>{cell}</th>" for cell in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in _rows())
    path.write_text(
        "<html><body><h1>Tickets</h1><p>Every ticket of the quarter.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p>Ends here.</p></body></html>"
    )


def _write_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Tickets", level=1)
    rows = [HEADER, *_rows()]
    table = document.add_table(rows=len(rows), cols=len(HEADER))
    for row, values in zip(table.rows, rows, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.save(str(path))


def _write_xlsx(path: Path) -> None:
    write_xlsx(path, {"Tickets": [list(HEADER), *_rows()]})


@pytest.mark.parametrize(
    "name, write",
    [("t.csv", _write_csv), ("t.html", _write_html), ("t.docx", _write_docx), ("t.xlsx", _write_xlsx)],
)
def test_a_long_table_repeats_its_header_in_every_chunk_and_keeps_rows_whole(
    tmp_path: Path, name: str, write: object
) -> None:
    path = tmp_path / name
    write(path)  # type: ignore[operator]
    loader = loader_for(path)
    assert loader is not None
    chunks = list(Chunker(count_tokens, 180, 30).chunk_sections(loader(path)))
    table_chunks = [c for c in chunks if "T-1" in c.text]
    assert len(table_chunks) >= 10, [c.text[:80] for c in chunks]
    header = "| ticket | opened | due | closed |"
    found: set[str] = set()
    for chunk in table_chunks:
        lines = chunk.text.splitlines()
        assert header in lines, chunk.text[:200]
        rows = [line for line in lines if line.startswith("| T-")]
        assert all(line.endswith("|") and line.count("|") == 5 for line in rows), chunk.text  # whole rows
        found.update(line.split(" | ")[0][2:] for line in rows)
        assert count_tokens([chunk.text])[0] <= 180
    assert found == {f"T-{1000 + i}" for i in range(1, 201)}  # nothing lost between chunks


def test_a_question_about_row_50_of_a_200_row_table_is_answered_with_its_column_names(tmp_path: Path) -> None:
    """The due date is one of three dates in the row: the passage that answers must carry the header row."""
    folder = tmp_path / "docs"
    folder.mkdir()
    _write_csv(folder / "tickets.csv")
    env = cli_env(tmp_path / "data")
    ingested = subprocess.run([RAG_BIN, "ingest", str(folder)], env=env, capture_output=True, text=True)
    assert ingested.returncode == 0, ingested.stderr[-2000:]
    asked = subprocess.run(
        [RAG_BIN, "ask", "--json", "When is ticket T-1050 due?"], env=env, capture_output=True, text=True
    )
    assert asked.returncode == 0, asked.stderr[-2000:]
    result = json.loads(asked.stdout)
    assert not result["refused"], result
    opened, due, closed = _rows()[49][1:]
    cited = [s for s in result["sources"] if "| T-1050 |" in s["text"]]
    assert cited, [s["text"][:120] for s in result["sources"]]
    assert "| ticket | opened | due | closed |" in cited[0]["text"]
    assert f"| T-1050 | {opened} | {due} | {closed} |" in cited[0]["text"]
    assert "T-1050" in result["answer"] and due in result["answer"], result["answer"]


def test_a_bar_inside_a_cell_does_not_stop_the_header_repeating() -> None:
    """The loaders escape a cell's own bar (`a\\|b`); the chunker counts columns as the evidence answer does, by
    the unescaped bars, so such a row still belongs to its table."""
    rows = [pipe_row(HEADER), pipe_row(["---"] * 4)]
    rows += [pipe_row([*row[:3], "x|y" if i == 5 else row[3]]) for i, row in enumerate(_rows())]
    chunks = list(Chunker(count_tokens, 180, 30).chunk_text("\n".join(rows), None, None))
    assert len(chunks) >= 10 and all(c.text.startswith("| ticket | opened | due | closed |") for c in chunks)
