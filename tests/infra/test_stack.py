"""The compose stack, up for real: 3 node containers, a 6-container Valkey cluster, HAProxy with TLS, Prometheus.

infra/compose/stack.sh builds every image from Debian packages and PyPI wheels (no registry) and starts the stack
with podman-compose under a project of its own (jansamvad-test) and free loopback ports. Then:

- a short locust `townhall` run through HAProxy over https/wss, judged by the scenario's own checks (no stream
  event lost or doubled, no failed request);
- the same stack under faults: a node container's process killed (SIGKILL), the Valkey primary that holds the town hall
  stopped (its replica is promoted) and started again, HAProxy restarted, while a leader speaks, citizens listen and
  ask; every speech and question the stack acknowledged must reach every listener / be in the export afterwards.

Skips only when podman, mmdebstrap or podman-compose are missing (fails then under REQUIRE_CONTAINER_ENGINE=1,
which .ci/run sets once it has installed them). The stack is removed with its volumes at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from jansamvad.localredis import free_port
from jansamvad.redis_keys import townhall_tag

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "compose"
STACK = COMPOSE / "stack.sh"
PROJECT = "jansamvad-test"
JSON = Subprotocol("jansamvad.v1.json")
EVENTS = {"speech", "announce", "status", "question", "poll", "settings"}

pytestmark = [pytest.mark.slow]


@dataclass
class Stack:
    base: str  # https://localhost:PORT, through HAProxy
    admin_key: str
    ca: Path
    env: dict[str, str]
    prometheus: str = ""  # http://127.0.0.1:PORT

    @property
    def ws_url(self) -> str:
        return self.base.replace("https://", "wss://") + "/ws"

    @property
    def origin(self) -> Origin:
        """The page's origin, as a browser sends it: the stack allows only its own (JANSAMVAD_ALLOWED_ORIGIN)."""
        return Origin(self.base)

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def container(self, service: str) -> str:
        return f"{PROJECT}_{service}_1"

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, *, admin: bool = True) -> Any:
        request = urllib.request.Request(
            self.base + path, method=method, data=json.dumps(body).encode() if body is not None else None
        )
        request.add_header("content-type", "application/json")
        if admin:
            request.add_header("authorization", f"Bearer {self.admin_key}")
        with urllib.request.urlopen(request, timeout=10, context=self.ssl()) as response:
            return json.loads(response.read() or b"null")


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)


def missing_engine() -> str | None:
    missing = [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]
    if not (Path(sys.executable).parent / "podman-compose").exists() and shutil.which("podman-compose") is None:
        missing.append("podman-compose (pip install -e '.[infra]')")
    if not missing:
        return None
    reason = f"{', '.join(missing)} not installed (.ci/run installs podman, runc, mmdebstrap)"
    if os.environ.get("REQUIRE_CONTAINER_ENGINE") == "1":
        pytest.fail(f"REQUIRE_CONTAINER_ENGINE=1 but {reason}")
    return reason


