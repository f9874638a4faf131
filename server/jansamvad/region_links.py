"""Region links: the join link of a unit, its QR code, its WhatsApp share text, the link page and the print sheet.

A link names the unit and the town hall: `/j/<unit code>?th=<town hall id>` (docs/protocol.md section 7). The link
page carries OpenGraph tags (a chat app's preview shows the town hall's title, the unit and a small image) and sends
the browser on to the citizen page with the unit, which the join API checks against the tree and signs into the
token. Everything here is pure rendering (no I/O); the routes are in regions_http.py.
"""

from __future__ import annotations

import functools
import io
from html import escape
from urllib.parse import quote, urlencode

import segno

from jansamvad.models import Status, Townhall
from jansamvad.regions import RegionTree, Unit

SHEET_PER_PAGE = 48  # cards per sheet request: 4 A4 pages of 12
QR_SCALE = 4


def link_path(code: str, th: str) -> str:
    return f"/j/{quote(code)}?{urlencode({'th': th})}"


def citizen_path(code: str, th: str) -> str:
    """Where the link page sends the browser: the citizen page, told the unit."""
    return "/?" + urlencode({"th": th, "unit": code})


@functools.lru_cache(maxsize=4096)
def _qr(url: str) -> segno.QRCode:
    # Medium error correction: a printed sheet or a phone photo of an LED screen survives some damage and glare.
    return segno.make(url, error="m", micro=False)


@functools.lru_cache(maxsize=4096)  # a shared link is previewed by every chat that shows it: ~1 KB each
def qr_svg(url: str) -> str:
    """An inline SVG (no XML declaration, no fixed size: CSS sizes it)."""
    return str(_qr(url).svg_inline(scale=QR_SCALE, border=2, omitsize=True))


@functools.lru_cache(maxsize=4096)
def qr_png(url: str) -> bytes:
    out = io.BytesIO()
    _qr(url).save(out, kind="png", scale=QR_SCALE * 2, border=2)
    return out.getvalue()


def unit_label_hi(tree: RegionTree, unit: Unit) -> str:
    """`गया (ज़िला)`, or for a unit below a district `बूथ 7 (बूथ), गया`: the name, its level, and its district."""
    label = f"{unit.name_hi} ({tree.level(unit.level).name_hi})"
    path = tree.path(unit.code)
    if len(path) > 2:  # name the unit under the root (the district in the default levels) for context
        label += f", {tree.units[path[1]].name_hi}"
    return label


def share_text(tree: RegionTree, unit: Unit, townhall: Townhall, url: str) -> str:
    """The Hindi message to paste into a WhatsApp group (the link on its own line, so it previews)."""
    return (
        f"📢 {townhall.title}\n"
        f"{unit_label_hi(tree, unit)} के साथियो, जन संवाद में सीधे जुड़िए: अपना सवाल पूछिए, सवालों पर वोट कीजिए "
        f"और नेता जी को लाइव सुनिए।\n"
        f"👉 {url}"
    )


def whatsapp_url(text: str) -> str:
    return "https://wa.me/?" + urlencode({"text": text})


_STATUS_HI = {Status.SCHEDULED: "जल्द शुरू होगा", Status.LIVE: "अभी लाइव", Status.ENDED: "समाप्त हो गया"}


