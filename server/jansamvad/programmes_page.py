"""The public programme page (issue 18), rendered: which programmes show in which section, and the HTML.

Pure functions of the programmes and town halls (no store, no request), apart from the routes in programmes_http.py
so the page can be read and tested on its own. Hindi first, English with `?lang=en`; server-rendered with no script
and one inline style block, so it opens on 2G.
"""

from __future__ import annotations

from html import escape

from jansamvad.models import Status, Townhall, now_ms
from jansamvad.programmes import (
    Programme,
    date_en,
    date_hi,
    ics_path,
    join_path,
    record_path,
    share_text,
    time_en,
    time_hi,
)
from jansamvad.region_links import whatsapp_url

PAST_ON_PAGE = 30  # past programmes the page lists, newest first


def sections(items: list[tuple[Townhall, Programme]]) -> dict[str, list[tuple[Townhall, Programme]]]:
    """live now; upcoming (earliest first; a cancelled one stays listed, marked, until its time has passed); past
    (newest first; cancelled ones are not past programmes: nothing happened)."""
    now = now_ms()
    live = [(t, p) for t, p in items if t.status is Status.LIVE]
    upcoming = [
        (t, p)
        for t, p in items
        if (t.status is Status.SCHEDULED and not p.cancelled) or (p.cancelled and p.ends_ms > now)
    ]
    past = [(t, p) for t, p in items if t.status is Status.ENDED and not p.cancelled]
    past.sort(key=lambda tp: -tp[1].starts_ms)
    return {"live": live, "upcoming": upcoming, "past": past[:PAST_ON_PAGE]}


# The page: Hindi first, English with ?lang=en. Every text is escaped; no script, one inline style block.

_WORDS = {
    "hi": {
        "title": "कार्यक्रम",
        "app": "जनसंवाद",
        "intro": "आने वाले जनसंवाद: समय पर जुड़िए, अपना सवाल पहले से पूछिए।",
        "other": "English",
        "other_lang": "en",
        "live": "अभी लाइव",
        "upcoming": "आने वाले कार्यक्रम",
        "past": "पिछले कार्यक्रम",
        "none_upcoming": "अभी कोई कार्यक्रम तय नहीं है।",
        "leader": "वक्ता",
        "lang": "भाषा",
        "join_live": "अभी जुड़ें",
        "lobby": "जुड़ें और सवाल पूछें",
        "calendar": "कैलेंडर में जोड़ें",
        "share": "WhatsApp पर भेजें",
        "record": "रिकॉर्ड देखें और सुनें",
        "cancelled": "रद्द",
        "hi": "हिन्दी",
        "en": "अंग्रेज़ी",
    },
    "en": {
        "title": "Programmes",
        "app": "JanSamvad",
        "intro": "Upcoming town halls: join on time, ask your question in advance.",
        "other": "हिन्दी",
        "other_lang": "hi",
        "live": "Live now",
        "upcoming": "Upcoming",
        "past": "Past programmes",
        "none_upcoming": "No programme is scheduled yet.",
        "leader": "Speaker",
        "lang": "Language",
        "join_live": "Join now",
        "lobby": "Join and ask",
        "calendar": "Add to calendar",
        "share": "Share on WhatsApp",
        "record": "Read and listen to the record",
        "cancelled": "Cancelled",
        "hi": "Hindi",
        "en": "English",
    },
}

_STYLE = (
    "*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,'Noto Sans Devanagari',sans-serif;"
    "background:#f4f6f9;color:#1b2430}header{background:#0f3d6e;color:#fff;padding:12px 16px;display:flex;"
    "align-items:center;justify-content:space-between;gap:8px}header h1{margin:0;font-size:1.25rem}"
    "header a{color:#fff;border:1px solid #fff8;border-radius:6px;padding:4px 10px;text-decoration:none}"
    "main{max-width:40rem;margin:auto;padding:8px 12px 24px}h2{font-size:1.1rem;margin:20px 0 8px}"
    ".card{background:#fff;border-radius:10px;padding:12px 14px;margin:0 0 12px;box-shadow:0 1px 2px #0002}"
    ".card h3{margin:0 0 4px;font-size:1.05rem}.when{font-weight:600;color:#0f3d6e;margin:0}"
    ".meta,.desc{margin:4px 0;color:#3b4656}.acts{display:flex;flex-wrap:wrap;gap:8px;margin-top:8px}"
    ".acts a{display:inline-block;padding:8px 12px;border-radius:8px;background:#e8eef6;color:#0f3d6e;"
    "text-decoration:none;font-weight:600}.acts a.go{background:#0f3d6e;color:#fff}.live .card{border-left:6px "
    "solid #c62828}.badge{display:inline-block;font-size:.8rem;padding:1px 8px;border-radius:10px;"
    "background:#c62828;color:#fff;margin-inline-start:6px;vertical-align:middle}.off{opacity:.7}"
    ".off h3{text-decoration:line-through}.empty{color:#5b6676}"
)


