"""Local moderators and targeted announcements across two real node processes on a real Valkey (issue 16 items 4, 5):

- a district moderator on node A never sees a question asked in another district on node B (it gets `skip` with the
  notice's mseq instead), and is refused (`out_of_scope`) acting on it;
- a forward on node A reaches the town-hall-wide moderator on node B and the leader's forwarded view;
- an announcement to a district reaches exactly the citizens of that subtree on both nodes, the others get `skip`
  with the same seq, and a reconnect to the other node (resume with last_seq) gives each the same answer.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jansamvad.auth import TokenService
from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role
from tests import helpers
from tests.test_cluster import Peer

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

asyncio_client_loop = helpers.asyncio_client_loop

TREE = """code,parent,level,name_hi,name_en
S1,,state,राज्य एक,State One
D1,S1,district,गया,Gaya
D2,S1,district,पटना,Patna
D1-B1,D1,booth,बूथ 1,Booth 1
D1-B2,D1,booth,बूथ 2,Booth 2
D2-B1,D2,booth,बूथ 3,Booth 3
"""


@pytest.fixture
async def two_nodes() -> AsyncIterator[LocalCluster]:
    async with helpers.two_nodes_with_regions(TREE) as cluster:
        yield cluster


def issue(cluster: LocalCluster, th: str, role: Role, sub: str, *, unit: str = "", scope: str = "") -> str:
    tokens = TokenService(cluster.secret)
    return tokens.issue(sub=sub, role=role, th=th, ttl_s=600, name=sub, unit=unit, scope=scope)[0]


async def next_where(peer: Peer, predicate: Any, timeout: float = 10) -> dict[str, Any]:
    """The next message that matches, looking first at what `request` passed over."""
    for i, message in enumerate(peer.seen):
        if predicate(message):
            return peer.seen.pop(i)
    async with asyncio.timeout(timeout):
        while True:
            message = await peer.recv()
            if predicate(message):
                return message
            peer.seen.append(message)


def notice(message: dict[str, Any]) -> bool:
    return "mseq" in message and message["t"] != "snapshot"


def get_json(url: str, key: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


async def test_scope_cluster_district_moderator_on_a_never_sees_b_s_other_district(two_nodes: LocalCluster) -> None:
    cluster = two_nodes
    th = await asyncio.to_thread(cluster.create_townhall, "ज़िले")
    a, b = cluster.node_procs
    gaya_mod, _ = await Peer.join(a.url, issue(cluster, th, Role.MODERATOR, "m-gaya", scope="D1"))
    root_mod, _ = await Peer.join(b.url, issue(cluster, th, Role.MODERATOR, "m-root"))
    patna, _ = await Peer.join(b.url, issue(cluster, th, Role.CITIZEN, "c-patna", unit="D2-B1"))
    gaya, _ = await Peer.join(b.url, issue(cluster, th, Role.CITIZEN, "c-gaya", unit="D1-B2"))

    patna_q = await patna.request({"t": "ask", "key": "key-patna-1", "text": "पटना में बाढ़ का क्या?"})
    gaya_q = await gaya.request({"t": "ask", "key": "key-gaya-01", "text": "गया में पानी कब?"})
    first, second = await next_where(gaya_mod, notice), await next_where(gaya_mod, notice)
    assert first == {"t": "skip", "mseq": 1}  # Patna's question, asked on node B: never shown in Gaya
    assert second["t"] == "queue_add" and second["mseq"] == 2 and second["q"]["qid"] == gaya_q["qid"]
    for action in ("approve", "reject"):
        refused = await gaya_mod.request({"t": "moderate", "qid": patna_q["qid"], "action": action})
        assert refused["t"] == "error" and refused["code"] == "out_of_scope", refused
    refused = await gaya_mod.request({"t": "claim", "qid": patna_q["qid"]})
    assert refused["code"] == "out_of_scope"

    forwarded = await gaya_mod.request({"t": "moderate", "qid": gaya_q["qid"], "action": "forward"})
    assert forwarded["t"] == "ack", forwarded
    update = await next_where(root_mod, lambda m: m["t"] == "queue_update" and m["qid"] == gaya_q["qid"])
    assert update["fwd"] == "S1" and update["by"] == "m-gaya"
    leader = issue(cluster, th, Role.LEADER, "l-leader")
    view = await asyncio.to_thread(get_json, f"{b.url}/api/townhalls/{th}/forwarded", leader)
    assert [(row["code"], [q["qid"] for q in row["questions"]]) for row in view["districts"]] == [
        ("D1", [gaya_q["qid"]])
    ]
    # Only the question it forwarded, nothing from Patna, ever reached the Gaya moderator in full.
    full = [m for m in gaya_mod.seen if notice(m) and m["t"] != "skip"]
    assert all(m.get("unit") == "D1-B2" for m in full), full


async def test_scope_cluster_targeted_announcement_reaches_exactly_its_subtree_through_reconnects(
    two_nodes: LocalCluster,
) -> None:
    cluster = two_nodes
    th = await asyncio.to_thread(cluster.create_townhall, "घोषणा")
    a, b = cluster.node_procs
    leader, _ = await Peer.join(a.url, issue(cluster, th, Role.LEADER, "l-leader"))
    assert (await leader.request({"t": "go_live"}))["t"] == "ack"
    placed = {  # sub -> (node, unit)
        "c-a-gaya": (a, "D1-B1"),
        "c-b-gaya": (b, "D1-B2"),
        "c-a-patna": (a, "D2-B1"),
        "c-b-patna": (b, "D2-B1"),
        "c-b-none": (b, ""),
    }
    peers = {}
    for sub, (node, unit) in placed.items():
        peers[sub], _ = await Peer.join(node.url, issue(cluster, th, Role.CITIZEN, sub, unit=unit))
    ack = await leader.request({"t": "announce", "text": "गया के सभी बूथ: शाम 5 बजे", "to": "D1", "key": "announce-1"})
    seq = ack["seq"]
    after = await leader.request({"t": "speech", "text": "सबके लिए"})
    for sub, peer in peers.items():
        got = await next_where(peer, lambda m: m.get("seq") == seq)
        if "gaya" in sub:
            assert got["t"] == "announce" and got["to"] == "D1", (sub, got)
        else:
            assert got == {"t": "skip", "seq": seq}, (sub, got)
        assert (await next_where(peer, lambda m: m.get("seq") == after["seq"]))["t"] == "speech"

    # Everyone reconnects to the other node and resumes from just before the announcement: the same answers.
    for sub, (node, unit) in placed.items():
        await peers[sub].close()
        other = b if node is a else a
        peer, welcome = await Peer.join(other.url, issue(cluster, th, Role.CITIZEN, sub, unit=unit), last_seq=seq - 1)
        assert welcome["recovered"], welcome
        got = await next_where(peer, lambda m: m.get("seq") == seq)
        assert got["t"] == ("announce" if "gaya" in sub else "skip"), (sub, got)
        assert (await next_where(peer, lambda m: m.get("seq") == after["seq"]))["t"] == "speech"
        await peer.close()
