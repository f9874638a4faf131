"""`RedisConn.execute_together` (a join batch's two restriction MGETs): every command's reply in order, in one round
trip on a standalone server and one call each in a cluster; a pooled connection the server dropped is replaced
and the commands sent again, as `execute` does."""

from __future__ import annotations

import pytest

from tests.contract.conftest import REDIS_BACKENDS, Backend, backend_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture(params=REDIS_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return backend_for(request, request.param)


async def test_redis_conn_together_answers_each_command_in_order_across_slots(backend: Backend) -> None:
    conn = backend.conn().retain()
    here, everywhere = backend.keys.townhall("th-1"), backend.keys.townhall("*")  # two slots in a cluster
    try:
        await conn.execute("SET", here.restriction("c-1"), "one")
        await conn.execute("SET", everywhere.restriction("c-2"), "two")
        replies = await conn.execute_together(
            ("MGET", here.restriction("c-1"), here.restriction("c-2")),
            ("MGET", everywhere.restriction("c-1"), everywhere.restriction("c-2")),
            ("GET", here.restriction("c-1")),
        )
        assert replies == [[b"one", None], [None, b"two"], b"one"]
    finally:
        await conn.close()


async def test_redis_conn_together_replaces_a_connection_the_server_dropped(backend: Backend) -> None:
    if backend.kind != "redis":
        pytest.skip("the cluster path is execute's own, with its own retries")
    conn = backend.conn().retain()
    key = backend.keys.townhall("th-2").restriction("c-3")
    try:
        await conn.execute("SET", key, "three")
        await conn.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")  # every pooled connection, this one too
        assert await conn.execute_together(("MGET", key), ("GET", key)) == [[b"three"], b"three"]
    finally:
        await conn.close()
