"""The web client's weight and provenance, without a browser: the citizen page's total transfer (every file it can
load, as the node serves it, gzipped) stays within 60 KB, nothing comes from a CDN, and the vendored msgpack build is
the one the lock in client_web/vendor/VENDOR.md pins."""

from __future__ import annotations

import gzip
import hashlib
import re
import urllib.request
from pathlib import Path

from tests.browser.harness import REPO, Server

BUDGET_BYTES = 60 * 1024
CLIENT = REPO / "client_web"

_HTML_REF = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)\"""")
_JS_REF = re.compile(r"""(?:from\s*|import\s*\(\s*|href:\s*|=\s*)['"]((?:\.{1,2}/|/)[\w./-]+\.(?:js|css))['"]""")


def fetch(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=5) as r:
        assert r.status == 200, path
        return bytes(r.read())


def resolve(src: str, ref: str) -> str:
    if ref.startswith("/"):
        return ref
    parts = src.rsplit("/", 1)[0].split("/")
    for seg in ref.split("/"):
        if seg == "..":
            parts.pop()
        elif seg != ".":
            parts.append(seg)
    return "/".join(parts)


def citizen_files(srv: Server) -> dict[str, bytes]:
    """Everything the citizen page can fetch: its HTML, what the HTML links, every module those import (statically
    or dynamically), the service worker, and each language's strings."""
    page = srv.links["citizen"].removeprefix(srv.base)
    html = fetch(srv.base, page)
    files = {"/index.html": html}
    todo = [resolve("/index.html", ref) for ref in _HTML_REF.findall(html.decode()) if not ref.startswith("data:")]
    todo += ["/sw.js"] + [f"/i18n/{p.name}" for p in sorted((CLIENT / "i18n").glob("*.js"))]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        body = fetch(srv.base, path)
        files[path] = body
        if path.endswith(".js") and not path.startswith("/vendor/"):
            todo += [resolve(path, ref) for ref in _JS_REF.findall(body.decode())]
    return files


def test_citizen_page_fits_the_budget(demo_server: Server) -> None:
    files = citizen_files(demo_server)
    for must in ("/css/app.css", "/js/citizen.js", "/js/conn.js", "/js/audio.js", "/vendor/msgpack.min.js"):
        assert must in files, f"{must} not found from the citizen page: {sorted(files)}"
    sizes = {path: (len(body), len(gzip.compress(body, compresslevel=6))) for path, body in files.items()}
    total_raw = sum(raw for raw, _ in sizes.values())
    total_gz = sum(gz for _, gz in sizes.values())
    for path, (raw, gz) in sorted(sizes.items(), key=lambda kv: -kv[1][1]):
        print(f"{path:28} {raw:7} B {gz:6} B gzip")
    print(f"{'total':28} {total_raw:7} B {total_gz:6} B gzip (budget {BUDGET_BYTES})")
    assert total_gz <= BUDGET_BYTES, f"citizen page is {total_gz} B gzipped, over the {BUDGET_BYTES} B budget"


def test_pages_load_nothing_from_elsewhere() -> None:
    for page in ("index.html", "leader.html", "moderator.html"):
        html = (CLIENT / page).read_text()
        for ref in _HTML_REF.findall(html):
            assert ref.startswith(("/", "data:")) and not ref.startswith("//"), f"{page} loads {ref}"
    for js in (CLIENT / "js").glob("*.js"):
        text = js.read_text().replace("'http://www.w3.org/2000/svg'", "")  # an XML namespace, never fetched
        assert not re.search(r"""['"`]https?://""", text), f"{js.name} names another host"


def test_vendored_msgpack_matches_the_lock() -> None:
    lock = (CLIENT / "vendor" / "VENDOR.md").read_text()
    m = re.search(
        r"^([0-9a-f]{64})  msgpack\.min\.js  @msgpack/msgpack@(3\.\d+\.\d+)  dist\.umd/msgpack\.min\.js$", lock, re.M
    )
    assert m, "no lock line for msgpack.min.js in client_web/vendor/VENDOR.md"
    digest = hashlib.sha256((CLIENT / "vendor" / "msgpack.min.js").read_bytes()).hexdigest()
    assert digest == m.group(1), "client_web/vendor/msgpack.min.js differs from the lock: run scripts/refresh_vendor.sh"


def test_both_languages_have_the_same_strings() -> None:
    keys = {}
    for path in (CLIENT / "i18n").glob("*.js"):
        keys[path.stem] = set(re.findall(r"""^\s+'?([\w.]+)'?: ['"]""", path.read_text(), re.M))
    assert keys["hi"] and keys["hi"] == keys["en"], keys["hi"] ^ keys["en"]
    used: set[str] = set()
    for path in [*CLIENT.glob("*.html"), *(CLIENT / "js").glob("*.js")]:
        if path.name == "i18n.js":
            continue  # the module that defines t() and data-i18n
        text = path.read_text()
        used |= set(re.findall(r"""data-i18n(?:-ph|-label|-title)?="([\w.]+)\"""", text))
        used |= set(re.findall(r"""\bt\(\s*'([\w.]+)'""", text))
    assert used <= keys["hi"], f"strings used but not defined: {sorted(used - keys['hi'])}"


def test_budget_counts_what_is_served(demo_server: Server) -> None:
    # The node serves client_web/ as it is in the repository (no build step between them).
    assert fetch(demo_server.base, "/js/conn.js") == Path(CLIENT / "js" / "conn.js").read_bytes()
