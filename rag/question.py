"""The checks a question passes before anything heavy loads: kept light (no model, no store), so `rag ask` and
the API refuse an empty or oversized question at once and the terminal's first status line is not delayed."""

from __future__ import annotations

from rag.config import Settings
from rag.errors import BadQuestion
from rag.tokens import count

MAX_QUESTION_SHARE = 0.25  # of the LLM's window: the passages need the rest


def check_question(question: str, settings: Settings) -> None:
    """A question that is empty, or would crowd every passage out of the model's window, is refused before any
    work: callers check it before the embedder loads (16 s here)."""
    if not question.strip():
        raise BadQuestion("the question is empty")
    limit = int(settings.llm_context_tokens * MAX_QUESTION_SHARE)
    tokens = count(question)
    if tokens > limit:
        raise BadQuestion(
            f"the question is {tokens:,} tokens long; at most {limit:,} fit beside the passages "
            f"(a quarter of RAG_LLM_CONTEXT_TOKENS={settings.llm_context_tokens}): shorten it"
        )
