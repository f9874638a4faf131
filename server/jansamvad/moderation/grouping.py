"""Near-duplicate grouping: questions that say the same thing share a group, so moderators and the leader see themes.

Similarity is rapidfuzz's token-set ratio on normalised text (word order and repeated words do not matter). A very
short question is compared with the stricter token-sort ratio, since every short word set is a subset of some long
question. A group is named by its first question's id; its representative text is that first question's.
"""

from __future__ import annotations

from rapidfuzz import fuzz, process

from jansamvad.moderation.normalize import comparable

_SHORT = 3  # questions of fewer normalised words than this are compared strictly


class QuestionGrouper:
    """Per town hall. Holds at most `max_groups` representatives (the newest); older themes stop attracting."""

    def __init__(self, threshold: float = 85.0, max_groups: int = 5000) -> None:
        self.threshold = threshold
        self.max_groups = max_groups
        self._keys: list[str] = []
        self._groups: list[str] = []

    def __len__(self) -> int:
        return len(self._groups)

    def match(self, text: str) -> str | None:
        """The group a question resembles, or None."""
        key = comparable(text)
        if key and self._keys:
            scorer = fuzz.token_set_ratio if len(key.split()) >= _SHORT else fuzz.token_sort_ratio
            match = process.extractOne(key, self._keys, scorer=scorer, score_cutoff=self.threshold)
            if match is not None:
                candidate = self._keys[match[2]]
                # token_set_ratio calls a short text a perfect match of any longer one that contains its words;
                # require the representative to be long enough as well.
                if scorer is fuzz.token_sort_ratio or len(candidate.split()) >= _SHORT:
                    return self._groups[match[2]]
        return None

    def add(self, group: str, text: str) -> None:
        """Remember a group's representative text (also used to rebuild the grouper from the store)."""
        self._keys.append(comparable(text))
        self._groups.append(group)
        if len(self._keys) > self.max_groups:
            del self._keys[0], self._groups[0]
