"""The booth screen's page must parse on the older browsers of smart TVs and LED screen boxes (Chrome 66-79 based:
ES modules and `catch {}`, but no optional chaining `?.` and no `??`). A syntax error in any module it loads
statically, or in conn.js, leaves the screen blank; audio.js is loaded with a fallback and may use newer syntax."""

from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[1] / "client_web"
IMPORT = re.compile(r"""(?:^|\s)(?:import\s[^'"]*?from\s*|import\s*\(\s*)['"](\.{1,2}/[^'"]+)['"]""")
# Comments and string literals first (a Hindi text or a comment may well contain `??`); template literals keep
# their ${...} expressions, which are code.
COMMENT_OR_STRING = re.compile(r"""//[^\n]*|/\*.*?\*/|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*\"""", re.S)
NEWER_SYNTAX = re.compile(r"\?\.(?!\d)|\?\?")


def code_of(js: str) -> str:
    return COMMENT_OR_STRING.sub(lambda m: "" if m.group().startswith("/") else '""', js)


def modules_of_screen() -> list[Path]:
    """screen.js and every module it imports (statically, or conn.js dynamically), transitively; not audio.js."""
    seen: list[Path] = []
    todo = [WEB / "js" / "screen.js"]
    while todo:
        path = todo.pop().resolve()
        if path in seen:
            continue
        seen.append(path)
        for target in IMPORT.findall(path.read_text(encoding="utf-8")):
            if "${" not in target and not target.endswith("audio.js"):
                todo.append(path.parent / target)
    return seen


def test_screen_page_modules_have_no_syntax_older_tv_browsers_cannot_parse() -> None:
    modules = modules_of_screen()
    names = {p.name for p in modules}
    assert {"screen.js", "ui.js", "i18n.js", "conn.js", "hi.js"} <= names, names
    found = {
        p.name: sorted({m.group() for m in NEWER_SYNTAX.finditer(code_of(p.read_text(encoding="utf-8")))})
        for p in modules
    }
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_screen_page_syntax_check_sees_what_it_looks_for() -> None:
    # The check itself: it finds both operators in code, and not in comments or strings.
    assert NEWER_SYNTAX.findall(code_of("const a = b?.c ?? d; // e?.f\nconst s = 'x ?? y';")) == ["?.", "??"]
    assert NEWER_SYNTAX.findall(code_of("const n = cond ? .5 : 1;")) == []
