"""The moderation policy: blocked-word lists and what to do with links, phone numbers and repeated text.

Lists and policy are data files a deployment changes without touching code: `policy.toml` and one
`blocklist.<name>.txt` per list (one word or phrase per line, `#` comments) in the moderation directory
(`--moderation-dir`; the defaults ship in `jansamvad/moderation/data/`).
"""

from __future__ import annotations

import enum
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from jansamvad.moderation.normalize import tokens

DEFAULT_DIR = Path(__file__).resolve().parent / "data"


class Action(enum.StrEnum):
    ALLOW = "allow"
    HOLD = "hold"  # pending for a human, with the reason shown
    REJECT = "reject"  # rejected automatically; kept for the audit log


@dataclass(frozen=True, slots=True)
class Policy:
    blocked: dict[str, frozenset[str]]  # list name -> normalised single words
    blocked_phrases: dict[str, tuple[tuple[str, ...], ...]]  # list name -> normalised multi-word phrases
    on_blocked_word: Action = Action.REJECT
    on_link: Action = Action.HOLD
    on_phone: Action = Action.HOLD
    on_repeat: Action = Action.REJECT
    repeat_similarity: float = 90.0  # rapidfuzz ratio (0-100) at which a user's question repeats an earlier one
    repeat_window: int = 20  # how many of the user's recent questions are compared
    allow_domains: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, directory: Path | None = None) -> Policy:
        directory = directory or DEFAULT_DIR
        settings: dict[str, object] = {}
        policy_file = directory / "policy.toml"
        if policy_file.exists():
            settings = tomllib.loads(policy_file.read_text(encoding="utf-8"))
        actions = settings.get("actions", {})
        repeat = settings.get("repeat", {})
        links = settings.get("links", {})
        assert isinstance(actions, dict) and isinstance(repeat, dict) and isinstance(links, dict)
        blocked: dict[str, frozenset[str]] = {}
        phrases: dict[str, tuple[tuple[str, ...], ...]] = {}
        for path in sorted(directory.glob("blocklist.*.txt")):
            name = path.name.removeprefix("blocklist.").removesuffix(".txt")
            words, multi = set(), []
            for line in path.read_text(encoding="utf-8").splitlines():
                entry = line.split("#", 1)[0].strip()
                if not entry:
                    continue
                normalised = tokens(entry)
                if len(normalised) == 1:
                    words.add(normalised[0])
                elif normalised:
                    multi.append(tuple(normalised))
            blocked[name] = frozenset(words)
            phrases[name] = tuple(multi)
        return cls(
            blocked=blocked,
            blocked_phrases=phrases,
            on_blocked_word=Action(actions.get("blocked_word", "reject")),
            on_link=Action(actions.get("link", "hold")),
            on_phone=Action(actions.get("phone", "hold")),
            on_repeat=Action(actions.get("repeated_text", "reject")),
            repeat_similarity=float(repeat.get("similarity", 90)),
            repeat_window=int(repeat.get("window", 20)),
            allow_domains=frozenset(str(d).lower() for d in links.get("allow_domains", [])),
        )


_LINK = re.compile(
    r"(?:https?://|www\.)\S+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|in|org|net|io|me|co|info|xyz|ly|gl|link|app)\b(?:/\S*)?",
    re.IGNORECASE,
)
# Indian mobile numbers (+91 optional, 10 digits starting 6-9) and other long digit runs, with spaces or dashes inside.
_PHONE = re.compile(r"(?:\+?\d[\s-]?){10,13}")
_DIGITS = str.maketrans("०१२३४५६७८९", "0123456789")


def find_links(text: str, allow: frozenset[str] = frozenset()) -> list[str]:
    found = []
    for match in _LINK.finditer(text):
        link = match.group(0).lower()
        host = re.sub(r"^(?:https?://)?(?:www\.)?", "", link).split("/")[0]
        if host not in allow:
            found.append(match.group(0))
    return found


def find_phones(text: str) -> list[str]:
    return [
        m.group(0).strip()
        for m in _PHONE.finditer(text.translate(_DIGITS))
        if sum(c.isdigit() for c in m.group(0)) >= 10
    ]
