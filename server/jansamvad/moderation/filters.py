"""The verdict on a new question: allow, hold for a human (with the reasons), or reject — before anyone sees it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

from jansamvad.moderation.normalize import comparable, spaced_out_words, tokens
from jansamvad.moderation.policy import Action, Policy, find_links, find_phones

_SEVERITY = {Action.ALLOW: 0, Action.HOLD: 1, Action.REJECT: 2}
# Blocked words at least this long also match as the start of a longer word ("chutiyapa"); shorter ones only whole,
# so "ass" does not catch "class" or "assistant" (the Scunthorpe problem).
_PREFIX_MATCH_MIN = 5


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reasons: tuple[str, ...]  # e.g. "blocked_word:hinglish", "link", "phone", "repeated_text"


ALLOWED = Verdict(Action.ALLOW, ())


def _blocked_lists(policy: Policy, words: list[str]) -> list[str]:
    candidates = words + spaced_out_words(words)
    hits = []
    for name, blocked in policy.blocked.items():
        long_words = [b for b in blocked if len(b) >= _PREFIX_MATCH_MIN]
        if any(w in blocked or any(w.startswith(b) for b in long_words) for w in candidates):
            hits.append(name)
            continue
        for phrase in policy.blocked_phrases.get(name, ()):
            n = len(phrase)
            if any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1)):
                hits.append(name)
                break
    return hits


def check(policy: Policy, text: str, recent_by_author: Sequence[str] = ()) -> Verdict:
    """The strongest action any rule asks for, with every reason that applied."""
    reasons: list[tuple[Action, str]] = []
    for name in _blocked_lists(policy, tokens(text)):
        reasons.append((policy.on_blocked_word, f"blocked_word:{name}"))
    if find_links(text, policy.allow_domains):
        reasons.append((policy.on_link, "link"))
    if find_phones(text):
        reasons.append((policy.on_phone, "phone"))
    key = comparable(text)
    for earlier in list(recent_by_author)[-policy.repeat_window :]:
        if key and fuzz.ratio(key, comparable(earlier)) >= policy.repeat_similarity:
            reasons.append((policy.on_repeat, "repeated_text"))
            break
    applied = [(action, why) for action, why in reasons if action is not Action.ALLOW]
    if not applied:
        return ALLOWED
    action = max((a for a, _ in applied), key=_SEVERITY.__getitem__)
    return Verdict(action, tuple(why for _, why in applied))
