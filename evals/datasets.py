"""Build development QA sets from the FAQs in real Debian documentation packages.

python -m evals.datasets [--dest evals/data] [--corpora corpora]

Every FAQ section whose heading asks a question becomes one item: the heading is the question, the section's
text (down to the next heading of the same or a higher level) the reference answer, and the FAQ page the gold
source, relative to the corpus's doc root (the folder `rag eval --docs` ingests). A third set asks the Python FAQ's
questions of the docs without the FAQ: its gold are the reference pages each answer links to. Every set ends with
the same hand-written questions that no corpus answers (`answerable: false`), to measure refusals.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, PageElement, Tag, XMLParsedAsHTMLWarning

from evals.fetch_corpora import DEFAULT_DEST, fetch
from evals.qa import GoldRef, QAItem, write_qa

DATA_DIR = Path(__file__).resolve().parent / "data"
ANSWER_CHARS = 1500
MAX_FILE_BYTES = 400_000

_HEADING_LEVEL = {f"h{n}": n for n in range(1, 7)}
# Separating text at these tags keeps "end.</p><p>Next" from gluing into one word.
_BLOCK_TAGS = frozenset(
    {"p", "div", "pre", "li", "ul", "ol", "dl", "dt", "dd", "tr", "td", "th", "table", "br", "section"}
    | {"blockquote", "h1", "h2", "h3", "h4", "h5", "h6"}
)
_SECTION_NUMBER = re.compile(r"^\d+(?:\.\d+)*\.?\s+")  # DocBook's "2.1. What is Debian?"

UNANSWERABLE = [
    "How long should I boil an egg to get a soft yolk?",
    "At what oven temperature should sourdough bread be baked?",
    "Which spices go into a traditional garam masala?",
    "How do you make a French omelette?",
    "Who won the 1998 FIFA World Cup?",
    "How many players are on the field in a rugby union team?",
    "What is the offside rule in football?",
    "How long does an average amateur runner take to finish a marathon?",
    "What is the capital of Mongolia?",
    "Which river flows through Budapest?",
    "What is the highest mountain in Africa?",
    "What is the deepest lake in the world?",
    "How far is Mars from the Sun on average?",
    "What causes the phases of the Moon?",
    "Which planet in the solar system has the most moons?",
    "What happens to a star when it becomes a supernova?",
    "In which year did the Battle of Hastings take place?",
    "Who was the first emperor of Rome?",
    "When did the Berlin Wall fall?",
    "Why did the Titanic sink?",
    "Who painted the ceiling of the Sistine Chapel?",
    "How should a rose bush be pruned in winter?",
    "What is the recommended daily intake of vitamin C for adults?",
    "How many bones are there in the adult human body?",
    "What is the population of Canada?",
]


def unanswerable_items() -> list[QAItem]:
    return [QAItem(f"u{n:02d}", question, None, [], False) for n, question in enumerate(UNANSWERABLE, 1)]


# --- HTML sections ---------------------------------------------------------------------------------------


def _soup(path: Path) -> BeautifulSoup:
    with warnings.catch_warnings():
        # the Debian FAQ is XHTML with an XML declaration; lxml's HTML parser reads it fine
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        return BeautifulSoup(path.read_bytes(), "lxml")


def _heading_text(heading: Tag) -> str:
    return " ".join(heading.get_text(" ").replace("¶", " ").split())


def _is_section(tag: Tag) -> bool:
    return tag.name == "section" or (tag.name == "div" and "section" in tag.get_attribute_list("class"))


def _container(heading: Tag) -> Tag:
    """The section holding the heading (Sphinx <section>, DocBook <div class="section">), else the body."""
    for parent in heading.parents:
        if isinstance(parent, Tag) and _is_section(parent):
            return parent
    body = heading.find_parent("body")
    return body if isinstance(body, Tag) else heading


def _after(container: Tag, heading: Tag) -> Iterator[PageElement]:
    """The container's descendants that follow the heading and its own subtree, in document order."""
    elements = list(container.descendants)
    start = next(i for i, element in enumerate(elements) if element is heading)
    yield from elements[start + 1 + len(list(heading.descendants)) :]


def _section(heading: Tag) -> Iterator[PageElement]:
    """The elements after a heading up to the next heading of the same or a higher level."""
    level = _HEADING_LEVEL[heading.name]
    for element in _after(_container(heading), heading):
        if isinstance(element, Tag) and _HEADING_LEVEL.get(element.name, 99) <= level:
            return
        yield element


def section_text(heading: Tag) -> str:
    """The text after a heading up to the next heading of the same or a higher level, whitespace collapsed."""
    parts: list[str] = []
    for element in _section(heading):
        if isinstance(element, Tag):
            if element.name in _BLOCK_TAGS:
                parts.append(" ")
        elif type(element) is NavigableString:  # not comments, scripts or stylesheets
            parts.append(str(element))
    return " ".join("".join(parts).replace("¶", " ").split())


def section_links(heading: Tag, page: Path, root: Path) -> list[str]:
    """The pages under root that the section links to (Sphinx's internal references), relative to root, in
    order of first appearance; anchors dropped, links back to the page itself left out."""
    found: list[str] = []
    for element in _section(heading):
        if not (isinstance(element, Tag) and element.name == "a"):
            continue
        href = str(element.get("href") or "").split("#")[0]
        if not href or "://" in href or href.startswith(("mailto:", "/")):
            continue
        target = (page.parent / href).resolve()
        if target != page.resolve() and target.is_relative_to(root.resolve()) and target.is_file():
            relative = target.relative_to(root.resolve()).as_posix()
            if relative not in found:
                found.append(relative)
    return found


