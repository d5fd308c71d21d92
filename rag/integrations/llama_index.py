"""llama-index over a collection: our retrieval (hybrid + rerank) as a `BaseRetriever`, the app's LLM as a llama-index
LLM, and a query engine built from both.

    from rag.integrations.llama_index import open_retriever, query_engine
    with Collection(load_settings(collection="docs")) as collection:
        retriever = open_retriever(collection)
        nodes = retriever.retrieve("How do I ...?")      # NodeWithScore, metadata: source, page, title, scores
        print(query_engine(collection, retriever).query("How do I ...?"))
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms import CustomLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
from pydantic import PrivateAttr

from rag.collection import Collection
from rag.llm import LLMClient, open_llm
from rag.retrieval import Mode
from rag.search import Searcher
from rag.store import Hit


class CollectionRetriever(BaseRetriever):
    """The app's retrieval as llama-index nodes: one `TextNode` per chunk (id = the chunk's point id, source
    relationship = its document), scored by relevance (the cross-encoder's when it ran, else the dense cosine) in
    the app's order. per_document keeps each document's best chunk only, so ranks are document ranks."""

    def __init__(
        self,
        searcher: Searcher,
        top_k: int | None = None,
        top_n: int | None = None,
        rerank: bool = True,
        mode: Mode = Mode.HYBRID,
        per_document: bool = False,
    ) -> None:
        super().__init__()
        self.searcher = searcher
        self.top_k, self.top_n, self.rerank, self.mode = top_k, top_n, rerank, mode
        self.per_document = per_document

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        ranking = self.searcher.search(query_bundle.query_str, self.top_k, self.top_n, self.mode, self.rerank)
        hits = _best_per_document(ranking.ranked) if self.per_document else ranking.ranked
        return [NodeWithScore(node=to_node(hit), score=hit.relevance) for hit in hits]


def _best_per_document(hits: list[Hit]) -> list[Hit]:
    best: dict[str, Hit] = {}
    for hit in hits:
        best.setdefault(hit.chunk.doc_id, hit)
    return list(best.values())


def to_node(hit: Hit) -> TextNode:
    chunk = hit.chunk
    metadata: dict[str, Any] = {
        "source": chunk.source,
        "title": chunk.title,
        "page": chunk.page,
        "file_type": chunk.file_type,
        "doc_id": chunk.doc_id,
        "chunk_index": chunk.chunk_index,
        "dense_score": hit.dense_score,
        "rerank_score": hit.rerank_score,
    }
    hidden = ["doc_id", "chunk_index", "dense_score", "rerank_score", "file_type"]
    return TextNode(
        id_=hit.id,
        text=chunk.text,
        metadata={k: v for k, v in metadata.items() if v is not None},
        excluded_llm_metadata_keys=hidden,
        excluded_embed_metadata_keys=hidden,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=chunk.doc_id)},
        start_char_idx=chunk.char_start,
        end_char_idx=chunk.char_end,
    )


def open_retriever(collection: Collection, **options: Any) -> CollectionRetriever:
    """The collection's retriever with its configured reranker (its own trained one, if any)."""
    return CollectionRetriever(Searcher.for_collection(collection), **options)


class AppLLM(CustomLLM):
    """The app's configured LLM (the embedded llama.cpp server, or OPENAI_BASE_URL's) as a llama-index LLM."""

    context_window: int = 4096
    num_output: int = 384
    model_name: str = "rag-llm"
    _client: LLMClient = PrivateAttr()

    def __init__(self, client: LLMClient, context_window: int = 4096, num_output: int = 384) -> None:
        super().__init__(context_window=context_window, num_output=num_output, model_name=client.model)
        self._client = client

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window, num_output=self.num_output, model_name=self.model_name
        )

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._client.complete(_as_user(prompt), self.num_output))

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def pieces() -> Generator[CompletionResponse, None, None]:
            text = ""
            for piece in self._client.stream(_as_user(prompt), self.num_output):
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return pieces()


def _as_user(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def query_engine(
    collection: Collection, retriever: BaseRetriever | None = None, **options: Any
) -> RetrieverQueryEngine:
    """llama-index's own RetrieverQueryEngine over our retrieval, answering with the app's LLM."""
    settings = collection.settings
    llm = AppLLM(open_llm(settings), settings.llm_context_tokens, settings.llm_answer_tokens)
    return RetrieverQueryEngine.from_args(retriever or open_retriever(collection), llm=llm, **options)