def _card(townhall: Townhall, programme: Programme, kind: str, lang: str, base: str) -> str:
    w = _WORDS[lang]
    start = programme.starts_ms
    when = f"{date_hi(start)}, {time_hi(start)}" if lang == "hi" else f"{date_en(start)}, {time_en(start)}"
    badge = ""
    if kind == "live":
        badge = f'<span class="badge">{escape(w["live"])}</span>'
    elif programme.cancelled:
        badge = f'<span class="badge">{escape(w["cancelled"])}</span>'
    acts: list[str] = []
    if kind == "live":
        acts.append(f'<a class="go" href="{escape(join_path(townhall.id))}">{escape(w["join_live"])}</a>')
    elif kind == "upcoming" and not programme.cancelled:
        acts.append(f'<a class="go" href="{escape(join_path(townhall.id))}">{escape(w["lobby"])}</a>')
        acts.append(f'<a href="{escape(ics_path(townhall.id))}" download>{escape(w["calendar"])}</a>')
    elif kind == "past":
        acts.append(f'<a class="go" href="{escape(record_path(townhall.id))}">{escape(w["record"])}</a>')
    if kind != "past" and not programme.cancelled:
        share = whatsapp_url(share_text(townhall, programme, base))
        acts.append(f'<a href="{escape(share)}" rel="noopener">{escape(w["share"])}</a>')
    description = f'<p class="desc">{escape(programme.description)}</p>' if programme.description else ""
    return (
        f'<article class="card{" off" if programme.cancelled else ""}" data-th="{escape(townhall.id)}">'
        f"<h3>{escape(townhall.title)}{badge}</h3>"
        f'<p class="when">{escape(when)}</p>'
        f'<p class="meta">{escape(w["leader"])}: {escape(programme.leader)} · '
        f"{escape(w['lang'])}: {escape(w.get(townhall.lang, townhall.lang))}</p>"
        f"{description}"
        f'<div class="acts">{"".join(acts)}</div></article>'
    )


def render_page(groups: dict[str, list[tuple[Townhall, Programme]]], lang: str, base: str) -> str:
    w = _WORDS[lang]
    parts = [
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(w['title'])} · {escape(w['app'])}</title>"
        '<link rel="icon" href="data:,">'
        f"<style>{_STYLE}</style></head><body>"
        f"<header><div><small>{escape(w['app'])}</small><h1>{escape(w['title'])}</h1></div>"
        f'<a href="?lang={w["other_lang"]}" hreflang="{w["other_lang"]}">{escape(w["other"])}</a></header>'
        f'<main><p class="empty">{escape(w["intro"])}</p>'
    ]
    if groups["live"]:
        parts.append(f'<section class="live" id="live"><h2>{escape(w["live"])}</h2>')
        parts += [_card(t, p, "live", lang, base) for t, p in groups["live"]]
        parts.append("</section>")
    parts.append(f'<section id="upcoming"><h2>{escape(w["upcoming"])}</h2>')
    parts += [_card(t, p, "upcoming", lang, base) for t, p in groups["upcoming"]]
    if not groups["upcoming"]:
        parts.append(f'<p class="empty">{escape(w["none_upcoming"])}</p>')
    parts.append("</section>")
    if groups["past"]:
        parts.append(f'<section id="past"><h2>{escape(w["past"])}</h2>')
        parts += [_card(t, p, "past", lang, base) for t, p in groups["past"]]
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "".join(parts)
