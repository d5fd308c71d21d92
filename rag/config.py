"""The one typed settings object: environment variables, then an optional TOML file, then defaults."""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.errors import RagError

PACKAGED_EMBEDDER = "packaged:all-MiniLM-L6-v2"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rag"


# The --config file of this load_settings() call; RAG_CONFIG when none was given.
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("config_file", default=None)


def _config_file() -> Path | None:
    path = _CONFIG_FILE.get() or os.environ.get("RAG_CONFIG")
    return Path(path) if path else None


class Settings(BaseSettings):
    """Every knob of the app. Env vars are `RAG_<NAME>`, except the usual Qdrant/OpenAI names."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default_factory=_default_data_dir)
    collection: str = "default"

    qdrant_url: str | None = Field(default=None, validation_alias=AliasChoices("QDRANT_URL", "qdrant_url"))
    qdrant_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_API_KEY", "qdrant_api_key")
    )

    embed_model: str = PACKAGED_EMBEDDER
    embed_batch_size: int = Field(default=64, ge=1, le=4096)
    embed_threads: int = Field(default=0, ge=0)  # 0: let torch decide
    embed_precision: str = "auto"  # auto (bf16 where the CPU has native bf16), float32 or bfloat16
    # an OpenAI-compatible /v1 endpoint that embeds instead of the local model (RAG_EMBED_MODEL names its model)
    embed_url: str | None = None
    embed_api_key: SecretStr | None = None
    embed_max_tokens: int = Field(default=256, ge=16)  # with embed_url: a chunk's limit, in tiktoken tokens

    chunk_tokens: int = Field(default=180, ge=16, le=8192)  # tiktoken (cl100k) tokens per chunk
    chunk_overlap: int = Field(default=30, ge=0)  # less than chunk_tokens (checked below)
    tokenizer_encoding: str = "cl100k_base"  # the tiktoken encoding chunk sizes are counted in
    max_file_mb: float = Field(default=64.0, gt=0)
    ingest_exclude: list[str] = Field(
        default_factory=list
    )  # glob patterns on paths relative to the root  # non-text formats are parsed whole; larger ones are refused

    # Chat pipeline (later issues read these).
    top_k: int = Field(default=30, ge=1, le=1000)
    top_n: int = Field(default=5, ge=1, le=100)
    # the BM25 list's weight in the hybrid fusion, the dense list's being 1: 0.25 ranked best on both dev sets, the
    # Debian FAQ's questions (MRR@10 0.986 against 0.970 at 1) and typed queries on the Python docs (0.859 against
    # 0.826); 0 is dense alone (benchmarks/fusion_study.py, README "Hybrid search")
    bm25_weight: float = Field(default=0.25, ge=0, le=10)
    rerank_model: str | None = None
    rerank_max_length: int = Field(default=256, ge=16, le=8192)
    rerank_backend: Literal["torch", "torch-bf16", "onnx", "onnx-int8"] = (
        "torch"  # see benchmarks/rerank_bench.py
    )
    rerank_batch_size: int = Field(default=32, ge=1, le=4096)
    # the first this many of the top_k fused candidates are reranked: 20 kept MRR@10 on the Python FAQ (0.9915 at
    # 30, 20 and 15) and brought its p95 from 396 to 271 ms here (see README); raise it on collections whose first
    # stage finds the answer lower down
    rerank_candidates: int = Field(default=20, ge=1, le=1000)
    rerank_retrain_share: float = Field(
        default=0.2, ge=0
    )  # changed documents past which retraining is offered
    relevance_threshold: float = Field(
        default=0.45, ge=0, le=1
    )  # dense cosine below which a chunk is not an answer (see README)
    rerank_threshold: float = Field(default=0.2, ge=0, le=1)  # the cross-encoder's 0-1 score, when it runs
    # Off: when no reranked passage reaches the cross-encoder's threshold, those the bi-encoder finds close enough
    # (relevance_threshold) answer. A reranker calibrated on mined questions scored reference-page answers so low
    # that alone it refused 88% of answerable questions there (README, "Questions that need reference pages").
    rerank_alone_refuses: bool = False
    history_tokens: int = Field(
        default=600, ge=0
    )  # the most recent turns of a conversation, up to this many tokens, are read
    # a follow-up is searched with the LLM's rewrite of it (when rag.conversation.valid_rewrite passes) instead of
    # its topic's words; off: the embedded model's rewrites were garbled (README, "Conversations")
    history_rewrite: bool = False
    # evidence: the passages' own answering sentences, each cited; generate: the LLM's answer, each sentence checked
    # against its passages; both: evidence, then the LLM's summary; auto: generate when OPENAI_BASE_URL names the
    # user's own model, evidence with the embedded one (see README, "Answer modes")
    answer_mode: Literal["auto", "evidence", "generate", "both"] = "auto"
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    llm_model: str | None = None
    llm_context_tokens: int = Field(default=4096, ge=512)
    llm_answer_tokens: int = Field(default=384, ge=16)
    # the longest wait for the answer's first piece, or between two pieces (a queue at the embedded server
    # counts); then one error, no retry. llm_timeout_s caps the whole answer.
    llm_first_token_timeout_s: float = Field(default=60.0, gt=0)
    llm_timeout_s: float = Field(default=180.0, gt=0)
    llm_gguf: Path | None = None
    # small: few-shot examples, the first small_prompt_passages passages only, a stop where the model echoes the
    # prompt; auto: small for the embedded model, standard for any endpoint (see README, "Answer modes")
    llm_prompt: Literal["auto", "small", "standard"] = "auto"
    small_prompt_passages: int = Field(default=3, ge=1, le=100)
    # the embedded llama.cpp server decodes under rag.grammar's grammar: every sentence ends with a valid [n]
    llm_cite_grammar: bool = True

    # a zip upload is refused (nothing kept) past either; upload_max_mb also caps one uploaded file
    upload_max_mb: float = Field(default=1024.0, gt=0)
    upload_max_files: int = Field(default=10_000, ge=1)

    # `rag serve`: a bearer key every API route requires (unset: none; the UI keeps its own login)
    api_key: SecretStr | None = None

    # addresses of reverse proxies whose X-Forwarded-For is believed (uvicorn's forwarded_allow_ips, e.g.
    # "127.0.0.1"); unset: none is, so the login throttle counts the real peer and a forged header cannot reset it
    trusted_proxies: str | None = None

    ui_user: str | None = None
    ui_password: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"the settings file {path} (--config or RAG_CONFIG) is not a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _overlap_within_chunk(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"RAG_CHUNK_OVERLAP={self.chunk_overlap} must be less than RAG_CHUNK_TOKENS={self.chunk_tokens}"
            )
        return self

    @model_validator(mode="after")
    def _resolve_answer_mode(self) -> Settings:
        """auto becomes the mode it stands for, so every reader sees evidence, generate or both."""
        if self.answer_mode == "auto":
            self.answer_mode = "generate" if self.openai_base_url else "evidence"
        return self

    @property
    def upload_max_bytes(self) -> int:
        return int(self.upload_max_mb * 2**20)

    def collection_dir(self, collection: str | None = None) -> Path:
        return self.data_dir / "collections" / (collection or self.collection)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from env and the TOML file (config, else RAG_CONFIG), with CLI flags (non-None values) on top."""
    token = _CONFIG_FILE.set(config)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise RagError(_settings_error(exc)) from None
    except (
        tomllib.TOMLDecodeError
    ) as exc:  # "Expected '=' after a key in a key/value pair (at line 3, column 6)"
        raise RagError(f"bad settings file {_config_file()}: {exc}") from None
    finally:
        _CONFIG_FILE.reset(token)


def _settings_error(exc: ValidationError) -> str:
    """One line naming each bad setting as a user sets it (RAG_TOP_K), what it must be, and what it got."""
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"])
        if not name:  # a check across settings: its message names them
            problems.append(error["msg"].removeprefix("Value error, "))
            continue
        problems.append(f"RAG_{name.upper()}={error.get('input')!r}: {error['msg'].lower()}")
    return "bad setting: " + "; ".join(problems)
