"""Programmes: a town hall as one item of a schedule (issue 18), and how a programme is told to people.

A programme is the schedule of one town hall: when it starts, who speaks, what it is about. The town hall itself
(title, language, status scheduled -> live -> ended) stays the one record in the store; the programme only adds the
facts a citizen needs before it begins. Cancelling a programme ends its town hall (nobody can join a cancelled one)
and marks the programme cancelled, so the programme page says so instead of listing it as a past recording.

Times are stored as UTC milliseconds and shown in India Standard Time, which has no daylight saving: a fixed
UTC+05:30 is exact, and pages say "IST" next to every time so nobody has to guess. The calendar file (RFC 5545) is
written here by hand: one VEVENT, UTC times, escaped and folded text. It is small and has no dependency; the tests
read it back with the `icalendar` library.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from jansamvad.models import Status, Townhall, now_ms
from jansamvad.region_links import whatsapp_url

IST = timezone(timedelta(hours=5, minutes=30), "IST")
MAX_LEADER_CHARS = 80
MAX_DESCRIPTION_CHARS = 500
MIN_DURATION_MIN = 15
MAX_DURATION_MIN = 600
DEFAULT_DURATION_MIN = 60
# How far ahead a programme may be scheduled, and how far back (an admin entering one that just began).
MAX_AHEAD_DAYS = 366
MAX_BEHIND_DAYS = 1
REMINDER_MIN = 15  # the calendar file's alarm, before the start

_MONTHS_HI = (
    "जनवरी",
    "फ़रवरी",
    "मार्च",
    "अप्रैल",
    "मई",
    "जून",
    "जुलाई",
    "अगस्त",
    "सितंबर",
    "अक्टूबर",
    "नवंबर",
    "दिसंबर",
)
_WEEKDAYS_HI = ("सोमवार", "मंगलवार", "बुधवार", "गुरुवार", "शुक्रवार", "शनिवार", "रविवार")


@dataclass(slots=True)
class Programme:
    """The schedule of one town hall (its id is `th`)."""

    th: str
    starts_ms: int
    leader: str
    description: str = ""
    duration_min: int = DEFAULT_DURATION_MIN
    cancelled: bool = False
    version: int = 1  # raised by every edit: the calendar file's SEQUENCE, so calendars take the newest
    updated_ms: int = field(default_factory=now_ms)

    @property
    def ends_ms(self) -> int:
        return self.starts_ms + self.duration_min * 60_000

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Programme:
        data = json.loads(raw)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def ist(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, IST)


def parse_start(value: object) -> int:
    """An ISO 8601 date and time with its offset ("2026-12-04T19:00+05:30" or "...Z") -> UTC ms.
    Without an offset the time is IST (what an organiser in India means). ValueError when it is not one."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("expected an ISO 8601 date and time, e.g. 2026-12-04T19:00+05:30")
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    return int(moment.timestamp() * 1000)


def day_part_hi(hour: int) -> str:
    """The part of the day a Hindi speaker names with a time: सुबह 9 बजे, दोपहर 2 बजे, शाम 7 बजे, रात 10 बजे."""
    if 4 <= hour < 12:
        return "सुबह"
    if 12 <= hour < 16:
        return "दोपहर"
    if 16 <= hour < 20:
        return "शाम"
    return "रात"


def time_hi(ms: int) -> str:
    """ "शाम 7:00 बजे IST"."""
    moment = ist(ms)
    hour12 = moment.hour % 12 or 12
    return f"{day_part_hi(moment.hour)} {hour12}:{moment.minute:02d} बजे IST"


def date_hi(ms: int) -> str:
    """ "शुक्रवार, 4 दिसंबर 2026"."""
    moment = ist(ms)
    return f"{_WEEKDAYS_HI[moment.weekday()]}, {moment.day} {_MONTHS_HI[moment.month - 1]} {moment.year}"


def time_en(ms: int) -> str:
    """ "7:00 pm IST"."""
    moment = ist(ms)
    hour12 = moment.hour % 12 or 12
    return f"{hour12}:{moment.minute:02d} {'am' if moment.hour < 12 else 'pm'} IST"


def date_en(ms: int) -> str:
    """ "Friday, 4 December 2026"."""
    moment = ist(ms)
    return f"{moment.strftime('%A')}, {moment.day} {moment.strftime('%B')} {moment.year}"


def join_path(th: str) -> str:
    return f"/?th={quote(th, safe='')}"


