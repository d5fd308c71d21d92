"""/v1/chat/completions over the chat pipeline: the message list is the history, the last user message the question.

The answer's sources, refusal flag, reranker and timings travel in an extra `rag` field (on the response, and on
the stream's last chunk), so plain OpenAI clients work and ours can show the citations.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from api.errors import ApiError, error_body, from_rag_error
from api.schemas import ChatRequest, RagOptions
from rag.answer import Answer, ChatPipeline, Status, Token, Turn
from rag.errors import RagError
from rag.store import SearchFilter
from rag.tokens import count


def question_and_history(request: ChatRequest) -> tuple[str, list[Turn]]:
    """System messages are left out: the pipeline has its own rules, and a caller's cannot loosen them."""
    turns = [Turn(m.role, m.text()) for m in request.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise ApiError(
            400, "the last message must be the user's question", "invalid_request_error", None, "messages"
        )
    return turns[-1].content, turns[:-1]


class Completion:
    """One chat completion's identity and the OpenAI shapes around it."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def response(self, answer: Answer, history: list[Turn]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(answer, history),
            "rag": answer.as_json(),
        }

    def chunk(
        self, delta: dict[str, Any], finish: str | None = None, rag: dict[str, Any] | None = None
    ) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if rag is not None:
            body["rag"] = rag
        return f"data: {json.dumps(body)}\n\n"


def usage(answer: Answer, history: list[Turn]) -> dict[str, int]:
    """tiktoken counts of what was read (question, history, passages) and written: the pipeline's own prompt,
    whose exact size depends on the mode, is not exposed."""
    read = [answer.question, *(t.content for t in history), *(s.text for s in answer.context)]
    prompt = sum(count(text) for text in read if text)
    completion = count(answer.answer) if answer.answer else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def complete(
    pipeline: ChatPipeline, request: ChatRequest, model: str, flt: SearchFilter | None = None
) -> dict[str, Any]:
    question, history = question_and_history(request)
    try:
        answer = pipeline.ask(question, history, **request.rag.pipeline_options(), flt=flt)
    except RagError as exc:
        raise from_rag_error(exc) from None
    return Completion(model).response(answer, history)


def stream(
    pipeline: ChatPipeline, request: ChatRequest, model: str, flt: SearchFilter | None = None
) -> Iterator[str]:
    """The request checked now (a bad one is a 400, not a stream), then `_events`."""
    question, history = question_and_history(request)
    return _events(pipeline, question, history, (request.rag, flt), model)


def _events(
    pipeline: ChatPipeline,
    question: str,
    history: list[Turn],
    asked: tuple[RagOptions, SearchFilter | None],
    model: str,
) -> Iterator[str]:
    """Server-sent events: the role, each piece of the answer, what the pipeline is doing (an empty delta with
    `rag.status`), then the finish with the whole `rag` object and [DONE]. A failure after the stream began is
    an `error` event, which the openai client raises as an APIError."""
    completion = Completion(model)
    yield completion.chunk({"role": "assistant", "content": ""})
    try:
        options, flt = asked
        events = pipeline.stream(question, history, **options.pipeline_options(), flt=flt)
        for event in events:
            if isinstance(event, Token):
                yield completion.chunk({"content": event.text})
            elif isinstance(event, Status):
                yield completion.chunk({}, rag={"status": event.text})
            elif isinstance(event, Answer):
                yield completion.chunk({}, "stop", rag={**event.as_json(), "usage": usage(event, history)})
    except RagError as exc:
        error = from_rag_error(exc)
        yield f"data: {json.dumps(error_body(error.message, error.kind, error.code, error.param))}\n\n"
    yield "data: [DONE]\n\n"
