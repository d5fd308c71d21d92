"""Which words of a conversation a turn's search gets, decided without trusting a model.

A turn that stands on its own words (a new topic, an off-topic question, an explicit return to an earlier topic) is
searched alone, so the last topic is never pulled into it and its refusal is decided on its own words. A turn that
cannot stand alone (a pronoun such as "it" or "them", an ellipsis such as "what about directories?", or too few
words of its own) is searched with the content words of the topic it continues: historical query expansion
(HQE; Lin et al., "Multi-stage conversational passage retrieval", 2021), with the topic taken from the last user
turn that was answered, so an off-topic turn that was refused is never the topic. rag.answer searches a follow-up
alone first and uses the topic's words only where that finds nothing relevant, or where the question opens with
an ellipsis (then both searches are fused).

A model's rewrite can replace the expansion only when it passes valid_rewrite: one question, no citation, no code,
every content word drawn from the question or the conversation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rag.text import CITATION, STOPWORDS, WORD, content_words

# Words that refer back to something said earlier. "that"/"this" count only where they do not start a clause
# ("check that a package..."): see _refers_back.
_PRONOUNS = frozenset(
    {"it", "its", "itself", "they", "them", "their", "theirs", "themselves", "he", "him", "his", "she", "her"}
    | {"these", "those", "former", "latter", "one", "ones", "mine", "yours", "ours", "such"}
)
_DEMONSTRATIVES = frozenset({"this", "that"})
# After these, 'that' starts a clause ("check that a package...", "so that it works") instead of pointing back.
_CLAUSE_STARTS = frozenset(
    {"a", "an", "the", "i", "you", "we", "it", "they", "he", "she", "my", "your", "our", "their", "its"}
    | {"there", "all", "some", "no", "every", "each", "any", "this", "these", "those"}
)
# An ellipsis that opens the question: it asks the last question again of something else ("what about
# directories?", "and on Windows?"), even where its own words find passages ("dictionaries" alone finds the
# tutorial, not how CPython implements them).
_OPENING_ELLIPSIS = re.compile(
    r"^\s*(?:and\s+|but\s+|so\s+|ok(?:ay)?,?\s+)?(?:what|how)\s+about\b"
    r"|^\s*(?:and|but|or)\s+(?:for|in|on|with|without|if|under|from|then)\b",
    re.IGNORECASE,
)
# An ellipsis anywhere: the question leans on the last one.
_ELLIPSIS = re.compile(
    _OPENING_ELLIPSIS.pattern
    + r"|^\s*(?:what|how)\s+(?:else|if)\b|^\s*(?:same|also|then|why\s+not|how\s+come)\b"
    r"|\b(?:instead|as\s+well|the\s+same|this\s+one|that\s+one|which\s+one|the\s+other\s+one)\b",
    re.IGNORECASE,
)
# Words that ask without naming a topic: a question of only these (and stopwords) names nothing to search for.
_ASKING_TEXT = """
tell me more please thanks thank ok okay know want need like explain mean means meant work works happen happens
again else way ways example examples use using get got say said about
"""
_ASKING = frozenset(_ASKING_TEXT.split())
SHORT_QUESTION_WORDS = 1  # a question naming at most this many words of its own leans on the conversation
MAX_EXPANSION_WORDS = 12  # the topic's words added to a follow-up, most recent first


@dataclass(frozen=True)
class TurnQuery:
    """What one turn searches: its text (the question, or a model's validated rewrite of it), then the words of the
    topic it continues ("" when it stands alone)."""

    question: str
    text: str
    context: str = ""
    reason: str = ""  # why the conversation was used ("" when it was not)

    @property
    def searched(self) -> str:
        """What was searched, as one line: the text, then the topic's words."""
        return f"{self.text} {self.context}" if self.context else self.text


def topic_words(text: str) -> list[str]:
    """The words of text that name a topic, in order: no stopwords, no asking words, no citation markers."""
    words = WORD.findall(CITATION.sub(" ", text).lower())
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS and w not in _ASKING))