def ics_path(th: str) -> str:
    return f"/programmes/{quote(th, safe='')}.ics"


def record_path(th: str) -> str:
    """Where a past town hall's record lives (the record page, issue 18 item 3)."""
    return f"/record/{quote(th, safe='')}"


def share_text(townhall: Townhall, programme: Programme, base: str) -> str:
    """The Hindi message for a WhatsApp group: what, who, when (IST), then the link on its own line so it previews."""
    lines = [
        f"📢 जनसंवाद: {townhall.title}",
        f"🗣️ {programme.leader}",
        f"🗓️ {date_hi(programme.starts_ms)}, {time_hi(programme.starts_ms)}",
    ]
    if programme.description:
        lines.append(programme.description)
    lines.append("सीधे जुड़िए, अपना सवाल पूछिए और सवालों पर वोट कीजिए:")
    lines.append(f"👉 {base}{join_path(townhall.id)}")
    lines.append(f"🔔 कैलेंडर में जोड़ें: {base}{ics_path(townhall.id)}")
    return "\n".join(lines)


def public_json(townhall: Townhall, programme: Programme, base: str) -> dict[str, Any]:
    """What anyone may read about a programme (the lobby and the programme list use it)."""
    text = share_text(townhall, programme, base)
    return {
        "th": townhall.id,
        "title": townhall.title,
        "lang": townhall.lang,
        "status": str(townhall.status),
        "leader": programme.leader,
        "description": programme.description,
        "starts_ms": programme.starts_ms,
        "starts_at": ist(programme.starts_ms).isoformat(timespec="minutes"),
        "duration_min": programme.duration_min,
        "cancelled": programme.cancelled,
        "when_hi": f"{date_hi(programme.starts_ms)}, {time_hi(programme.starts_ms)}",
        "when_en": f"{date_en(programme.starts_ms)}, {time_en(programme.starts_ms)}",
        "join_url": base + join_path(townhall.id),
        "ics_url": base + ics_path(townhall.id),
        # A cancelled programme ended without taking place: it has no record.
        "record_url": (
            base + record_path(townhall.id) if townhall.status is Status.ENDED and not programme.cancelled else None
        ),
        "share_text": text,
        "whatsapp_url": whatsapp_url(text),
    }


# The calendar file (RFC 5545)


def _ics_escape(text: str) -> str:
    """TEXT values (RFC 5545 3.3.11): backslash, semicolon, comma and newline escaped."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\r\n", "\n").replace("\n", "\\n")


def _fold(line: str) -> str:
    """Content lines of at most 75 octets (RFC 5545 3.1), never splitting a UTF-8 character."""
    out: list[str] = []
    current = ""
    size = 0
    limit = 75
    for ch in line:
        width = len(ch.encode())
        if size + width > limit:
            out.append(current)
            current, size, limit = " ", 1, 75  # a continuation line starts with one space, which counts
        current += ch
        size += width
    out.append(current)
    return "\r\n".join(out)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar_file(townhall: Townhall, programme: Programme, base: str) -> str:
    """One VEVENT with the join link, UTC start and end, and a reminder; cancelled programmes say STATUS:CANCELLED
    (a calendar that imported it earlier shows it cancelled when the file is opened again)."""
    join = base + join_path(townhall.id)
    description = "\n".join(
        part
        for part in (
            f"{programme.leader} · {date_hi(programme.starts_ms)}, {time_hi(programme.starts_ms)}",
            programme.description,
            f"जुड़ें: {join}",
        )
        if part
    )
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//JanSamvad//Programmes//HI",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{townhall.id}@jansamvad",
        f"DTSTAMP:{_utc(programme.updated_ms)}",
        f"DTSTART:{_utc(programme.starts_ms)}",
        f"DTEND:{_utc(programme.ends_ms)}",
        f"SEQUENCE:{programme.version}",
        f"SUMMARY:{_ics_escape(townhall.title)}",
        f"DESCRIPTION:{_ics_escape(description)}",
        f"URL:{join}",
        f"LOCATION:{_ics_escape(join)}",
        f"STATUS:{'CANCELLED' if programme.cancelled else 'CONFIRMED'}",
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        f"TRIGGER:-PT{REMINDER_MIN}M",
        f"DESCRIPTION:{_ics_escape(townhall.title)}",
        "END:VALARM",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(_fold(line) + "\r\n" for line in lines)
