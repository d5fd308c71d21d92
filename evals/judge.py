"""Optional LLM judge (RAGAS-style), on its own OpenAI-compatible endpoint, separate from the answering LLM.

faithfulness: the judge lists the answer's factual statements and marks each as supported by the context or not;
the score is supported / listed. answer_relevance: the judge rates how directly the answer addresses the question,
0 to 10, scaled to 0-1.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rag.errors import RagError
from rag.llm import LLMClient

FAITHFULNESS = (
    "List the factual statements made in the ANSWER. For each, decide if the CONTEXT supports it. "
    'Reply with JSON only: {"statements": <number of statements>, "supported": <number supported>}.'
)
RELEVANCE = (
    "Rate from 0 to 10 how directly and completely the ANSWER addresses the QUESTION, ignoring whether it is true. "
    'Reply with JSON only: {"score": <0-10>}.'
)
_JSON = re.compile(r"\{.*?\}", re.DOTALL)


class Judge:
    def __init__(self, base_url: str, model: str | None, api_key: str | None, timeout: float = 120.0) -> None:
        self.client = LLMClient(base_url, api_key, model, timeout)

    def _ask(self, instruction: str, content: str) -> dict[str, Any] | None:
        messages = [{"role": "system", "content": instruction}, {"role": "user", "content": content}]
        try:
            reply = self.client.complete(messages, max_tokens=200)
        except RagError:
            raise
        match = _JSON.search(reply)
        try:
            return dict(json.loads(match.group(0))) if match else None
        except json.JSONDecodeError:
            return None

    def score(self, question: str, answer: str, context: list[str]) -> dict[str, float | None]:
        joined = "\n\n".join(context)
        faith = self._ask(FAITHFULNESS, f"CONTEXT:\n{joined}\n\nANSWER:\n{answer}")
        relevance = self._ask(RELEVANCE, f"QUESTION:\n{question}\n\nANSWER:\n{answer}")
        return {"faithfulness": _ratio(faith), "answer_relevance": _scaled(relevance)}


def _ratio(data: dict[str, Any] | None) -> float | None:
    try:
        total, supported = float(data["statements"]), float(data["supported"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None
    return min(1.0, supported / total) if total > 0 else None


def _scaled(data: dict[str, Any] | None) -> float | None:
    try:
        return max(0.0, min(1.0, float(data["score"]) / 10))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None
