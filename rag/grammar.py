"""A GBNF grammar that makes a llama.cpp model cite: every sentence ends with `[n]` for a passage it was given.

Only servers whose decoding we control get it (the embedded llama.cpp server); remote models keep the plain
prompt. The answer is either the refusal sentence or one to MAX_SENTENCES cited sentences of plain prose: a
sentence's text cannot hold brackets, newlines or a full stop followed by a space, so it cannot run on into a
second sentence without a citation, nor start with a passage header such as `(file.html)`.
"""

from __future__ import annotations

from rag.prompt import REFUSAL

MAX_SENTENCES = 4


def citation_grammar(passages: int, max_sentences: int = MAX_SENTENCES) -> str:
    """The grammar for an answer over passages numbered 1..passages."""
    if passages < 1:
        raise ValueError("a cited answer needs at least one passage")
    numbers = " | ".join(f'"{n}"' for n in range(1, passages + 1))
    return "\n".join(
        [
            f'root ::= refusal | sentence (" " sentence){{0,{max_sentences - 1}}}',
            f'refusal ::= "{REFUSAL}"',
            'sentence ::= first body "."? " "? cite{1,3}',
            # a full stop inside a sentence ("e.g", "3.11", "file.txt") must be followed by a non-space
            'body ::= (char | "." [^\\[\\]\\n. ])*',
            "first ::= [^\\[\\]\\n. (]",
            "char ::= [^\\[\\]\\n.]",
            f'cite ::= "[" ({numbers}) "]"',
        ]
    )
