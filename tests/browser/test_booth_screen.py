"""The booth screen in real headless Chromium, at TV sizes (1920x1080 and 1280x720): it opens from the unit's
/screen/<code> address with a screen token from the admin API, shows the leader's final sentences big and the partial
line smaller, the pinned question and the poll, and a QR code that decodes to the unit's join link; the volunteer
sets the people watching with the arrow keys and OK only, and the war room's roll-up counts them as people reached.
JANSAMVAD_SCREENSHOT_DIR=docs/screenshots writes screen-1920x1080.png and screen-1280x720.png there.

The screen's recovery after its node restarts is in test_booth_screen_restart.py (it needs Valkey)."""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.browser.harness import Server, Tabs
from tests.browser.test_regions import _th

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

UNIT = "BR-236"  # Gaya district of the generated Bihar tree


def http_json(base: str, method: str, path: str, body: Any = None, key: str = "") -> Any:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


class Speaker:
    """A staff or citizen session over the JSON subprotocol, for the test to drive the town hall."""

    def __init__(self, base: str, token: str, lane: str = "") -> None:
        ws_url = base.replace("http", "ws", 1) + "/ws" + (f"?lane={lane}" if lane else "")
        self.ws: ClientConnection = connect(ws_url, subprotocols=["jansamvad.v1.json"], open_timeout=5, legacy=True)  # type: ignore[list-item]
        self.next_id = 1
        self.ws.send(json.dumps({"t": "hello", "token": token}))
        assert json.loads(self.ws.recv(5))["t"] == "welcome"

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        msg_id, self.next_id = self.next_id, self.next_id + 1
        self.ws.send(json.dumps({**message, "id": msg_id}))
        while True:
            answer: dict[str, Any] = json.loads(self.ws.recv(5))
            if answer.get("re") == msg_id:
                assert answer["t"] == "ack", answer
                return answer

    def close(self) -> None:
        self.ws.close()


def admin_key(server: Server) -> str:
    (key,) = re.findall(r"admin key \(for the REST API\): (\S+)", "".join(server.stdout))
    return str(key)


def staff_token(server: Server, role: str) -> str:
    return server.links[role].split("#token=", 1)[1]


def qr_text(page: Any) -> list[str]:
    """Decode the QR code as the screen draws it: its pixels, grey, through zxing-cpp."""
    zxingcpp = pytest.importorskip("zxingcpp")
    drawn = page.evaluate(
        """() => {
          const img = document.querySelector('#qr');
          const w = img.clientWidth * 2, h = img.clientHeight * 2;
          const canvas = document.createElement('canvas');
          canvas.width = w; canvas.height = h;
          const ctx = canvas.getContext('2d');
          ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, w, h);
          ctx.drawImage(img, 0, 0, w, h);
          const rgba = ctx.getImageData(0, 0, w, h).data;
          let grey = '';
          for (let i = 0; i < rgba.length; i += 4) grey += String.fromCharCode(rgba[i + 1]);
          return {w, h, grey: btoa(grey)};
        }"""
    )
    pixels = base64.b64decode(drawn["grey"])
    found = zxingcpp.read_barcodes(memoryview(pixels).cast("B", (drawn["h"], drawn["w"])))
    return [code.text for code in found]


