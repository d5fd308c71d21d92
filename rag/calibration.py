"""The refusal threshold that best separates answerable from unanswerable questions (balanced accuracy).

For a threshold t, an answerable question is answered when its best relevance is >= t and an unanswerable one is
refused when it is < t. Balanced accuracy averages the two rates, so a set with few unanswerable questions does
not push the threshold to zero. `rag eval` reports it on a labelled set; `rag train-reranker` stores it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rates:
    answered: float  # share of answerable questions answered
    refused: float  # share of unanswerable questions refused

    @property
    def balanced(self) -> float:
        return (self.answered + self.refused) / 2


def rates(answerable: list[float], unanswerable: list[float], threshold: float) -> Rates:
    return Rates(
        sum(s >= threshold for s in answerable) / max(1, len(answerable)),
        sum(s < threshold for s in unanswerable) / max(1, len(unanswerable)),
    )


def best_threshold(answerable: list[float], unanswerable: list[float], min_answered: float = 0.0) -> float:
    """Among the observed scores, the threshold with the best balanced accuracy (the lowest on a tie) that still
    answers at least min_answered of the answerable questions: a model that cannot separate the two sets must
    not be calibrated into refusing everything."""
    if not answerable or not unanswerable:
        raise ValueError("calibration needs answerable and unanswerable scores")
    candidates = sorted({round(s, 3) for s in answerable + unanswerable})
    allowed = [t for t in candidates if rates(answerable, unanswerable, t).answered >= min_answered]
    return max(allowed or candidates[:1], key=lambda t: rates(answerable, unanswerable, t).balanced)