def host_limits() -> tuple[int, int]:
    out = subprocess.run(
        ["bash", "-c", "source infra/images/limits.sh && echo $STACK_NOFILE $STACK_NPROC"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = missing_engine()
    if reason:
        pytest.skip(reason)
    nofile, nproc = host_limits()
    https, http, stats, prom = (free_port() for _ in range(4))
    admin_key = "stack-" + secrets.token_hex(16)
    env_file = tmp_path_factory.mktemp("stack") / ".env"
    env_file.write_text(
        f"JANSAMVAD_SECRET={secrets.token_hex(48)}\nJANSAMVAD_ADMIN_KEY={admin_key}\n"
        f"GRAFANA_ADMIN_PASSWORD={secrets.token_hex(12)}\nJANSAMVAD_ALLOWED_ORIGIN=https://localhost:{https}\n"
        f"STACK_NOFILE={nofile}\nSTACK_NPROC={nproc}\nHAPROXY_MAXCONN={(nofile - 1000) // 2}\n"
        f"STACK_HTTPS_PORT={https}\nSTACK_HTTP_PORT={http}\nSTACK_STATS_PORT={stats}\n"
        f"STACK_PROMETHEUS_PORT={prom}\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "STACK_PROJECT": PROJECT,
        "STACK_ENV_FILE": str(env_file),
        "COMPOSE": str(Path(sys.executable).parent / "podman-compose"),
    }
    if not Path(env["COMPOSE"]).exists():
        env["COMPOSE"] = shutil.which("podman-compose") or "podman-compose"

    def stack_sh(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(STACK), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    stack_sh("reset", timeout=180)  # leftovers of an interrupted run
    volumes_before = set(podman("volume", "ls", "--quiet").stdout.split())
    # compose.yaml fixes the network's subnet (HAProxy's and Valkey's addresses), so a stack of another project
    # (`make stack-up`) holds it: say so rather than fail somewhere in podman.
    for network in podman("network", "ls", "--format", "{{.Name}}").stdout.split():
        subnets = podman("network", "inspect", network, "--format", "{{range .Subnets}}{{.Subnet}} {{end}}").stdout
        if "172.30.89.0/24" in subnets.split():
            pytest.fail(f"network {network} holds the stack's subnet: stop that stack first (make stack-down)")
    try:
        up = stack_sh("up", timeout=900)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield Stack(
            f"https://localhost:{https}", admin_key, COMPOSE / "certs" / "ca.pem", env, f"http://127.0.0.1:{prom}"
        )
    finally:
        down = stack_sh("reset", timeout=300)
        assert down.returncode == 0, down.stderr[-2000:]
        left = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}", "--format", "{{.Names}}")
        assert not left.stdout.strip(), f"containers left behind: {left.stdout}"
        volumes_left = set(podman("volume", "ls", "--quiet").stdout.split()) - volumes_before
        assert not volumes_left, f"volumes left behind: {volumes_left}"


@pytest.mark.timeout(1200)
def test_stack_serves_a_locust_townhall_through_haproxy_without_loss(stack: Stack) -> None:
    ca = str(stack.ca)
    result = subprocess.run(
        [sys.executable, str(ROOT / "loadtest" / "run_locust.py"), "--scenario", "townhall", "--users", "30",
         "--duration", "20s", "--target", stack.base, "--reports", str(ROOT / "loadtest" / "reports")],
        env={**stack.env, "JANSAMVAD_ADMIN_KEY": stack.admin_key, "SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca,
             "WEBSOCKET_CLIENT_CA_BUNDLE": ca},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    summary = result.stdout[result.stdout.find("=== JanSamvad load test") :]
    assert result.returncode == 0, summary or result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\[ok\] lost stream events: 0 ", summary), summary
    assert re.search(r"\[ok\] duplicate stream events: 0 ", summary), summary
    assert re.search(r"speech delivery +p50 .* \((\d+) samples\)", summary), summary
    assert "RESULT: PASS" in summary


@pytest.mark.timeout(1200)
def test_stack_prometheus_scrapes_every_node_and_haproxy(stack: Stack) -> None:
    deadline = time.monotonic() + 60  # the first scrape comes within one interval (5 s) of the start
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(stack.prometheus + "/api/v1/targets", timeout=10) as response:
            targets = json.loads(response.read())["data"]["activeTargets"]
        health = {t["labels"]["instance"]: t["health"] for t in targets}
        if health == {"node1": "up", "node2": "up", "node3": "up", "haproxy:8404": "up"}:
            return
        time.sleep(2)
    raise AssertionError(f"Prometheus targets: {health}")


# --- Faults ------------------------------------------------------------------------------------------------------


@dataclass
class Listener:
    """A citizen that stays in the town hall: reconnects after every drop with last_seq, records every event."""

    token: str
    seen: set[int] = field(default_factory=set)
    last_seq: int = 0
    reconnects: int = 0

    def apply(self, message: dict[str, Any]) -> None:
        if message.get("t") == "snapshot":
            self.seen.update(entry["seq"] for entry in message.get("speech", []))
            self.last_seq = max(self.last_seq, int(message["seq"]))
        elif message.get("t") in EVENTS and "seq" in message:
            self.seen.add(int(message["seq"]))
            self.last_seq = max(self.last_seq, int(message["seq"]))

    async def run(self, stack: Stack, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with connect(
                    stack.ws_url, ssl=stack.ssl(), subprotocols=[JSON], origin=stack.origin, open_timeout=5
                ) as ws:
                    hello: dict[str, Any] = {"t": "hello", "token": self.token}
                    if self.last_seq:
                        hello["last_seq"] = self.last_seq
                    await ws.send(json.dumps(hello))
                    async for raw in ws:
                        self.apply(json.loads(raw))
                        if stop.is_set():
                            return
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError):
                pass
            self.reconnects += 1
            await asyncio.sleep(0.5)


async def request(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send and wait for the ack or error that answers it (events in between are skipped)."""
    await ws.send(json.dumps(message))
    async with asyncio.timeout(8):
        while True:
            answer: dict[str, Any] = json.loads(await ws.recv())
            if answer.get("re") == message["id"] and answer.get("t") in {"ack", "error"}:
                return answer


@dataclass
class Actor:
    """The leader (speech) or a citizen (ask): one action at a time, with a key, resent until acknowledged."""

    token: str
    kind: str  # "speech" or "ask"
    acked: dict[str, Any] = field(default_factory=dict)  # key -> seq (speech) or qid (ask)
    errors: list[str] = field(default_factory=list)

    async def run(self, stack: Stack, stop: asyncio.Event, pause_s: float) -> None:
        number = 0
        key = ""
        while not stop.is_set():
            try:
                async with connect(
                    stack.ws_url, ssl=stack.ssl(), subprotocols=[JSON], origin=stack.origin, open_timeout=5
                ) as ws:
                    await ws.send(json.dumps({"t": "hello", "token": self.token}))
                    async with asyncio.timeout(8):  # as the web client does: act once welcomed
                        while json.loads(await ws.recv()).get("t") != "welcome":
                            pass
                    while not stop.is_set():
                        if not key:
                            number += 1
                            key = f"{self.kind}-{secrets.token_hex(4)}-{number:04d}"
                        text = f"{self.kind} {number}: नमस्ते"
                        answer = await request(ws, {"t": self.kind, "id": number, "text": text, "key": key})
                        if answer["t"] == "ack":
                            self.acked[key] = answer.get("seq") if self.kind == "speech" else answer.get("qid")
                            key = ""  # the next action gets a new key; a resend keeps the old one
                            await asyncio.sleep(pause_s)
                        else:
                            self.errors.append(answer.get("code", "?"))
                            await asyncio.sleep(min(float(answer.get("retry_ms") or 1000), 10_000) / 1000)
            except ConnectionClosed as error:
                self.errors.append(f"closed {error.rcvd.code if error.rcvd else 'without a close frame'}")
                await asyncio.sleep(0.5)
            except (OSError, InvalidStatus, TimeoutError) as error:
                self.errors.append(type(error).__name__)
                await asyncio.sleep(0.5)


def primary_of(stack: Stack, th: str) -> str:
    """The Valkey service (valkey-N) that is primary for the town hall's hash slot."""
    for n in range(1, 7):  # ask any Valkey container that runs (one of them may be the stopped primary)
        cli = stack.container(f"valkey-{n}")
        keyslot = podman("exec", cli, "valkey-cli", "cluster", "keyslot", townhall_tag(th))
        if keyslot.returncode == 0 and keyslot.stdout.strip().isdigit():
            break
    slot = int(keyslot.stdout.strip())
    nodes = podman("exec", cli, "valkey-cli", "cluster", "nodes").stdout
    for line in nodes.splitlines():
        parts = line.split()
        if "master" not in parts[2] or "fail" in parts[2]:
            continue
        for span in parts[8:]:
            low, _, high = span.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                address = parts[1].split(":")[0]  # 172.30.89.1N -> valkey-N (compose.yaml's fixed addresses)
                return f"valkey-{int(address.rsplit('.', 1)[1]) - 10}"
    raise AssertionError(f"no primary for slot {slot}:\n{nodes}")


def kill_container_process(name: str) -> None:
    """SIGKILL to the children of the container's PID 1 (tini), i.e. the node process itself, from the host."""
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
    assert children, f"{name}: tini has no child"
    for child in children:
        os.kill(int(child), signal.SIGKILL)


def node_ready(stack: Stack, service: str) -> bool:
    probe = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/readyz', timeout=2)"
    return podman("exec", stack.container(service), "python", "-c", probe, timeout=20).returncode == 0


async def wait_until(check: Any, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(1)


@pytest.mark.timeout(1200)
def test_stack_loses_nothing_acknowledged_when_a_node_valkey_and_haproxy_fail(stack: Stack) -> None:
    th = stack.api("POST", "/api/townhalls", {"title": "फॉल्ट टेस्ट"})["id"]
    stack.api("POST", f"/api/townhalls/{th}/start")
    leader = Actor(stack.api("POST", f"/api/townhalls/{th}/tokens", {"role": "leader"})["token"], "speech")

    def citizen(n: int) -> str:
        body = {"name": f"नागरिक {n}", "region": "Patna", "device_id": f"fault-test-device-{n:04d}"}
        token: str = stack.api("POST", f"/api/townhalls/{th}/join", body, admin=False)["token"]
        return token

    listeners = [Listener(citizen(n)) for n in range(6)]
    askers = [Actor(citizen(100 + n), "ask") for n in range(3)]
    primary = primary_of(stack, th)
    faults: list[str] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(listener.run(stack, stop)) for listener in listeners]
        tasks.append(asyncio.create_task(leader.run(stack, stop, pause_s=0.3)))
        tasks += [asyncio.create_task(asker.run(stack, stop, pause_s=5)) for asker in askers]
        try:
            await asyncio.sleep(5)
            # 1. A node crashes: its process gets SIGKILL (no drain, no goodbye to its clients), so the container
            # exits on its own and the restart policy (`unless-stopped`) brings it back. (`podman kill` would count
            # as stopped by the user, and nothing would restart it.)
            kill_container_process(stack.container("node2"))
            faults.append("node2's process killed")
            await asyncio.sleep(3)
            await wait_until(lambda: node_ready(stack, "node2"), 120, "node2 back and ready")
            # 2. The Valkey primary of this town hall stops; its replica takes over after cluster-node-timeout.
            assert podman("stop", "-t", "10", stack.container(primary)).returncode == 0
            faults.append(f"{primary} (primary of the town hall) stopped")
            await asyncio.sleep(15)
            promoted = await asyncio.to_thread(primary_of, stack, th)
            assert promoted != primary, f"no failover: {primary} still holds the town hall's slot"
            faults.append(f"{promoted} promoted")
            assert podman("start", stack.container(primary)).returncode == 0
            await wait_until(lambda: all(node_ready(stack, f"node{i}") for i in (1, 2, 3)), 120, "nodes ready")
            # 3. The load balancer restarts: every client connection is cut at once.
            assert podman("restart", "-t", "10", stack.container("haproxy")).returncode == 0
            faults.append("haproxy restarted")
            await asyncio.sleep(8)
            # Every acknowledged speech must reach every listener (each resumes with last_seq after each drop).
            wanted = set(leader.acked.values())
            end = time.monotonic() + 60
            while any(not wanted <= listener.seen for listener in listeners) and time.monotonic() < end:
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())

    spoken = set(leader.acked.values())
    asked = {qid for asker in askers for qid in asker.acked.values()}
    print(
        f"faults: {faults}; speeches acknowledged: {len(spoken)}, questions: {len(asked)}; leader's errors and "
        f"drops: {leader.errors}; listeners' reconnects: {[listener.reconnects for listener in listeners]}"
    )
    assert len(spoken) >= 20, f"too few speeches acknowledged to judge: {len(spoken)} (errors: {leader.errors})"
    for index, listener in enumerate(listeners):
        lost = sorted(spoken - listener.seen)
        assert not lost, f"listener {index} never got acknowledged speech seqs {lost} after {faults}"
        assert listener.reconnects >= 1, "the faults should have cut every listener at least once (HAProxy restart)"
    assert asked, f"no question acknowledged (errors: {[a.errors for a in askers]})"
    exported = {q["qid"] for q in stack.api("GET", f"/api/townhalls/{th}/export?format=json")["questions"]}
    assert asked <= exported, f"acknowledged questions missing from the store: {sorted(asked - exported)}"
