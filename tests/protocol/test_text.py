from __future__ import annotations

from jansamvad.protocol.text import clean_text


def test_clean_text_removes_bidi_overrides() -> None:
    assert clean_text("abc\u202edcba\u202c") == "abcdcba"
    assert clean_text("\u2066x\u2069") == "x"


def test_clean_text_keeps_zwj_and_zwnj_for_devanagari() -> None:
    assert clean_text("क्\u200dष") == "क्\u200dष"
    assert clean_text("क्\u200cष") == "क्\u200cष"


def test_clean_text_removes_zwj_and_zwnj_outside_devanagari() -> None:
    # docs/security.md: the joiners are kept only where Devanagari needs them, right after a Devanagari character.
    assert clean_text("pay\u200dpal") == "paypal"
    assert clean_text("\u200cक्ष") == "क्ष"
    assert clean_text("12\u200c3") == "123"
    assert clean_text("\U0001f468\u200d\U0001f469") == "\U0001f468\U0001f469"
    assert clean_text("क्\u200d\u200d\u200cष") == "क्\u200dष"  # one joiner is all a conjunct needs


def test_clean_text_keeps_joiners_in_other_indian_scripts() -> None:
    # The same rule for every Indian script, not Devanagari alone: Bengali's ya-phala after a ra (র‍্য) and the
    # old-style Malayalam chillu (ന്‍) change their shape without the joiner.
    assert clean_text("র\u200d্যাব") == "র\u200d্যাব"
    assert clean_text("അവന്\u200d") == "അവന്\u200d"
    assert clean_text("ਕ\u200c੍ਸ") == "ਕ\u200c੍ਸ"  # Gurmukhi


def test_clean_text_replaces_control_characters_with_space() -> None:
    assert clean_text("a\x00b\x07c\x1b[31m") == "a b c [31m"


def test_clean_text_single_line_joins_lines() -> None:
    assert clean_text("  पहली\nदूसरी\r\nतीसरी  ") == "पहली दूसरी तीसरी"


def test_clean_text_multiline_keeps_paragraphs_but_not_runs() -> None:
    assert clean_text("a\n\n\n\n\nb\n c ", multiline=True) == "a\n\nb\nc"


def test_clean_text_normalises_to_nfc() -> None:
    # U+0958 (क़) is a composition exclusion: NFC turns it into क + nukta, so both spellings compare equal.
    assert clean_text("e\u0301") == "\u00e9"
    assert clean_text("\u0915\u093c") == clean_text("\u0958")


def test_clean_text_removes_invisible_characters() -> None:
    assert clean_text("spa\u200bm\ufeff") == "spam"
