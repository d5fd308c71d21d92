"""Citation markers count only in prose: never inside inline code or fenced code blocks."""

from __future__ import annotations

from evals.metrics import citations, groundedness
from rag.citations import cited_numbers


def test_prose_citations_in_order_of_first_appearance() -> None:
    assert cited_numbers("Alpacas eat grass [2]. They hum [1, 3]. Really [2].") == [2, 1, 3]


def test_inline_code_indexes_are_not_citations() -> None:
    text = "Use `keys %seen[0]` or `$array[1]` to read it [2]."
    assert cited_numbers(text) == [2]


def test_fenced_block_indexes_are_not_citations() -> None:
    text = "Sort the hash by value [1]:\n\n```perl\nmy @sorted = sort { $h{$a} <=> $h{$b} } keys %h;\nprint $sorted[0];\n```\nDone [3]."
    assert cited_numbers(text) == [1, 3]


def test_an_unclosed_fence_while_streaming_hides_what_follows() -> None:
    assert cited_numbers("Like this [1]:\n~~~\nx = items[4]\n") == [1]


def test_eval_metrics_read_citations_the_same_way() -> None:
    assert citations("Index it with `$array[1]` [2].") == {2}
    assert groundedness("Alpacas eat grass `food[3]` [1].", {1: "alpacas eat grass and hay"}) == 1.0
