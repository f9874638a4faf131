"""A town hall's record for the war room: every question with its decisions, votes, group, author pseudonym and
region; poll results; the audit log. As JSON (everything) or CSV (one row per question)."""

from __future__ import annotations

import csv
import io
from typing import Any

from jansamvad.models import PollState, QState, Townhall
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