def leans_on_history(question: str) -> str:
    """Why the question cannot be searched on its own words ("" when it can): a pronoun, an ellipsis, too short."""
    words = [w.lower() for w in WORD.findall(question)]
    pronoun = next((w for w in words if w in _PRONOUNS), None)
    if pronoun:
        return f"'{pronoun}' refers to an earlier turn"
    if _refers_back(words):
        return "'this'/'that' refers to an earlier turn"
    ellipsis = _ELLIPSIS.search(question)
    if ellipsis:
        return f"'{ellipsis.group(0).strip()}' continues an earlier turn"
    if len(topic_words(question)) <= SHORT_QUESTION_WORDS:
        return "too few words of its own"
    return ""


def opens_with_ellipsis(question: str) -> bool:
    """Whether the question opens by asking the last one again of something else ("what about X?", "and in X?")."""
    return bool(_OPENING_ELLIPSIS.search(question))


def _refers_back(words: list[str]) -> bool:
    """A 'this' or 'that' that stands for something said before ("why is that?", "how do I remove that
    package?"), not one that starts a clause ("check that a package is installed")."""
    return any(
        word in _DEMONSTRATIVES and (i + 1 == len(words) or words[i + 1] not in _CLAUSE_STARTS)
        for i, word in enumerate(words)
    )


def plan_turn(question: str, history: list[tuple[str, bool]]) -> TurnQuery:
    """The search for question after the history's user turns, each with whether it was answered (not refused).

    The topic is carried turn by turn: an answered turn that stands alone sets it, an answered follow-up extends it
    (so "it" two follow-ups later still finds the first subject), a refused turn leaves it as it was.
    """
    topic: list[str] = []
    for earlier, answered in history:
        if answered:
            topic = _next_topic(earlier, topic)
    reason = leans_on_history(question)
    own = set(topic_words(question))
    added = [w for w in topic if w not in own][:MAX_EXPANSION_WORDS]
    if not reason or not added:
        return TurnQuery(question, question)
    return TurnQuery(question, question, " ".join(added), reason)


def _next_topic(question: str, topic: list[str]) -> list[str]:
    """The topic after an answered question: its own words, then (for a follow-up) the topic it continued."""
    own = topic_words(question)
    if leans_on_history(question) and topic:
        return own + [w for w in topic if w not in own]
    return own


# A rewrite that reads like code or a shell command: not a question to search with.
_CODE = re.compile(r"`|>>>|\(\)|\b\w+\(|[{};=<>|\\$]|^\s*(?:sudo|import|def|class|from)\b")


def valid_rewrite(rewrite: str, question: str, history_text: str) -> str:
    """Why a model's rewrite must not be searched ("" when it may): it must be one question, without citation
    markers or code, and every content word must come from the question or the conversation (a rewrite that
    brings new words is an answer or an invention, not a rewrite)."""
    text = rewrite.strip().strip('"').strip()
    if not text:
        return "empty"
    if "\n" in text or len(text) > max(300, 4 * len(question)):
        return "more than one line of question"
    if CITATION.search(text) or _CODE.search(text):
        return "has a citation marker or code"
    if not text.endswith("?") or text.count("?") > 1 or re.search(r"[.!]\s+\S", text):
        return "not a single question"
    if text.lower().strip(" ?.") == question.lower().strip(" ?."):
        return "repeats the question"
    allowed = stems(content_words(question) | content_words(history_text))
    new = sorted(w for w in content_words(text) if _stem(w) not in allowed)
    if new:
        return "brings words from nowhere in the conversation: " + ", ".join(new[:5])
    return ""


def _stem(word: str) -> str:
    """Enough of an English stem to see 'packages' in 'package' and 'removing' in 'remove'."""
    for suffix in ("ing", "ies", "es", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)].rstrip("e")
    return word.rstrip("e")


def stems(words: Iterable[str]) -> set[str]:
    return {_stem(w) for w in words}