def link_page(tree: RegionTree, unit: Unit, townhall: Townhall, base: str) -> str:
    """The `/j/<code>` page: OpenGraph tags for the preview, then on to the citizen page (a meta refresh: the
    pages' CSP allows no inline script, and a crawler reads the tags without following it)."""
    url = base + link_path(unit.code, townhall.id)
    image = base + f"/api/regions/{quote(unit.code)}/qr.png?{urlencode({'th': townhall.id})}"
    onward = citizen_path(unit.code, townhall.id)
    label = unit_label_hi(tree, unit)
    description = f"{label} · {unit.name_en} — सवाल पूछिए, वोट कीजिए, लाइव सुनिए ({_STATUS_HI[townhall.status]})"
    e = escape
    refresh = "" if townhall.status is Status.ENDED else f'<meta http-equiv="refresh" content="1; url={e(onward)}">'
    return f"""<!doctype html>
<html lang="hi">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(townhall.title)} — {e(unit.name_hi)}</title>
<meta name="description" content="{e(description)}">
<meta property="og:type" content="website">
<meta property="og:site_name" content="जन संवाद · JanSamvad">
<meta property="og:locale" content="hi_IN">
<meta property="og:title" content="{e(townhall.title)} — {e(unit.name_hi)}">
<meta property="og:description" content="{e(description)}">
<meta property="og:url" content="{e(url)}">
<meta property="og:image" content="{e(image)}">
<meta property="og:image:type" content="image/png">
<meta property="og:image:alt" content="{e(label)} का QR कोड">
<meta name="twitter:card" content="summary">
{refresh}
<style>
body {{ font-family: "Noto Sans Devanagari", "Noto Sans", sans-serif; margin: 0; padding: 1.5rem; text-align: center;
  background: #fff8ef; color: #222; }}
main {{ max-width: 28rem; margin: 0 auto; }}
a.go {{ display: inline-block; margin-top: 1rem; padding: .9rem 1.6rem; border-radius: .5rem; background: #c2410c;
  color: #fff; font-size: 1.2rem; text-decoration: none; }}
</style>
</head>
<body>
<main>
<h1>{e(townhall.title)}</h1>
<p data-unit="{e(unit.code)}"><strong>{e(label)}</strong><br>{e(unit.name_en)}</p>
<p>{e(_STATUS_HI[townhall.status])}</p>
<a class="go" href="{e(onward)}">जुड़िए · Join</a>
</main>
</body>
</html>
"""


def sheet_page(
    tree: RegionTree, unit: Unit, townhall: Townhall, base: str, units: list[Unit], page: int, pages: int, total: int
) -> str:
    """A4 print sheet: 12 cards a page (3 x 4), each with the QR code, the names and the short link."""
    e = escape
    cards = []
    for item in units:
        url = base + link_path(item.code, townhall.id)
        cards.append(
            f'<div class="card" data-unit="{e(item.code)}">{qr_svg(url)}'
            f'<p class="hi">{e(item.name_hi)}</p><p class="en">{e(item.name_en)}</p>'
            f'<p class="url">{e(url)}</p></div>'
        )
    nav = []
    for label, target in (("← पिछला", page - 1), ("अगला →", page + 1)):
        if 1 <= target <= pages:
            query = urlencode({"th": townhall.id, "page": target})
            nav.append(f'<a href="/api/regions/{quote(unit.code)}/sheet?{e(query)}">{label}</a>')
    return f"""<!doctype html>
<html lang="hi">
<head>
<meta charset="utf-8">
<title>{e(unit.name_hi)} — QR शीट {page}/{pages}</title>
<style>
@page {{ size: A4; margin: 10mm; }}
body {{ font-family: "Noto Sans Devanagari", "Noto Sans", sans-serif; margin: 0; color: #000; }}
header {{ margin: 0 0 4mm; }}
header h1 {{ font-size: 14pt; margin: 0; }}
header p {{ margin: 1mm 0; font-size: 10pt; }}
.grid {{ display: grid; grid-template-columns: repeat(3, 1fr); gap: 4mm; }}
.card {{ border: 0.3mm dashed #666; padding: 3mm; text-align: center; height: 62mm; box-sizing: border-box;
  break-inside: avoid; page-break-inside: avoid; overflow: hidden; }}
.card svg {{ width: 36mm; height: 36mm; }}
.card p {{ margin: 0.5mm 0; }}
.hi {{ font-size: 10pt; font-weight: bold; }}
.en {{ font-size: 8pt; }}
.url {{ font-size: 6.5pt; word-break: break-all; font-family: monospace; }}
.card:nth-child(12n) {{ break-after: page; page-break-after: always; }}
nav {{ margin: 4mm 0; }}
nav a {{ margin-right: 6mm; }}
@media print {{ nav {{ display: none; }} }}
</style>
</head>
<body>
<header>
<h1>{e(townhall.title)}</h1>
<p>{e(unit_label_hi(tree, unit))} · {e(unit.name_en)} — {total} लिंक, पेज {page}/{pages}</p>
<p>QR स्कैन करें या लिंक खोलें: नाम लिखें और सीधे जुड़ें। Scan, type a name, join.</p>
</header>
<nav>{" ".join(nav)}</nav>
<section class="grid">
{"".join(cards)}
</section>
</body>
</html>
"""
