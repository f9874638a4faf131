"""The war room's roll-up view of one town hall at one unit: the unit's counts, its children's counts (to sort and
draw as bars) and the top questions of each child. One read of just those units (the nodes summed the tree when
they wrote), whatever the size of the tree."""

from __future__ import annotations

from typing import Any

from jansamvad.models import PUBLIC_STATES, Question
from jansamvad.regions import RegionTree, Unit
from jansamvad.rollup.base import COUNTERS, UNKNOWN_UNIT, Rollup
from jansamvad.rollup.tally import path_in
from jansamvad.store.base import Store

TOP_QUESTIONS = 3  # per child row
TOP_QUESTIONS_HERE = 10  # for the unit (or the whole town hall) itself


def zero_filled(counts: dict[str, int]) -> dict[str, int]:
    """Every counter, and `reached`: people reached, citizens online plus the people at booth screens."""
    filled = {counter: counts.get(counter, 0) for counter in COUNTERS}
    filled["reached"] = filled["viewers"] + filled["audience"]
    return filled


def _unit_json(tree: RegionTree, unit: Unit) -> dict[str, str]:
    level = tree.level(unit.level)
    return {
        "code": unit.code,
        "level": unit.level,
        "level_hi": level.name_hi,
        "level_en": level.name_en,
        "name_hi": unit.name_hi,
        "name_en": unit.name_en,
    }


def _question_json(q: Question) -> dict[str, Any]:
    return {"qid": q.qid, "text": q.text, "votes": q.votes, "state": str(q.state), "unit": q.unit, "name": q.name}


def _top(questions: list[Question], limit: int) -> list[dict[str, Any]]:
    return [_question_json(q) for q in sorted(questions, key=lambda q: (-q.votes, q.ts))[:limit]]


async def rollup_view(
    rollup: Rollup, store: Store, th: str, tree: RegionTree | None, unit: Unit | None
) -> dict[str, Any]:
    """`unit` None: the whole town hall, whose rows are the tree's roots and `unknown` (citizens who joined without
    a unit)."""
    if unit is not None and tree is not None:
        child_units = [tree.units[code] for code in tree.children.get(unit.code, [])]
        path = [_unit_json(tree, tree.units[code]) for code in tree.path(unit.code)]
        codes = [unit.code, *(u.code for u in child_units)]
    else:
        child_units = sorted((u for u in tree.units.values() if not u.parent), key=lambda u: u.code) if tree else []
        path = []
        codes = [*(u.code for u in child_units), UNKNOWN_UNIT]
    counts = await rollup.read(th, codes)
    if unit is not None:
        here = counts.get(unit.code, {})
    else:  # the whole town hall: every root and `unknown`
        here = {}
        for code in codes:
            for counter, n in counts.get(code, {}).items():
                here[counter] = here.get(counter, 0) + n
    questions = await store.questions(th, PUBLIC_STATES)
    path_of = path_in(tree)
    depth = len(path)
    by_row: dict[str, list[Question]] = {}  # each question under the row on its unit's path
    mine: list[Question] = []
    for q in questions:
        q_path = path_of(q.unit or UNKNOWN_UNIT)
        if unit is not None and unit.code not in q_path:
            continue  # asked outside this unit's subtree
        mine.append(q)
        if len(q_path) > depth:
            by_row.setdefault(q_path[depth], []).append(q)
    rows = []
    for child in child_units:
        assert tree is not None  # child units come from the tree
        row: dict[str, Any] = {**_unit_json(tree, child), **zero_filled(counts.get(child.code, {}))}
        row["children"] = len(tree.children.get(child.code, []))
        row["top_questions"] = _top(by_row.get(child.code, []), TOP_QUESTIONS)
        rows.append(row)
    if unit is None:
        unknown = {"code": UNKNOWN_UNIT, "level": "", "level_hi": "", "level_en": "", "name_hi": "अज्ञात"}
        unknown["name_en"] = "Unknown"
        top = _top(by_row.get(UNKNOWN_UNIT, []), TOP_QUESTIONS)
        rows.append({**unknown, **zero_filled(counts.get(UNKNOWN_UNIT, {})), "children": 0, "top_questions": top})
    return {
        "th": th,
        "unit": path[-1] if path else None,
        "path": path,
        "counts": zero_filled(here),
        "rows": rows,
        "top_questions": _top(mine, TOP_QUESTIONS_HERE),
    }
