"""Embeddings from a server: any OpenAI-compatible /v1/embeddings (TEI, vLLM, Ollama, Infinity, or `rag serve`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from urllib.parse import urlparse

import numpy as np
import openai

from rag.config import PACKAGED_EMBEDDER, Settings
from rag.errors import RagError
from rag.text import first_line
from rag.tokens import count

RETRIES = 3  # the openai client's own, with backoff: embedding a batch again changes nothing


class RemoteEmbedder:
    """Batched requests through the `openai` client; vectors normalized, as the local embedder's are.

    The server's tokenizer is not known here, so a text's size is counted in tiktoken tokens against
    RAG_EMBED_MAX_TOKENS (chunks of 180 such tokens fit any common embedder's window)."""

    def __init__(self, settings: Settings) -> None:
        if not settings.embed_url:
            raise RagError("RAG_EMBED_URL is not set")
        key = settings.embed_api_key.get_secret_value() if settings.embed_api_key else "not-needed"
        self.model = remote_model_name(settings)
        self.name = f"remote:{self.model}"
        self.host = urlparse(settings.embed_url).netloc or settings.embed_url
        self.batch_size = settings.embed_batch_size
        self.max_tokens = settings.embed_max_tokens
        self.precision = "the server's"
        self._encoding = settings.tokenizer_encoding
        self._client = openai.OpenAI(
            base_url=settings.embed_url,
            api_key=key,
            max_retries=RETRIES,
            timeout=settings.llm_first_token_timeout_s,
        )

    @cached_property
    def dimension(self) -> int:
        return int(self._request(["dimension probe"]).shape[1])

    def count_tokens(self, text: str) -> int:
        return count(text, self._encoding)

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            parts.append(self._request(batch))
            if on_batch is not None:
                on_batch(len(batch))
        return np.concatenate(parts)

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embed([text])[0]]

    def _request(self, texts: list[str]) -> np.ndarray:
        try:
            response = self._client.embeddings.create(model=self.model, input=texts)
        except openai.APIStatusError as exc:
            raise RagError(
                f"the embedding server at {self.host} answered HTTP {exc.status_code}: {first_line(exc.message)}"
            ) from None
        except openai.OpenAIError as exc:
            raise RagError(
                f"cannot get embeddings from {self.host} (RAG_EMBED_URL): {first_line(str(exc))}"
            ) from None
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise RagError(
                f"the embedding server at {self.host} returned {len(rows)} vectors for {len(texts)} texts"
            )
        vectors = np.asarray([row.embedding for row in rows], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


def remote_model_name(settings: Settings) -> str:
    """RAG_EMBED_MODEL as the server knows it (the packaged default is all-MiniLM-L6-v2 by its hub name)."""
    if settings.embed_model == PACKAGED_EMBEDDER:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return settings.embed_model
