"""A quiet node on Redis (issue 19 item 4): its presence and roll-up reports are renewed once they are half their
lifetime old instead of every tick, and they never expire while the node lives."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.report_renewal import renew_after_s
from jansamvad.server import RunningServer
from tests.contract.conftest import Backend
from tests.helpers import joined, make_hall
from tests.redis_servers import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

MakeServer = Callable[..., Awaitable[RunningServer]]


@pytest.mark.redis
async def test_report_renewal_quiet_node_renews_presence_and_rollup_at_half_lifetime(
    make_server: MakeServer, redis_standalone: RedisServer
) -> None:
    backend = Backend("standalone", redis_standalone.url)
    # The default tick: reports live 3 s and are renewed on the first tick 1.5 s after the last write, a whole second
    # before they would lapse (at a 0.2 s tick that was 0.4 s: a loaded CI machine's stalled loop failed it).
    interval = 1.0
    server = await make_server(redis_url=backend.url, redis_prefix=backend.prefix, presence_interval_s=interval)
    hall = await make_hall(server)
    await joined(server, hall.citizen_token(sub="c-quiet"))
    keys = RedisKeys(backend.prefix).townhall(hall.th)
    conn = RedisConn(backend.url or "")
    try:
        await asyncio.sleep(3 * interval)  # the join's changes are written
        seen: dict[str, list[tuple[float, float]]] = {"presence": [], "rollup": []}
        loop = asyncio.get_running_loop()
        end = loop.time() + 8 * interval
        while loop.time() < end:
            seconds, micros = await conn.execute("TIME")
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            for name, key in (("presence", keys.presence_expiry), ("rollup", keys.rollup_nodes)):
                members = await conn.execute("ZRANGE", key, 0, -1)
                assert len(members) == 1, f"the node's {name} report is gone"
                expires_ms = float(await conn.execute("ZSCORE", key, members[0]))
                assert expires_ms > now_ms, f"the node's {name} report expired"
                if not seen[name] or seen[name][-1][0] != expires_ms:
                    seen[name].append((expires_ms, loop.time()))
            await asyncio.sleep(0.02)
        for name, renewals in seen.items():
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(renewals)]
            assert gaps, f"the {name} report was never renewed"
            # Every tick before: one tick apart. Now: the first tick at least half the lifetime after the last renewal.
            assert min(gaps) >= 1000 * renew_after_s(interval) - 50, (name, gaps)
    finally:
        await conn.close()
