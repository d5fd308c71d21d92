"""Token counting with tiktoken (offline: the encodings ship with llama-index-core)."""

from __future__ import annotations

from functools import lru_cache

import tiktoken

DEFAULT_ENCODING = "cl100k_base"


@lru_cache(maxsize=4)
def encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def count_tokens(texts: list[str], name: str = DEFAULT_ENCODING) -> list[int]:
    # Not encode_ordinary_batch: its thread pool costs more than the encoding for short texts.
    encode = encoding(name).encode_ordinary
    return [len(encode(text)) for text in texts]


def count(text: str, name: str = DEFAULT_ENCODING) -> int:
    return len(encoding(name).encode_ordinary(text))


def truncate(text: str, max_tokens: int, name: str = DEFAULT_ENCODING) -> str:
    ids = encoding(name).encode_ordinary(text)
    return text if len(ids) <= max_tokens else encoding(name).decode(ids[:max_tokens])
