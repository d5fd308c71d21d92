"""Which words of a conversation a turn searches with (rag.conversation), and which model rewrites may be searched."""

from __future__ import annotations

import pytest

from rag.conversation import leans_on_history, opens_with_ellipsis, plan_turn, topic_words, valid_rewrite


@pytest.mark.parametrize(
    "question",
    [
        "And how do I remove it again?",
        "What about directories?",
        "Why is that?",
        "Can I do the same for them?",
        "And on Windows?",
        "Which one should I pick?",
        "Tell me more.",
        "How do I remove that package?",  # two words of its own: the package is the earlier one
    ],
)
def test_a_question_that_leans_on_the_conversation(question: str) -> None:
    assert leans_on_history(question)


@pytest.mark.parametrize(
    "question",
    [
        "How do I install a package with apt?",
        "Who won the 1998 FIFA World Cup?",
        "And who won the 1998 FIFA World Cup?",  # 'and' with a topic of its own is a new question
        "Thanks. What is the capital of Mongolia?",
        "How do I check that a package is installed?",  # 'that' starts a clause here
        "What is the latest stable release of Debian?",
    ],
)
def test_a_question_that_stands_alone(question: str) -> None:
    assert leans_on_history(question) == ""


@pytest.mark.parametrize(
    ("question", "opens"),
    [
        ("What about dictionaries?", True),
        ("And in C++?", True),
        ("and how about on Windows?", True),
        # leans on the conversation, but not from its start:
        ("How do I evaluate an expression instead?", False),
        ("Back to switch statements: how do I call functions by name instead?", False),
        ("What is a virtual package?", False),
    ],
)
def test_an_ellipsis_that_opens_the_question(question: str, opens: bool) -> None:
    assert opens_with_ellipsis(question) is opens


def test_a_follow_up_is_searched_with_the_topic_of_the_last_answered_question() -> None:
    history = [("How do I install a package with apt?", True)]
    plan = plan_turn("And how do I remove it again?", history)
    assert plan.text == "And how do I remove it again?" and plan.context == "install package apt"
    assert plan.searched == "And how do I remove it again? install package apt"


def test_a_new_topic_and_an_off_topic_turn_are_searched_alone() -> None:
    history = [("What is the latest stable release of Debian?", True)]
    assert (
        plan_turn("How do I install a package with apt?", history).searched
        == "How do I install a package with apt?"
    )
    history = [("What is a virtual package?", True)]
    assert not plan_turn("Who won the 1998 FIFA World Cup?", history).context


def test_a_refused_turn_is_never_the_topic_and_the_topic_carries_through_follow_ups() -> None:
    history = [
        ("What is a virtual package?", True),
        ("Who won the 1998 FIFA World Cup?", False),
        ("Which packages provide them?", True),
    ]
    plan = plan_turn("And how do I install one of them?", history)
    words = set(plan.context.split())
    assert {"virtual", "package", "provide"} <= words and not {"fifa", "cup"} & words


def test_a_follow_up_with_no_answered_turn_before_it_is_searched_alone() -> None:
    assert not plan_turn("And how do I remove it?", [("Who won the World Cup?", False)]).context


def test_topic_words_drop_asking_words_and_citations() -> None:
    assert topic_words("Tell me more about the dpkg tool, please [2]") == ["dpkg", "tool"]


HISTORY = "User: How do I install a package with apt?\nAssistant: Run apt install NAME [1]."


@pytest.mark.parametrize(
    ("rewrite", "why"),
    [
        ("(contributed by brian d foy)", "not a single question"),
        ("The capital of Mongolia is Khalkhong. [3]", "citation"),
        ("You can measure time under a second using the `time` function in Python. [1]", "citation"),
        ("use the command `sudo rm -R *`.", "code"),
        ("How do I remove a package with apt? And purge it?", "not a single question"),
        ("How do I remove a kernel module with modprobe?", "nowhere in the conversation"),
        ("And how do I remove it again?", "repeats the question"),
        ("", "empty"),
    ],
)
def test_a_rewrite_that_is_not_a_question_from_the_conversation_is_never_searched(
    rewrite: str, why: str
) -> None:
    assert why in valid_rewrite(rewrite, "And how do I remove it again?", HISTORY)


def test_a_rewrite_drawn_from_the_conversation_may_be_searched() -> None:
    assert (
        valid_rewrite(
            "How do I remove a package installed with apt?", "And how do I remove it again?", HISTORY
        )
        == ""
    )
