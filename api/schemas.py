"""Request bodies in OpenAI's shapes, plus the `rag` extras a caller may send (plain clients never do)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.filters import FilterRequest


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The text of the message; content parts other than text (images, audio) carry none here."""
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class FilterOptions(BaseModel):
    """Ask within part of the collection: Qdrant filters the search itself (rag.filters)."""

    model_config = ConfigDict(extra="forbid")

    documents: list[str] = Field(
        default_factory=list, description="source paths (as /v1/documents lists them) or ids"
    )
    types: list[str] = Field(default_factory=list, description="file types: pdf, md, html...")
    path: str | None = Field(
        default=None, description="a folder or file prefix, relative to the ingested folder"
    )
    ingested_since: str | None = Field(
        default=None, description="YYYY-MM-DD (UTC) or an ISO 8601 time, inclusive"
    )
    ingested_until: str | None = Field(
        default=None, description="YYYY-MM-DD (UTC) or an ISO 8601 time, inclusive"
    )

    def request(self) -> FilterRequest:
        return FilterRequest(self.documents, self.types, self.path, self.ingested_since, self.ingested_until)


class RagOptions(BaseModel):
    """What the chat pipeline takes besides the question, as `extra_body={"rag": {...}}` in the openai client."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(default=None, ge=1, le=1000)
    top_n: int | None = Field(default=None, ge=1, le=100)
    rerank: bool = True
    mode: Literal["evidence", "generate", "both"] | None = None
    filter: FilterOptions | None = None

    def pipeline_options(self) -> dict[str, Any]:
        """As ChatPipeline.ask and .stream take them."""
        return {"top_k": self.top_k, "top_n": self.top_n, "rerank": self.rerank, "mode": self.mode}


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # temperature, max_tokens, user...: the pipeline sets its own

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    rag: RagOptions = Field(default_factory=RagOptions)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str] = Field(min_length=1)
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