def truncate(text: str, limit: int) -> str:
    """At most about `limit` characters, cut at a word boundary."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > 0 else limit] + " …"


def _is_question(title: str) -> bool:
    # "?" anywhere, not just at the end: a few headings ask and then add a remark
    # ("How do I delete a file? (And other file questions…)", "...? I thought this CD contains just `stable'!").
    return "?" in title


def _question_headings(path: Path, levels: tuple[str, ...]) -> Iterator[Tag]:
    for heading in _soup(path).find_all(list(levels)):
        if isinstance(heading, Tag) and _is_question(_heading_text(heading)):
            yield heading


def question_sections(path: Path, levels: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(question, answer text) for each heading among `levels` in the file that asks a question."""
    for heading in _question_headings(path, levels):
        yield _heading_text(heading), section_text(heading)


# --- the two FAQs ----------------------------------------------------------------------------------------


def python_faq(root: Path, answer_chars: int = ANSWER_CHARS) -> list[QAItem]:
    """Questions from the Python FAQ pages (html/faq/*.html under the python docs root)."""
    items: list[QAItem] = []
    for page in sorted((root / "faq").glob("*.html")):
        source = page.relative_to(root).as_posix()
        for n, (question, answer) in enumerate(question_sections(page, ("h2", "h3")), 1):
            items.append(
                QAItem(f"py-{page.stem}-{n:02d}", question, truncate(answer, answer_chars), [GoldRef(source)])
            )
    return items


# Pages a FAQ answer links to that do not answer it: term definitions, indexes, other FAQ pages.
_NOT_REFERENCE = re.compile(
    r"^(faq/|glossary\.html$|genindex|py-modindex\.html$|search\.html$|index\.html$|contents\.html$)"
)


def python_faq_references(root: Path, answer_chars: int = ANSWER_CHARS) -> list[QAItem]:
    """The Python FAQ's questions with the reference pages their answers link to as gold: for a collection of the
    Python docs without the FAQ (`--exclude 'faq/*'`), the answer must be found in library and language reference
    pages, whose text rarely repeats the question's words. Questions whose answers link to no such page are left
    out."""
    items: list[QAItem] = []
    for page in sorted((root / "faq").glob("*.html")):
        for n, heading in enumerate(_question_headings(page, ("h2", "h3")), 1):
            links = [link for link in section_links(heading, page, root) if not _NOT_REFERENCE.match(link)]
            if links:
                answer = truncate(section_text(heading), answer_chars)
                gold = [GoldRef(link) for link in links]
                items.append(QAItem(f"pyref-{page.stem}-{n:02d}", _heading_text(heading), answer, gold))
    return items


def debian_faq(root: Path, answer_chars: int = ANSWER_CHARS) -> list[QAItem]:
    """Questions from the Debian FAQ chapters (*.en.html, DocBook: "2.1. What is Debian?" headings)."""
    items: list[QAItem] = []
    for page in sorted(root.glob("*.en.html")):
        source = page.relative_to(root).as_posix()
        for title, answer in question_sections(page, ("h2", "h3", "h4")):
            number = _SECTION_NUMBER.match(title)
            item_id = (
                f"deb-{number.group().strip().rstrip('.')}" if number else f"deb-{page.stem}-{len(items)}"
            )
            question = title[number.end() :] if number else title
            items.append(QAItem(item_id, question, truncate(answer, answer_chars), [GoldRef(source)]))
    return items


def _size(items: list[QAItem]) -> int:
    return sum(len(json.dumps(item.to_json(), ensure_ascii=False).encode()) + 1 for item in items)


def build(name: str, builder: Callable[[Path, int], list[QAItem]], root: Path, dest: Path) -> int:
    """Write dest/<name>.jsonl, shortening reference answers until it fits MAX_FILE_BYTES; the item count."""
    limit = ANSWER_CHARS
    items = builder(root, limit) + unanswerable_items()
    while _size(items) > MAX_FILE_BYTES and limit > 250:
        limit -= 250
        items = builder(root, limit) + unanswerable_items()
    write_qa(dest / f"{name}.jsonl", items)
    answerable = sum(item.answerable for item in items)
    print(f"{name}: {answerable} answerable + {len(items) - answerable} unanswerable -> {dest / name}.jsonl")
    return len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build development QA sets from the Python and Debian FAQs.")
    parser.add_argument("--dest", type=Path, default=DATA_DIR, help="output folder (default: evals/data)")
    parser.add_argument("--corpora", type=Path, default=DEFAULT_DEST, help="corpus cache (default: corpora/)")
    args = parser.parse_args(argv)
    try:
        python_root = fetch("python-docs", args.corpora)
        debian_root = fetch("debian-faq", args.corpora)
    except Exception as exc:  # apt-get and dpkg failures come in several types; all end the same way
        print(f"fetching corpora failed: {exc}", file=sys.stderr)
        return 1
    print(f"python docs root: {python_root}\ndebian FAQ root: {debian_root}")
    build("python_faq", python_faq, python_root, args.dest)
    build("python_faq_references", python_faq_references, python_root, args.dest)
    build("debian_faq", debian_faq, debian_root, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
