"""Local moderators and targeted announcements on one node (issue 16 items 4 and 5), over real WebSocket sessions.

- A moderator scoped to a district sees only its subtree's questions (snapshot, live notices, replay), gets every
  other notice as `skip` with its mseq (no holes), and is refused (`out_of_scope`) acting outside its subtree.
- `forward` sends a question up one level at a time, to `*` above the top.
- An announcement `to` a unit reaches exactly the citizens of that subtree and staff; the others get `skip` with the
  same seq, live, in a replay and (left out) in a snapshot.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jansamvad.fanout import Fanout
from jansamvad.feeds import Mode
from jansamvad.hub import Hub
from jansamvad.moderation.scope import ROOT_SCOPE
from jansamvad.protocol.roles import Role
from jansamvad.regions import read_csv
from jansamvad.server import RunningServer
from jansamvad.targeting import Targeted, UnitIndex, announcement_for, in_scope, unit_path
from tests.helpers import ADMIN_KEY, Hall, Session, joined, make_hall
from tests.test_fanout import Recorder, frames, settle

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TREE = read_csv(
    """code,parent,level,name_hi,name_en
S1,,state,राज्य एक,State One
D1,S1,district,गया,Gaya
D2,S1,district,पटना,Patna
D1-B1,D1,booth,बूथ 1,Booth 1
D2-B1,D2,booth,बूथ 2,Booth 2
"""
)
UNLIMITED = {"ask_per_minute": 1000, "ask_per_minute_per_ip": 1000}


def test_scope_rule_units_under_a_scope_and_questions_without_a_unit_at_the_root() -> None:
    assert unit_path(TREE, "D1-B1") == ("S1", "D1", "D1-B1")
    assert in_scope("D1", unit_path(TREE, "D1-B1")) and in_scope("", unit_path(TREE, "D2-B1"))
    assert not in_scope("D1", unit_path(TREE, "D2-B1"))
    assert not in_scope("D1", unit_path(TREE, ""))  # no unit: the root scope's only
    assert unit_path(None, "D1-B1") == ("D1-B1",) and unit_path(TREE, "GONE") == ("GONE",)
    assert announcement_for({"t": "announce"}, ()) and announcement_for({"to": "D1"}, ("S1", "D1", "D1-B1"))
    assert not announcement_for({"to": "D1"}, ("S1", "D2")) and not announcement_for({"to": "D1"}, ())


def test_scope_unit_index_targets_every_citizen_under_a_unit_until_it_leaves() -> None:
    index = UnitIndex()
    a, b = object(), object()
    index.add(a, unit_path(TREE, "D1-B1"))
    index.add(b, unit_path(TREE, "D2-B1"))
    index.add(object(), ())  # no unit: not indexed
    state, gaya = index.under("S1"), index.under("D1")
    assert state.hit(a) and state.hit(b) and gaya.hit(a) and not gaya.hit(b)
    assert index.path(a) == ("S1", "D1", "D1-B1") and len(index.paths) == 2
    assert gaya.gets(object(), True) and not gaya.gets(object(), False)  # staff get it, strangers do not
    index.remove(a)
    index.remove(a)  # twice: harmless
    assert not gaya.hit(a) and index.paths == {b: ("S1", "D2", "D2-B1")}  # read at flush time: a left


def token(hall: Hall, role: Role, sub: str, *, unit: str = "", scope: str = "") -> str:
    return hall.server.node.tokens.issue(sub=sub, role=role, th=hall.th, ttl_s=600, name=sub, unit=unit, scope=scope)[0]


async def ask(session: Session, key: str, text: str) -> str:
    ack = await session.request({"t": "ask", "key": key, "text": text})
    assert ack["t"] == "ack" and ack["state"] == "pending", ack
    return str(ack["qid"])


def modstream(_session: Session) -> Any:
    return lambda m: "mseq" in m and m["t"] != "snapshot"


async def test_scope_district_moderator_sees_and_decides_only_its_subtree(make_server: Any) -> None:
    server: RunningServer = await make_server(**UNLIMITED)
    await server.node.store.put_region_tree(TREE)
    hall = await make_hall(server)
    gaya_citizen = await joined(server, token(hall, Role.CITIZEN, "c-gaya", unit="D1-B1"))
    patna_citizen = await joined(server, token(hall, Role.CITIZEN, "c-patna", unit="D2-B1"))
    nowhere = await joined(server, token(hall, Role.CITIZEN, "c-nowhere"))
    early_patna = await ask(patna_citizen, "key-p0000001", "पटना का सवाल पहले")
    early_gaya = await ask(gaya_citizen, "key-g0000001", "गया का सवाल पहले")

    gaya_mod = await Session.open(server)
    welcome, snapshot = await gaya_mod.hello(token(hall, Role.MODERATOR, "m-gaya", scope="D1"))
    assert snapshot is not None and [q["qid"] for q in snapshot["queue"]] == [early_gaya]  # not early_patna
    assert snapshot["queue"][0]["unit"] == "D1-B1" and welcome["mseq"] == 2 and early_patna != early_gaya
    root_mod = await joined(server, hall.moderator)

    patna_q = await ask(patna_citizen, "key-p0000002", "पटना में सड़क?")
    gaya_q = await ask(gaya_citizen, "key-g0000002", "गया में पानी?")
    root_q = await ask(nowhere, "key-n0000001", "बिना इकाई का सवाल")
    got = [await gaya_mod.recv_until(modstream(gaya_mod)) for _ in range(3)]
    assert [(m["t"], m["mseq"]) for m in got] == [("skip", 3), ("queue_add", 4), ("skip", 5)]
    assert got[1]["q"]["qid"] == gaya_q and "q" not in got[0]
    root_got = [await root_mod.recv_until(modstream(root_mod)) for _ in range(3)]
    assert [m["t"] for m in root_got] == ["queue_add"] * 3  # the unscoped moderator sees everything

    for action in ("approve", "reject", "forward"):
        refused = await gaya_mod.request({"t": "moderate", "qid": patna_q, "action": action})
        assert refused["t"] == "error" and refused["code"] == "out_of_scope", refused
    for message in ({"t": "claim", "qid": root_q}, {"t": "release", "qid": patna_q}, {"t": "claim", "qid": "q-nope"}):
        refused = await gaya_mod.request(message)
        assert refused["code"] == "out_of_scope", (message, refused)
    refused = await gaya_mod.request({"t": "restrict", "sub": "c-patna", "action": "timeout"})
    assert refused["code"] == "out_of_scope"
    refused = await gaya_mod.request({"t": "slow_mode", "seconds": 60})  # the whole town hall: not Gaya's to set
    assert refused["code"] == "out_of_scope"
    allowed = await gaya_mod.request({"t": "restrict", "sub": "c-gaya", "action": "timeout", "seconds": 10})
    assert allowed["t"] == "ack"
    assert (await gaya_mod.request({"t": "restrict", "sub": "c-gaya", "action": "lift"}))["t"] == "ack"
    claimed = await gaya_mod.request({"t": "claim", "qid": gaya_q})
    assert claimed["t"] == "ack"
    # The root moderator's claim on a Patna question is not the Gaya moderator's business: a skip.
    assert (await root_mod.request({"t": "claim", "qid": patna_q}))["t"] == "ack"
    got = [await gaya_mod.recv_until(modstream(gaya_mod), skipped=True) for _ in range(2)]
    assert [(m["t"], m.get("by")) for m in got] == [("claim_update", "m-gaya"), ("skip", None)]

    # Forward: up one level (the district's parent), then to the top; never twice to the same level.
    up = await gaya_mod.request({"t": "moderate", "qid": gaya_q, "action": "forward", "reason": "ज़रूरी"})
    assert up["t"] == "ack" and up["state"] == "pending"
    again = await gaya_mod.request({"t": "moderate", "qid": gaya_q, "action": "forward"})
    assert again["code"] == "bad_state"
    update = await root_mod.recv_until(lambda m: m["t"] == "queue_update" and m["qid"] == gaya_q)
    assert update["fwd"] == "S1" and update["unit"] == "D1-B1" and update["by"] == "m-gaya"
    state_mod = await joined(server, token(hall, Role.MODERATOR, "m-state", scope="S1"))
    top = await state_mod.request({"t": "moderate", "qid": gaya_q, "action": "forward"})
    assert top["t"] == "ack"
    update = await root_mod.recv_until(lambda m: m["t"] == "queue_update" and m["qid"] == gaya_q)
    assert update["fwd"] == ROOT_SCOPE
    at_top = await root_mod.request({"t": "moderate", "qid": gaya_q, "action": "forward"})
    assert at_top["code"] == "bad_state"  # the town-hall-wide moderator is the top: it approves
    assert (await root_mod.request({"t": "moderate", "qid": gaya_q, "action": "approve"}))["t"] == "ack"

    # Resume: the Gaya moderator comes back with last_mseq and gets the same notices and skips, no hole.
    last = got[-1]["mseq"]
    await gaya_mod.close()
    await ask(patna_citizen, "key-p0000003", "पटना का एक और सवाल")
    await ask(gaya_citizen, "key-g0000003", "गया का एक और सवाल")
    back = await Session.open(server)
    welcome, snapshot = await back.hello(token(hall, Role.MODERATOR, "m-gaya", scope="D1"), last_seq=0, last_mseq=last)
    assert welcome["recovered"] and snapshot is None
    replay = [await back.recv_until(modstream(back)) for _ in range(welcome["mseq"] - last)]
    assert [m["mseq"] for m in replay] == list(range(last + 1, welcome["mseq"] + 1))
    seen = [(m["t"], m.get("qid") or m.get("q", {}).get("qid")) for m in replay]
    assert ("queue_add", None) not in seen and all(t != "queue_add" or q != patna_q for t, q in seen)
    kinds = [m["t"] for m in replay]
    assert kinds[-2:] == ["skip", "queue_add"] and replay[-1]["q"]["unit"] == "D1-B1"


async def test_scope_targeted_announcement_reaches_its_subtree_and_skips_the_rest(make_server: Any) -> None:
    server: RunningServer = await make_server()
    await server.node.store.put_region_tree(TREE)
    hall = await make_hall(server)
    leader = await joined(server, hall.leader)
    assert (await leader.request({"t": "go_live"}))["t"] == "ack"
    booth = await joined(server, token(hall, Role.CITIZEN, "c-booth", unit="D1-B1"))
    district = await joined(server, token(hall, Role.CITIZEN, "c-district", unit="D1"))
    patna = await joined(server, token(hall, Role.CITIZEN, "c-patna", unit="D2-B1"))
    nowhere = await joined(server, token(hall, Role.CITIZEN, "c-nowhere"))

    bad = await leader.request({"t": "announce", "text": "?", "to": "NOPE"})
    assert bad["code"] == "invalid_field" and bad["field"] == "to"
    ack = await leader.request({"t": "announce", "text": "गया के सभी बूथ: 5 बजे सभा", "to": "D1"})
    seq = ack["seq"]
    after = await leader.request({"t": "speech", "text": "सबके लिए"})

    def at(n: int) -> Any:
        return lambda m: m.get("seq") == n

    for citizen in (booth, district):
        got = await citizen.recv_until(at(seq))
        assert got["t"] == "announce" and got["to"] == "D1" and got["to_name"] == "गया"
    for citizen in (patna, nowhere):
        got = await citizen.recv_until(at(seq))
        assert got == {"t": "skip", "seq": seq}
        assert (await citizen.recv_until(at(after["seq"])))["t"] == "speech"  # and the stream goes on, no hole
    # Staff see what was said to whom. (The leader's own requests read past events: the announce may have come
    # before the speech's ack, so look at what they skipped first.)
    assert (await leader.recv_until(at(seq), skipped=True))["t"] == "announce"

    # Through a reconnect: the replay makes the same choice per citizen; a snapshot leaves it out.
    for citizen, sub, unit, expected in ((patna, "c-patna", "D2-B1", "skip"), (booth, "c-booth", "D1-B1", "announce")):
        await citizen.close()
        again = await Session.open(server)
        welcome, snapshot = await again.hello(token(hall, Role.CITIZEN, sub, unit=unit), last_seq=seq - 1)
        assert welcome["recovered"] and snapshot is None
        assert (await again.recv_until(at(seq)))["t"] == expected
        fresh = await Session.open(server)
        _, snapshot = await fresh.hello(token(hall, Role.CITIZEN, sub, unit=unit))
        assert snapshot is not None
        shown = [e["t"] for e in snapshot["speech"] if e["seq"] == seq]
        assert shown == (["announce"] if expected == "announce" else [])

    # The war room's REST announce takes a target too.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        made = await http.post(f"/api/townhalls/{hall.th}/announce", json={"text": "पटना!", "to": "D2"}, headers=ADMIN)
        assert made.status_code == 201, made.text
        unknown = await http.post(f"/api/townhalls/{hall.th}/announce", json={"text": "?", "to": "X"}, headers=ADMIN)
        assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_field"
    rest_seq = made.json()["seq"]
    assert (await district.recv_until(at(rest_seq)))["t"] == "skip"
    assert (await nowhere.recv_until(at(rest_seq), skipped=True))["t"] == "skip"


async def test_scope_tokens_are_minted_for_units_of_the_tree_and_exports_are_cut_to_the_scope(
    make_server: Any,
) -> None:
    server: RunningServer = await make_server(**UNLIMITED)
    await server.node.store.put_region_tree(TREE)
    hall = await make_hall(server)
    await ask(await joined(server, token(hall, Role.CITIZEN, "c-gaya", unit="D1-B1")), "key-g0000009", "गया?")
    await ask(await joined(server, token(hall, Role.CITIZEN, "c-patna", unit="D2-B1")), "key-p0000009", "पटना?")
    tokens = f"/api/townhalls/{hall.th}/tokens"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        made = await http.post(tokens, json={"role": "moderator", "scope": "D1"}, headers=ADMIN)
        assert made.status_code == 201 and made.json()["scope"] == "D1"
        for body in ({"role": "moderator", "scope": "NOPE"}, {"role": "leader", "scope": "D1"}):
            refused = await http.post(tokens, json=body, headers=ADMIN)
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_field", body
        local = {"Authorization": f"Bearer {made.json()['token']}"}
        report = (await http.get(f"/api/townhalls/{hall.th}/export", headers=local)).json()
        assert [q["unit"] for q in report["questions"]] == ["D1-B1"]
        everything = (await http.get(f"/api/townhalls/{hall.th}/export", headers=ADMIN)).json()
        assert len(everything["questions"]) == 2
        rollup = await http.get(f"/api/townhalls/{hall.th}/rollup", headers=local)
        assert rollup.status_code == 200 and rollup.json()["unit"]["code"] == "D1"
        outside = await http.get(f"/api/townhalls/{hall.th}/rollup?unit=D2", headers=local)
        assert outside.status_code == 403 and outside.json()["error"] == "out_of_scope"
    claims = server.node.tokens.verify(made.json()["token"])
    assert claims.scope == "D1" and claims.role is Role.MODERATOR


async def test_scope_fanout_encodes_each_variant_once_and_ordinary_ticks_once() -> None:
    fanout = Fanout(tick_s=0.001, writes_per_yield=1000)
    fanout.start()
    try:
        hub, index = Hub(), UnitIndex()
        gaya = [Recorder() for _ in range(50)]
        patna = [Recorder() for _ in range(50)]
        staff = Recorder()
        for listener in gaya:
            index.add(listener, unit_path(TREE, "D1-B1"))
        for listener in patna:
            index.add(listener, unit_path(TREE, "D2-B1"))
        for listener in [*gaya, *patna]:
            hub.add("th:x", listener)
        hub.add("th:x", staff, staff=True)
        room = hub.room("th:x")
        assert room is not None
        fanout.enqueue(room, 1, {"t": "speech", "text": "सबके लिए"})
        await settle()
        assert fanout.frames_built == 1  # an ordinary tick: one frame for 101 listeners, as before
        announce = {"t": "announce", "text": "गया के लिए", "to": "D1"}
        fanout.enqueue(room, 2, announce, targeted=index.under("D1"))
        await settle()
        assert fanout.frames_built == 3  # one frame per variant, not per listener
        assert frames(gaya[0].writes[1]) == [{**announce, "seq": 2}] == frames(staff.writes[1])
        assert frames(patna[0].writes[1]) == [{"t": "skip", "seq": 2}]
        assert all(g.writes[1] is gaya[0].writes[1] for g in gaya), "the very same bytes object per variant"
        assert all(p.writes[1] is patna[0].writes[1] for p in patna)
        # Two targeted events in one tick (a set, and a unit): each listener's variant is both choices together.
        fanout.enqueue(room, 3, {**announce, "to": "D2"}, targeted=index.under("D2"))
        fanout.enqueue(room, 4, {"t": "skip"}, targeted=Targeted({gaya[0]}, staff=False))
        await settle()
        assert frames(gaya[0].writes[2]) == [{"t": "skip", "seq": 3}, {"t": "skip", "seq": 4}]
        assert [m["t"] for m in frames(patna[0].writes[2])] == ["announce", "skip"]
    finally:
        await fanout.stop()


async def test_scope_fanout_targeted_variants_keep_each_listening_mode() -> None:
    # A tick with a targeted announcement, a partial transcript and an audio chunk: each listener gets its variant
    # (announcement or skip) within its own feed (audio chunks only in mode audio, no partials in text-light).
    fanout = Fanout(tick_s=0.001, writes_per_yield=1000, coalesce_s=0)
    fanout.start()
    try:
        hub, index = Hub(), UnitIndex()
        gaya_audio, gaya_captions = Recorder(mode=Mode.AUDIO), Recorder()
        patna_light, patna_audio = Recorder(mode=Mode.LIGHT), Recorder(mode=Mode.AUDIO)
        for listener, unit in ((gaya_audio, "D1-B1"), (gaya_captions, "D1-B1"), (patna_light, "D2-B1")):
            index.add(listener, unit_path(TREE, unit))
        index.add(patna_audio, unit_path(TREE, "D2-B1"))
        for listener in (gaya_audio, gaya_captions, patna_light, patna_audio):
            hub.add("th:x", listener)
        room = hub.room("th:x")
        assert room is not None
        partial = {"t": "speech", "text": "आज", "final": False}
        announce = {"t": "announce", "text": "गया के लिए", "to": "D1"}
        chunk = {"t": "audio", "data": b"\x01\x02", "n": 1, "init": False, "mime": "audio/webm"}
        fanout.enqueue(room, 1, partial)
        fanout.enqueue_audio(room, chunk)
        fanout.enqueue(room, 2, announce, targeted=index.under("D1"))
        await settle()
        assert frames(gaya_audio.writes[0]) == [{**partial, "seq": 1}, {**announce, "seq": 2}, chunk]
        assert frames(gaya_captions.writes[0]) == [{**partial, "seq": 1}, {**announce, "seq": 2}]
        assert frames(patna_audio.writes[0]) == [{**partial, "seq": 1}, {"t": "skip", "seq": 2}, chunk]
        assert frames(patna_light.writes[0]) == [{"t": "skip", "seq": 2}]
    finally:
        await fanout.stop()


async def test_scope_erasure_reaches_the_local_moderator_of_the_question(make_server: Any) -> None:
    # privacy.py withdraws an erased citizen's pending question with a queue_update: it names the question's unit,
    # so the local moderator whose queue holds it gets it in full (not a `skip`) and drops it.
    server: RunningServer = await make_server(**UNLIMITED)
    await server.node.store.put_region_tree(TREE)
    hall = await make_hall(server)
    gaya_citizen = await joined(server, token(hall, Role.CITIZEN, "c-gaya", unit="D1-B1"))
    gaya_mod = await joined(server, token(hall, Role.MODERATOR, "m-gaya", scope="D1"))
    qid = await ask(gaya_citizen, "key-g0000009", "गया में बिजली?")
    added = await gaya_mod.recv_until(modstream(gaya_mod))
    assert added["t"] == "queue_add" and added["q"]["qid"] == qid
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        erased = await http.post(f"/api/townhalls/{hall.th}/erase", json={"sub": "c-gaya"}, headers=ADMIN)
    assert erased.status_code == 200 and erased.json()["erased"] == [qid], erased.text
    update = await gaya_mod.recv_until(modstream(gaya_mod))
    assert (update["t"], update.get("qid"), update.get("reason")) == ("queue_update", qid, "erased")
    assert update["unit"] == "D1-B1"
