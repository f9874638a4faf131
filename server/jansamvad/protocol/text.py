"""Cleaning of user text (names, questions, speech) before it is stored or shown to anyone."""

from __future__ import annotations

import re
import unicodedata

# Bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069) and the marks U+200E/U+200F can make a
# question render as something other than what was typed ("Trojan Source"); they are removed. ZWJ and ZWNJ
# (U+200D, U+200C) stay right after a character of an Indian script (Devanagari and its extension, and the block
# U+0980-0DFF: Bengali, Gurmukhi, Gujarati, Odia, Tamil, Telugu, Kannada, Malayalam, Sinhala), where they choose
# between conjunct and half forms (क्<ZWJ>ष, Bengali র<ZWJ>্য, Malayalam chillu ന്<ZWJ>); anywhere else (after Latin
# letters, digits, emoji, at the start) they only hide one text inside another, and are removed. Emoji ZWJ sequences
# therefore show as their separate emoji.
_JOINERS = re.compile(r"(?<![\u0900-\u0dff\ua8e0-\ua8ff])[\u200c\u200d]+|(?<=[\u200c\u200d])[\u200c\u200d]+")
_BIDI = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"))
_ZERO_WIDTH_OTHER = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"))
_SPACES = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\n{3,}")


def clean_text(value: str, *, multiline: bool = False) -> str:
    """NFC-normalised text without control, bidi-override or invisible characters, with tidy whitespace."""
    text = unicodedata.normalize("NFC", value).translate(_BIDI).translate(_ZERO_WIDTH_OTHER)
    text = _JOINERS.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    keep = "\n" if multiline else ""
    text = "".join(ch if (ch in keep or unicodedata.category(ch) != "Cc") else " " for ch in text)
    if not multiline:
        text = text.replace("\n", " ")
    text = _SPACES.sub(" ", text)
    text = _NEWLINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()
