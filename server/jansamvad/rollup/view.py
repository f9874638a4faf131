"""The war room's roll-up view of one town hall at one unit: the unit's counts, its children's counts (to sort and
draw as bars) and the top questions of each child, read as one hash of leaf counts and summed up the tree here."""

from __future__ import annotations

from typing import Any

from jansamvad.models import PUBLIC_STATES, Question
from jansamvad.regions import RegionTree, Unit
from jansamvad.rollup.base import Rollup
from jansamvad.rollup.tally import roll_up, zero_filled
from jansamvad.store.base import Store

TOP_QUESTIONS = 3  # per child row
TOP_QUESTIONS_HERE = 10  # for the unit (or the whole town hall) itself


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
    """`unit` None: the whole town hall, whose rows are the tree's roots and the units it does not know (`unknown`:
    citizens who joined without a unit)."""
    leaves = await rollup.read(th)
    rolled = roll_up(tree, leaves)
    questions = await store.questions(th, PUBLIC_STATES)
    if unit is not None and tree is not None:
        here = rolled.get(unit.code, {})
        child_units = [tree.units[code] for code in tree.children.get(unit.code, [])]
        path = [_unit_json(tree, tree.units[code]) for code in tree.path(unit.code)]
        questions = [q for q in questions if tree.get(q.unit) is not None and tree.within(q.unit, unit.code)]
    else:
        here = {}
        for counts in leaves.values():
            for counter, n in counts.items():
                here[counter] = here.get(counter, 0) + n
        child_units = [u for u in tree.units.values() if not u.parent] if tree is not None else []
        path = []
    # Each question's top-level row under this unit: the child on its path (or its own code when the tree lacks it).
    depth = len(path)
    by_child: dict[str, list[Question]] = {}
    for q in questions:
        if tree is not None and tree.get(q.unit) is not None:
            q_path = tree.path(q.unit)
            if len(q_path) > depth:
                by_child.setdefault(q_path[depth], []).append(q)
        elif unit is None:
            by_child.setdefault(q.unit or "unknown", []).append(q)
    rows = []
    for child in child_units:
        assert tree is not None  # child units come from the tree
        row: dict[str, Any] = {**_unit_json(tree, child), **zero_filled(rolled.get(child.code, {}))}
        row["children"] = len(tree.children.get(child.code, []))
        row["top_questions"] = _top(by_child.get(child.code, []), TOP_QUESTIONS)
        rows.append(row)
    if unit is None:  # counts under codes the tree does not have: "unknown", or units of a replaced tree
        for code, counts in sorted(rolled.items()):
            if tree is None or tree.get(code) is None:
                rows.append(
                    {
                        "code": code,
                        "level": "",
                        "name_hi": "अज्ञात" if code == "unknown" else code,
                        "name_en": "Unknown" if code == "unknown" else code,
                        **zero_filled(counts),
                        "children": 0,
                        "top_questions": _top(by_child.get(code, []), TOP_QUESTIONS),
                    }
                )
    return {
        "th": th,
        "unit": path[-1] if path else None,
        "path": path,
        "counts": zero_filled(here),
        "rows": rows,
        "top_questions": _top(questions, TOP_QUESTIONS_HERE),
    }
