"""Text normalisation for matching, built to undo the usual evasions of word filters.

Undone: letter case; repeated letters ("fuuuck"); spaces or punctuation inside words ("f.u.c.k", "f u c k");
digits and symbols for letters ("sh1t", "@ss"); zero-width characters; look-alike letters across Latin, Cyrillic and
Greek ("сhutiya" with a Cyrillic с); Hinglish's free spelling of long vowels ("chootiya"); Devanagari nukta
variants (क़ / क + ़ / क), candrabindu for anusvara, and the ZWJ / ZWNJ that change only the rendering of a conjunct.

The output is for matching only: what users see is never rewritten.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from confusable_homoglyphs import confusables

# Digits and symbols people use for Latin letters (leetspeak). Applied only inside tokens that hold Latin letters,
# so numbers on their own ("2024", "100") stay numbers.
_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "+": "t",
    }
)
# Lower-case Cyrillic letters that look like Latin small capitals; the confusables table maps only their capitals.
_EXTRA_LOOKALIKES = {"к": "k", "м": "m", "т": "t", "н": "h", "в": "b", "ь": "b", "п": "n", "г": "r", "и": "u"}
# Hinglish has no fixed spelling: long vowels are written doubled or not ("choot", "chut"), "ph" and "f" alternate.
_PHONETIC = (("oo", "u"), ("ee", "i"), ("aa", "a"), ("ph", "f"))
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u034f"))
_NUKTA = "\u093c"
_DEVANAGARI = re.compile(r"[\u0900-\u097f]")
_TOKEN_SPLIT = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w@$!|+]", re.UNICODE)


@lru_cache(maxsize=1)
def _lookalikes() -> dict[int, str]:
    """Non-Latin letters that look like a Latin letter or digit, from the Unicode confusables data."""
    table: dict[int, str] = {}
    for char, homoglyphs in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii() or _DEVANAGARI.match(char):
            continue
        for glyph in homoglyphs:
            target = glyph["c"]
            if len(target) == 1 and target.isascii() and target.isalnum():
                table[ord(char)] = target.lower()
                break
    for char, target in _EXTRA_LOOKALIKES.items():
        table[ord(char)] = target
    return table


def _fold_devanagari(token: str) -> str:
    # NFD splits the composed nukta letters (क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़), then the nukta goes; candrabindu becomes anusvara.
    token = unicodedata.normalize("NFD", token).replace(_NUKTA, "").replace("\u0901", "\u0902")
    return unicodedata.normalize("NFC", token)


def collapse_repeats(token: str) -> str:
    """ "fuuuuck" -> "fuck", "चूूूतिया" -> "चूतिया"; also "good" -> "god", so word lists are collapsed the same way."""
    return re.sub(r"(.)\1+", r"\1", token)


def normalize_token(raw: str) -> str:
    token = unicodedata.normalize("NFKC", raw).translate(_INVISIBLE).casefold()
    if _DEVANAGARI.search(token):
        token = _fold_devanagari(token)
    lookalikes = _lookalikes()
    if any(ord(ch) in lookalikes for ch in token) or any("a" <= ch <= "z" for ch in token):
        token = token.translate(lookalikes)
        if any("a" <= ch <= "z" for ch in token):
            token = token.translate(_LEET)
            for written, sound in _PHONETIC:
                token = token.replace(written, sound)
    token = _NOT_WORD.sub("", token).replace("_", "")
    return collapse_repeats(token)


def tokens(text: str) -> list[str]:
    """Normalised words of `text`, in order, empty ones dropped."""
    out = []
    for raw in _TOKEN_SPLIT.split(text):
        token = normalize_token(raw)
        if token:
            out.append(token)
    return out


def spaced_out_words(words: list[str]) -> list[str]:
    """Words spelt out letter by letter ("f u c k", "च ू त") joined back, so they can be matched as one word."""
    joined: list[str] = []
    run: list[str] = []
    for word in words + [""]:
        if 0 < len(word) <= 2 and not word.isdigit():
            run.append(word)
            continue
        if len(run) >= 3:
            joined.append(collapse_repeats("".join(run)))
        run = []
    return joined


def comparable(text: str) -> str:
    """A canonical form for similarity (near-duplicate grouping): normalised words joined by single spaces."""
    return " ".join(tokens(text))
