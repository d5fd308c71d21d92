"""The one settings object: defaults, then the TOML file, then the environment, then CLI flags."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rag.config import Settings, load_settings
from tests.conftest import RAG_BIN, cli_env


def test_config_file_is_read_without_leaking_into_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "rag.toml"
    config.write_text('collection = "docs"\ntop_k = 12\n')
    settings = load_settings(config, top_n=3)
    assert (settings.collection, settings.top_k, settings.top_n) == ("docs", 12, 3)
    assert "RAG_CONFIG" not in os.environ
    assert load_settings().collection == "default"  # the next load does not see the last one's file


def test_environment_beats_the_file_and_flags_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "rag.toml"
    config.write_text('collection = "docs"\ntop_k = 12\n')
    monkeypatch.setenv("RAG_TOP_K", "7")
    settings = load_settings(config, collection="cli")
    assert (settings.collection, settings.top_k) == ("cli", 7)


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["ask", "--top-k", "-5", "q"],
            {},
            "argument --top-k: -5 is out of range: it must be from 1 to 1000",
        ),
        (["ask", "--top-n", "0", "q"], {}, "argument --top-n: 0 is out of range: it must be from 1 to 100"),
        (["ask", "--top-k", "many", "q"], {}, "argument --top-k: 'many' is not a whole number"),
        (["train-reranker", "--minutes", "0"], {}, "argument --minutes: 0 must be above 0"),
        (["ui", "--port", "70000"], {}, "argument --port: 70000 is out of range"),
        (
            ["ask", "q"],
            {"RAG_TOP_K": "0"},
            "bad setting: RAG_TOP_K='0': input should be greater than or equal to 1",
        ),
        # these were tracebacks after the models loaded, a collection folder left behind, or silently accepted
        (
            ["ingest", "."],
            {"RAG_CHUNK_TOKENS": "0"},
            "RAG_CHUNK_TOKENS='0': input should be greater than or equal",
        ),
        (
            ["ingest", "."],
            {"RAG_CHUNK_OVERLAP": "180"},
            "RAG_CHUNK_OVERLAP=180 must be less than RAG_CHUNK_TOKENS=180",
        ),
        (["ingest", "."], {"RAG_EMBED_BATCH_SIZE": "0"}, "RAG_EMBED_BATCH_SIZE='0': input should be greater"),
        (
            ["ask", "q"],
            {"RAG_RELEVANCE_THRESHOLD": "-0.5"},
            "RAG_RELEVANCE_THRESHOLD='-0.5': input should be greater",
        ),
    ],
)
def test_bad_numbers_are_one_line_errors_at_the_edge(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run([RAG_BIN, *args], env=cli_env(tmp_path) | env, capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "collections").exists()


def test_a_settings_file_that_is_not_toml_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    """It was a traceback, exit 1."""
    config = tmp_path / "rag.toml"
    config.write_text('collection = "docs"\ntop_k 12\n')
    result = subprocess.run(
        [RAG_BIN, "docs", "--config", str(config)], env=cli_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert f"bad settings file {config}:" in result.stderr and "line 2" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_every_setting_is_described_and_in_the_readme() -> None:
    from rag.settings_table import BEGIN, END, group_of, table

    undescribed = [n for n, f in Settings.model_fields.items() if not f.description or not group_of(f)]
    assert not undescribed, f"settings without a description or group: {undescribed}"
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    copy = readme[readme.index(BEGIN) : readme.index(END) + len(END)]
    assert copy == table(), "README's settings table is stale: paste `python -m rag.settings_table` into it"
