from __future__ import annotations

import time

from jansamvad.moderation.grouping import QuestionGrouper


def assign(grouper: QuestionGrouper, qid: str, text: str) -> str:
    """What the node does with a new question (Client._on_ask): the group it resembles, or a new one named after it."""
    group = grouper.match(text)
    if group is None:
        grouper.add(qid, text)
        return qid
    return group


def test_grouping_puts_rephrasings_together() -> None:
    grouper = QuestionGrouper()
    first = assign(grouper, "q1", "हमारे गाँव में सड़क कब बनेगी?")
    assert assign(grouper, "q2", "हमारे गांव में सड़क कब बनेगी") == first  # candrabindu / anusvara, no "?"
    assert assign(grouper, "q3", "सड़क कब बनेगी हमारे गाँव में??") == first  # word order
    assert assign(grouper, "q4", "बिजली कब आएगी?") == "q4"
    assert assign(grouper, "q5", "When will our village road be built?") == "q5"
    assert assign(grouper, "q6", "when will our village ROAD be built") == "q5"


def test_grouping_does_not_swallow_short_questions_into_long_ones() -> None:
    grouper = QuestionGrouper()
    assign(grouper, "q1", "when will the road in our village be built")
    assert assign(grouper, "q2", "road") == "q2"
    assert assign(grouper, "q3", "the road") == "q3"


def test_grouping_forgets_the_oldest_themes_past_its_cap() -> None:
    grouper = QuestionGrouper(max_groups=2)
    assign(grouper, "q1", "water supply in ward five")
    assign(grouper, "q2", "electricity bills are too high")
    assign(grouper, "q3", "hospital beds in the district")
    assert len(grouper) == 2
    assert assign(grouper, "q4", "water supply in ward five") == "q4"


def test_grouping_assigns_ten_thousand_questions_quickly() -> None:
    """Not a benchmark (that is in loadtest/): a guard that grouping stays well inside the per-question budget."""
    grouper = QuestionGrouper(max_groups=2000)
    started = time.perf_counter()
    for i in range(2000):
        assign(grouper, f"q{i}", f"question number {i} about topic {i % 97} in district {i % 38}")
    assert time.perf_counter() - started < 20