def shoot(page: Any, name: str) -> None:
    shots = os.environ.get("JANSAMVAD_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name))


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720)], ids=["1920x1080", "1280x720"])
def test_booth_screen_shows_the_town_hall_and_counts_its_people(
    size: tuple[int, int], regions_server: Server, region_tabs: Tabs
) -> None:
    from playwright.sync_api import expect

    server, th, key = regions_server, _th(regions_server), admin_key(regions_server)
    made = http_json(server.base, "POST", f"/api/townhalls/{th}/tokens", {"role": "screen", "unit": UNIT}, key)
    width, height = size
    page = region_tabs.open("screen", viewport={"width": width, "height": height})
    page.goto(server.base + made["page"])
    page.wait_for_url(f"{server.base}/screen.html?th={th}&unit={UNIT}")
    assert "token=" not in page.url, "the screen token should be taken out of the address bar"
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#unit")).to_contain_text("गया")

    leader = Speaker(server.base, staff_token(server, "leader"), "staff")
    moderator = Speaker(server.base, staff_token(server, "moderator"), "staff")
    citizen_token = http_json(server.base, "POST", f"/api/townhalls/{th}/join", {"name": "सीता", "unit": UNIT})["token"]
    citizen = Speaker(server.base, citizen_token)
    try:
        leader.request({"t": "go_live"})
        expect(page.locator("#status")).to_have_attribute("data-status", "live")
        sentences = ["बिहार के हर गाँव तक सड़क पहुँचेगी।", "हर घर में बिजली होगी।", "युवाओं को रोज़गार मिलेगा।"]
        for text in [*(f"पुराना वाक्य {i}।" for i in range(60)), *sentences]:
            leader.request({"t": "speech", "text": text, "final": True})
        leader.request({"t": "speech", "text": "और अब मैं आपके", "final": False})
        # The last three final sentences, big; the partial line below them; bounded, whatever was said before.
        expect(page.locator("#finals li")).to_have_text(sentences)
        expect(page.locator("#partial")).to_have_text("और अब मैं आपके")
        big = page.locator("#finals li").last.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        small = page.locator("#partial").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert big > small >= height * 0.03, (big, small)

        asked = citizen.request({"t": "ask", "key": "screen-ask-0001", "text": "गया में नया अस्पताल कब बनेगा?"})
        moderator.request({"t": "moderate", "action": "approve", "qid": asked["qid"]})
        leader.request({"t": "moderate", "action": "pin", "qid": asked["qid"]})
        expect(page.locator("#now-text")).to_have_text("गया में नया अस्पताल कब बनेगा?")
        pid = leader.request({"t": "poll_create", "question": "सबसे ज़रूरी क्या है?", "options": ["सड़क", "बिजली"]})["pid"]
        leader.request({"t": "poll_open", "pid": pid})
        citizen.request({"t": "poll_vote", "pid": pid, "option": 1})
        expect(page.locator("#poll-q")).to_have_text("सबसे ज़रूरी क्या है?")
        expect(page.locator("#poll-bars .poll-pct").last).to_have_text("100%")

        # Live audio: the screen opted in (mode audio), so the leader's chunks reach its player.
        # (Chunks without a WebM Cluster: counted by the player, never appended to its decoder.)
        chunk = base64.b64encode(bytes(64)).decode()
        for _ in range(2):
            leader.ws.send(json.dumps({"t": "audio", "data": chunk}))
        page.wait_for_function("() => Number(document.querySelector('#player').dataset.received || 0) >= 2")

        link = http_json(server.base, "GET", f"/api/regions/{UNIT}/link?th={th}")
        expect(page.locator("#join-url")).to_have_text(link["url"])
        page.wait_for_function("() => document.querySelector('#qr').complete")
        assert qr_text(page) == [link["url"]]

        # The volunteer's remote: focus starts on +1; arrows move it, OK presses. 1, then +10, then -1: 10.
        assert page.evaluate("document.activeElement.id") == "more"
        outline = page.locator("#more").evaluate("e => getComputedStyle(e).outlineWidth")
        assert float(outline.removesuffix("px")) >= 3, outline  # the focus is seen from across the room
        page.keyboard.press("Enter")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("Enter")
        expect(page.locator("#people")).to_have_attribute("data-people", "10")
        expect(page.locator("#sent")).to_have_attribute("data-state", "sent")
        for _ in range(3):  # the arrows wrap around the row of buttons
            page.keyboard.press("ArrowRight")
        assert page.evaluate("document.activeElement.id") == "sound"

        # The war room: Gaya reached 1 citizen online + 10 people at the screen; the screen is no viewer.
        page.wait_for_timeout(1500)  # a roll-up tick
        view = http_json(server.base, "GET", f"/api/townhalls/{th}/rollup?unit=BR", key=key)
        gaya = {row["code"]: row for row in view["rows"]}[UNIT]
        assert (gaya["viewers"], gaya["screens"], gaya["audience"], gaya["reached"]) == (1, 1, 10, 11)

        # And the war room's dashboard shows them beside the online viewers.
        war_room = region_tabs.open("admin")
        war_room.goto(f"{server.base}/dashboard.html#key={key}")
        card = war_room.locator(f'article[data-th="{th}"]')
        card.locator('details[data-part="rollup"] summary').click()
        card.locator('a[data-unit="BR"]').click()
        row = card.locator(f'tr[data-code="{UNIT}"]')
        expect(row.locator('td[data-col="viewers"]')).to_have_text("1")
        expect(row.locator('td[data-col="reached"]')).to_have_text("11")
        expect(row.locator('td[data-col="screens"]')).to_have_text("1")

        page.evaluate("document.activeElement.blur()")
        shoot(page, f"screen-{width}x{height}.png")
        assert not region_tabs.errors, region_tabs.errors
    finally:
        for session in (leader, moderator, citizen):
            session.close()
