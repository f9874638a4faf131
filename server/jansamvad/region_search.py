"""Find region units by the first letters of their name, typed in Devanagari or in Latin letters (Hinglish too).

Every name gets a few *keys*: a loose Latin form of the English name and of the Hindi name transliterated
(indic-transliteration, Devanagari → IAST), of the whole name and, above the lowest level, of every later word of it.
A query, in either script, gets the same treatment and matches a key it is a prefix of. The loose form is what
makes "muzaffarpur", "mujaffarpur" and "muzaffarapura" (and मुज़फ़्फ़रपुर, मुजफ्फरपुर) one thing: it drops the
short `a` (so the schwa that Hindi does not say, and a typist does not type, makes no difference), aspiration
(bh/b, sh/s, ph/f/p), doubled letters, the nukta's Latin spellings (z/j, f/ph, q/k), m/n (the anusvara),
long/short vowels (ā/a, ee/i, oo/u) and e/i, o/u. It is deliberately loose: the ranking puts the units whose
name starts with exactly what was typed first, and higher levels before lower ones.

Lookup is a binary search in one sorted key list per level, then a walk over the matches: O(log n + results).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable

from jansamvad.regions import RegionTree, Unit

MAX_QUERY_CHARS = 40
MAX_LIMIT = 50
_DEVANAGARI = re.compile(r"[\u0900-\u097F]")
_NUKTA = "\u093c"
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_ASPIRATE = re.compile(r"(?<=[bcdgjklmnprstvy])h")
_REPEAT = re.compile(r"(.)\1+")
# e/i and o/u are one letter each, so that "ee" and "oo" stay prefix-safe while typed ("se" → "seeta" = सीता).
_LATIN_FOLDS = (("e", "i"), ("o", "u"), ("w", "v"), ("z", "j"), ("f", "p"), ("q", "k"), ("x", "ks"))


def devanagari_key(text: str) -> str:
    """NFC, without nukta, chandrabindu as anusvara, no joiners or spaces: मुजफ्फरपुर == मुज़फ़्फ़रपुर."""
    decomposed = unicodedata.normalize("NFD", text)
    decomposed = decomposed.replace(_NUKTA, "").replace("\u0901", "\u0902").replace("\u200c", "").replace("\u200d", "")
    return "".join(unicodedata.normalize("NFC", decomposed).split())


@functools.lru_cache(maxsize=200_000)
def _word_key(word: str) -> str:
    if _DEVANAGARI.search(word):
        # Imported on first use: 0.1 s that a node without a region tree (and the CLI) need not spend at start.
        from indic_transliteration import sanscript

        word = str(sanscript.transliterate(word, sanscript.DEVANAGARI, sanscript.IAST))
    s = word.lower().replace("ṛ", "ri").replace("r̥", "ri")
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    s = _NOT_ALNUM.sub("", s)
    for old, new in _LATIN_FOLDS:
        s = s.replace(old, new)
    s = _ASPIRATE.sub("", s)
    # m and n are one letter here: the anusvara (गंज = gaṃja) is typed either way ("ganj", "champaran").
    return _REPEAT.sub(r"\1", s).replace("a", "").replace("m", "n")


def loose_key(text: str) -> str:
    """The loose Latin form (module docstring) of a name or a query, in either script. Word by word (names share
    words: the cache makes 1 lakh booths cheap), the same for names and queries, so a typed prefix stays a prefix."""
    return _REPEAT.sub(r"\1", "".join(_word_key(word) for word in unicodedata.normalize("NFC", text).split()))


def _plain(text: str) -> str:
    """For ranking: what was typed, compared as written (case and spaces aside)."""
    return "".join(devanagari_key(text).lower().split())


class RegionIndex:
    """An immutable search index over one tree (build it again when the tree changes)."""

    def __init__(self, tree: RegionTree) -> None:
        self.tree = tree
        # One string per entry, key NUL code: sorting strings is several times faster than sorting tuples.
        per_level: dict[str, set[str]] = {level.id: set() for level in tree.levels}
        leaf = tree.levels[-1].id
        # Each unit's own keys and the size of its subtree: a search within a small subtree (the booths of one
        # district) walks the subtree instead of every unit in the state that shares the prefix.
        # (The entry strings themselves: a prefix never contains NUL, so an entry starts with it iff its key does.)
        self._unit_entries: dict[str, tuple[str, ...]] = {}
        self._subtree_size: dict[str, int] = dict.fromkeys(tree.units, 0)
        for unit in tree.units.values():
            entries = tuple(f"{key}\0{unit.code}" for key in dict.fromkeys(self._keys(unit, words=unit.level != leaf)))
            self._unit_entries[unit.code] = entries
            per_level[unit.level].update(entries)
            for ancestor in tree.path(unit.code)[:-1]:
                self._subtree_size[ancestor] += 1
        self._entries: dict[str, list[str]] = {level: sorted(entries) for level, entries in per_level.items()}
        self._by_upper_code = {code.upper(): code for code in tree.units}

    @staticmethod
    def _keys(unit: Unit, *, words: bool) -> Iterable[str]:
        """Keys of the whole name and (above the leaf level, whose names repeat their parents' words) of every
        later word of it, so that "champaran" finds पश्चिम चम्पारण."""
        for name in (unit.name_hi, unit.name_en):
            parts = name.split()
            starts = range(len(parts)) if words else range(1)
            for i in starts:
                key = loose_key(" ".join(parts[i:]))
                if key:
                    yield key

    def search(self, query: str, *, level: str | None = None, within: str | None = None, limit: int = 10) -> list[Unit]:
        """Units matching `query` (see the module docstring), best first. `level` and `within` (a unit code: only
        its subtree) narrow the search; an empty query with `within` lists that subtree's units."""
        tree = self.tree
        levels = [level] if level else [lv.id for lv in tree.levels]
        query = " ".join(unicodedata.normalize("NFC", query).split())
        if not query:
            if not within:
                return []
            return list(itertools.islice(tree.iter_descendants(within, level), limit))
        found: dict[str, Unit] = {}
        exact = self._by_upper_code.get(query.upper())
        if exact is not None and exact in tree.units:
            unit = tree.units[exact]
            if unit.level in levels and (not within or tree.within(exact, within)):
                found[exact] = unit
        # A Devanagari query is transliterated like the Hindi names were: one kind of key serves both scripts.
        prefixes = [p for p in (loose_key(query),) if p]
        # Enough candidates to rank: the best `limit` by typed-prefix, level and name are among them.
        wanted = limit * 4
        for level_id in levels:
            entries = self._entries[level_id]
            ranges = [(bisect.bisect_left(entries, p), bisect.bisect_left(entries, p + "\U0010ffff")) for p in prefixes]
            if within and self._subtree_size[within] < sum(hi - lo for lo, hi in ranges):
                for unit in tree.iter_descendants(within, level_id):
                    if len(found) >= wanted:
                        break
                    if any(entry.startswith(p) for entry in self._unit_entries[unit.code] for p in prefixes):
                        found.setdefault(unit.code, unit)
            else:
                for lo, hi in ranges:
                    for i in range(lo, hi):  # not a slice: "g" matches thousands, we need a few
                        if len(found) >= wanted:
                            break
                        code = entries[i].rpartition("\0")[2]
                        if code not in found and (not within or tree.within(code, within)):
                            found[code] = tree.units[code]
            if len(found) >= wanted:
                break
        typed = _plain(query)

        def rank(unit: Unit) -> tuple[int, int, str]:
            starts = _plain(unit.name_hi).startswith(typed) or _plain(unit.name_en).startswith(typed)
            return (0 if unit.code == exact else 1 if starts else 2, tree.depth_of_level[unit.level], unit.name_en)

        return sorted(found.values(), key=rank)[:limit]
