"""A town hall's record for the war room: every question with its decisions, votes, group, author pseudonym and
region; poll results; the audit log. As JSON (everything) or CSV (one row per question). And per region unit at one
level of the tree (`?by=district`): questions, decisions, reach and poll votes per unit."""

from __future__ import annotations

import csv
import io
from typing import Any

from jansamvad.models import PollState, QState, Townhall
from jansamvad.regions import RegionTree
from jansamvad.rollup.base import Rollup
from jansamvad.store.base import Store


async def build_export(store: Store, townhall: Townhall) -> dict[str, Any]:
    th = townhall.id
    questions = await store.questions(th, list(QState))
    polls = await store.polls(th, list(PollState))
    return {
        "townhall": townhall.admin(),
        "questions": [q.for_export() for q in sorted(questions, key=lambda q: q.ts)],
        "polls": [p.public() for p in polls],
        "audit": await store.audit(th),
    }


CSV_COLUMNS = (
    "qid",
    "ts",
    "state",
    "pinned",
    "votes",
    "group",
    "author",
    "name",
    "region",
    "lang",
    "flags",
    "text",
    "decisions",
)


def export_csv(report: dict[str, Any]) -> str:
    """One row per question; decisions as "action by reason @ts" joined with " | "."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for q in report["questions"]:
        decisions = " | ".join(f"{d['action']} by {d['by']} {d['reason']} @{d['ts']}".strip() for d in q["decisions"])
        writer.writerow(
            [
                q["qid"],
                q["ts"],
                q["state"],
                q["pinned"],
                q["votes"],
                q["group"],
                q["sub"],
                q["name"],
                q["region"],
                q["lang"],
                ";".join(q["flags"]),
                q["text"],
                decisions,
            ]
        )
    return out.getvalue()


# Exports per unit (`?by=<level>`): one row per unit of that level of the region tree, from the store's questions (by
# the asker's unit) and the roll-up's counters (reach, reactions, poll votes by option).

OTHER_UNIT = "unknown"  # the row of what has no unit at the level: no unit in the token, or a unit above the level

UNIT_COLUMNS = (
    "code",
    "level",
    "name_hi",
    "name_en",
    "joins",
    "viewers",
    "asked",
    "pending",
    "approved",
    "answered",
    "rejected",
    "decisions",
    "reactions",
    "votes",
)


def _unit_at(tree: RegionTree, code: str, depth: int) -> str:
    """The ancestor (or self) of `code` at `depth`, or OTHER_UNIT."""
    if tree.get(code) is None:
        return OTHER_UNIT
    path = tree.path(code)
    return path[depth] if len(path) > depth else OTHER_UNIT


async def build_unit_export(
    store: Store, rollup: Rollup, townhall: Townhall, tree: RegionTree, level: str
) -> dict[str, Any]:
    th = townhall.id
    depth = tree.depth_of_level[level]
    units = [u for u in tree.ordered() if u.level == level]
    rows: dict[str, dict[str, Any]] = {}
    for unit in units:
        rows[unit.code] = {"code": unit.code, "level": unit.level, "name_hi": unit.name_hi, "name_en": unit.name_en}
    rows[OTHER_UNIT] = {"code": OTHER_UNIT, "level": "", "name_hi": "अज्ञात", "name_en": "Unknown"}
    for row in rows.values():
        row.update({column: 0 for column in UNIT_COLUMNS[4:]})
        row["polls"] = {}
    for q in await store.questions(th, list(QState)):
        row = rows[_unit_at(tree, q.unit, depth)]
        row["asked"] += 1
        row[q.state.value] += 1
        row["decisions"] += len(q.decisions)
    polls = await store.polls(th, list(PollState))
    poll_counters = [f"poll:{p.pid}:{i}" for p in polls for i in range(len(p.options))]
    counters = ("joins", "viewers", "reactions", "votes", *poll_counters)
    roots = [u.code for u in tree.units.values() if not u.parent]
    counts = await rollup.read(th, [*(u.code for u in units), *roots, OTHER_UNIT], counters)

    def add(row: dict[str, Any], code: str, sign: int) -> None:
        for counter, n in counts.get(code, {}).items():
            if counter.startswith("poll:"):  # poll:<pid>:<option>
                key = counter[5:]
                row["polls"][key] = row["polls"].get(key, 0) + sign * n
            else:
                row[counter] += sign * n

    # The nodes summed every unit up the tree: a level's rows are read as they are, and the rest (no unit, or a unit
    # above the level) is the whole town hall's count (the roots and `unknown`) less the level's rows.
    other = rows[OTHER_UNIT]
    for unit in units:
        add(rows[unit.code], unit.code, 1)
        add(other, unit.code, -1)
    for code in (*roots, OTHER_UNIT):
        add(other, code, 1)
    other["polls"] = {key: n for key, n in other["polls"].items() if n}
    return {
        "townhall": townhall.admin(),
        "by": level,
        "units": list(rows.values()),
        "polls": [{"pid": p.pid, "question": p.question, "options": p.options} for p in polls],
    }


def unit_export_csv(report: dict[str, Any]) -> str:
    """One row per unit; a column per poll option (`<pid>:<option number> <option text>`) with its votes there."""
    poll_columns = [
        (f"{p['pid']}:{i}", f"{p['pid']}:{i} {text}") for p in report["polls"] for i, text in enumerate(p["options"])
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*UNIT_COLUMNS, *(title for _, title in poll_columns)])
    for row in report["units"]:
        writer.writerow([*(row[c] for c in UNIT_COLUMNS), *(row["polls"].get(key, 0) for key, _ in poll_columns)])
    return out.getvalue()
