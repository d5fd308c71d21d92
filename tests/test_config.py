"""The one settings object: defaults, then the TOML file, then the environment, then CLI flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.config import load_settings


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
