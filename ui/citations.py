"""Citations that open: each [n] of an answer links to its passage in the document (service/viewer.py), and a click
opens it in the viewer beside the chat rather than in a new tab (Gradio gives every chat link target=_blank, so a
small script takes the click)."""

from __future__ import annotations

import html
import re

from rag.answer import Answer, Source
from service.viewer import citation_url

_CITATION = re.compile(r"\[(\d+)\]")

VIEWER = """<div class='viewer' hidden>
<div class='viewer-bar'><span>Source, in its document</span><button class='viewer-close' type='button'
 aria-label='Close the source'>✕</button></div>
<iframe name='viewer' title='Source viewer'></iframe></div>"""

# A click on a citation (in the chat or the sources panel) loads it into the viewer; ✕ closes it.
HEAD = """<script>
document.addEventListener('click', (event) => {
  const target = event.target instanceof Element ? event.target : null;
  if (!target) return;
  const viewer = document.querySelector('#viewer .viewer');
  if (target.closest('.viewer-close') && viewer) {
    viewer.hidden = true;
    viewer.querySelector('iframe').src = 'about:blank';
    return;
  }
  const link = target.closest('a.cite');
  if (!link || !viewer || !link.closest('#chatbot, #sources')) return;
  // only the app's own viewer opens in the frame: an answer's text cannot choose what the page shows
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.includes('/view/')) return;
  event.preventDefault();
  event.stopPropagation();
  viewer.querySelector('iframe').src = link.href;
  viewer.hidden = false;
  viewer.scrollIntoView({block: 'nearest'});
}, true);
</script>"""

CSS = """
#viewer .viewer { border: 1px solid var(--border-color-primary); border-radius: 6px; margin-top: 8px; }
#viewer .viewer-bar { display: flex; justify-content: space-between; padding: 4px 8px; font-weight: 600; }
#viewer .viewer-close { cursor: pointer; background: none; border: none; font-size: 1em; }
#viewer iframe { width: 100%; height: 520px; border: 0; border-top: 1px solid var(--border-color-primary); }
a.cite { text-decoration: none; font-weight: 600; }
"""


def quotes_by_source(answer: Answer) -> dict[int, list[str]]:
    """The answer's sentences that cite each passage and are supported by it: what the viewer marks."""
    quotes: dict[int, list[str]] = {}
    for sentence in answer.sentences:
        for n in sentence.cites:
            if sentence.supported:
                quotes.setdefault(n, []).append(_CITATION.sub("", sentence.text).strip())
    return quotes


def linked_text(text: str, answer: Answer, collection: str) -> str:
    """text (the answer as shown) with each [n] of a passage it was drawn from as a link to that passage."""
    by_n = {s.n: s for s in answer.context}
    quotes = quotes_by_source(answer)

    def link(match: re.Match[str]) -> str:
        source = by_n.get(int(match.group(1)))
        if source is None:
            return match.group(0)
        return source_link(source, collection, quotes.get(source.n, []), match.group(0))

    return _CITATION.sub(link, text)


def source_link(source: Source, collection: str, quotes: list[str], label: str) -> str:
    url = citation_url(collection, source.doc_id, source.chunk_index, quotes)
    tip = html.escape(f"{source.source}{source.location()}: open in its document")
    return f'<a class="cite" href="{html.escape(url)}" title="{tip}">{html.escape(label)}</a>'
