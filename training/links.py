"""Training queries from links: the sentence around a link in one page, pointing to the page it links to.

Headings teach "find the section with this title". A link is an author's word that another page answers what the
sentence around it says, in words that page need not contain: "To copy a file, use the ___ module" -> shutil's page.
The link's own text is cut out of the query (it is usually the target's name, which would make the pair lexical).
Only HTML sources are read, from where ingestion read them, and only while they still hold the ingested content.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.loaders import is_dropped
from rag.store.payload import ChunkPayload
from rag.text import split_sentences

LINK_QUESTIONS = 0  # link queries mined by default
# A query needs this many words of prose (a list of names says nothing); a longer one is a paragraph.
MIN_WORDS, MAX_WORDS = 6, 40
_PROSE = re.compile(r"[A-Za-z][a-z]+[,;:]?")
_BLOCKS = {"p", "li", "dd", "td", "th", "blockquote", "dt"}
_MARK = "\x00"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class LinkQuery:
    query: str
    source: str  # the page the sentence is in
    target: str  # the page it links to, relative to the same root


def link_queries(chunks: list[ChunkPayload], count: int, rng: random.Random) -> list[LinkQuery]:
    """Up to `count` link queries, sampled from the HTML documents the chunks come from; each points to another
    document among them."""
    documents = {(c.root, c.source): c.content_hash for c in chunks if c.file_type == "html"}
    known = {source for _, source in documents}
    by_target: dict[str, list[LinkQuery]] = defaultdict(list)
    for (root, source), content_hash in sorted(documents.items()):
        raw = _read_unchanged(Path(root) / source, content_hash)
        for query in page_link_queries(raw, source) if raw is not None else []:
            if query.target in known:
                by_target[query.target].append(query)
    return _spread(by_target, count, rng)


def _spread(by_target: dict[str, list[LinkQuery]], count: int, rng: random.Random) -> list[LinkQuery]:
    """A sample that takes from every target page in turn: a few hub pages (built-in functions, exceptions) draw
    most links, and would otherwise be most of the training."""
    pools = [rng.sample(queries, len(queries)) for _, queries in sorted(by_target.items())]
    rng.shuffle(pools)
    out: list[LinkQuery] = []
    while len(out) < count and any(pools):
        for pool in pools:
            if pool and len(out) < count:
                out.append(pool.pop())
    return out


def _read_unchanged(path: Path, content_hash: str) -> bytes | None:
    """The file's bytes when it still holds what was ingested (a changed page's links may point elsewhere now)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return raw if hashlib.sha256(raw).hexdigest() == content_hash else None


def page_link_queries(raw: bytes, source: str) -> Iterator[LinkQuery]:
    """Each link to another page of the same site (a relative href) in the page's visible text, as a query: the
    sentence it stands in, without the link's text; one query per (sentence, target)."""
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(raw, parser=lxml.html.HTMLParser(huge_tree=True))
    except (etree.ParserError, ValueError):
        return
    seen: set[tuple[str, str]] = set()
    for link in root.iter("a"):
        target = _target(source, str(link.get("href") or ""))
        block = _block(link)
        if target is None or block is None or _mostly_links(block):
            continue
        query = _sentence_without(block, link)
        if query and (query, target) not in seen:
            seen.add((query, target))
            yield LinkQuery(query, source, target)


def _target(source: str, href: str) -> str | None:
    """The page a relative href names, relative to the root `source` is under; None for other sites, anchors in
    the same page, and paths that leave the root."""
    path = href.split("#")[0].split("?")[0]
    if not path or _SCHEME.match(path) or path.startswith(("/", "//")):
        return None
    parts: list[str] = []
    for part in (PurePosixPath(source).parent / path).parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    target = "/".join(parts)
    return target if target != source else None


def _block(link: Any) -> Any | None:
    """The paragraph-like element holding the link, or None when the link is in navigation or hidden text."""
    block = None
    for element in [link, *link.iterancestors()]:
        if not isinstance(element.tag, str) or is_dropped(element.tag, element.attrib):
            return None
        if block is None and element.tag in _BLOCKS:
            block = element
    return block


def _mostly_links(block: Any) -> bool:
    """A table of contents or a list of names: half of the block's text or more is link text."""
    linked = sum(len(a.text_content()) for a in block.iterdescendants("a"))
    return 2 * linked >= len(block.text_content())


def _sentence_without(block: Any, link: Any) -> str | None:
    """The block's sentence that holds the link, with the link's text taken out; None if too short or long."""
    text = _text_with_mark(block, link)
    for sentence in split_sentences(" ".join(text.split())):
        if _MARK in sentence:
            words = sentence.replace(_MARK, " ").split()
            prose = sum(1 for word in words if _PROSE.fullmatch(word))
            return " ".join(words) if prose >= MIN_WORDS and len(words) <= MAX_WORDS else None
    return None


def _text_with_mark(element: Any, link: Any) -> str:
    """The element's text in document order (its tail not included), the link's own text replaced by a mark."""
    if element is link:
        return _MARK
    parts = [element.text or ""]
    for child in element:
        if isinstance(child.tag, str):
            inner = _text_with_mark(child, link) if _holds(child, link) else child.text_content()
            parts.append(inner)
        parts.append(child.tail or "")
    return "".join(parts)


def _holds(element: Any, link: Any) -> bool:
    return element is link or any(a is link for a in element.iterdescendants("a"))
