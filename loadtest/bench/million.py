"""Ten lakh (issue 19): a million live WebSocket sessions on one machine, as a simulated multi-host cluster.

    make million                                              # the full run (root; about 20-30 minutes)
    PYTHONPATH=. .venv/bin/python -m loadtest.bench.million --connections 20000 --node-hosts 2 --workers 2

What it does (every wait bounded; everything it starts it stops, also on SIGTERM / SIGINT and after a crash):
1. hosts: one network namespace per node host and per client host on one bridge (million_hosts.py); a Valkey
   Cluster (three primaries, sharded pub/sub) on the bridge's address in the root namespace;
2. each node host runs `jansamvad serve --workers W` (each worker a process below the 20,000 open-file cap; the
   kernel spreads a host's connections over its workers with SO_REUSEPORT); there is no L4 balancer: each client
   process sends its connections round robin over the node hosts' addresses (HAProxy or IPVS would double the
   sockets and the kernel memory that this run is about);
3. client hosts run lean load-client processes (lean.py): every connection upgrades, says hello with its own citizen
   token, joins the town hall, stays joined and answers the node's pings;
4. ramps in steps at a bounded total handshake rate; before each step it checks MemAvailable and stops ramping when
   the next step would take it below the floor (`--mem-floor-mb`), or at the first step with failed joins, or at the
   ramp deadline: the report says which figure stopped it;
5. holds, then the leader speaks K sentences: each must reach every joined connection exactly once (by seq);
6. measures memory per connection (node, client, kernel), handshakes a second and per node CPU-second, time to
   deliver one sentence to all, Valkey CPU and memory; writes JSON (loadtest/reports/) and, with --markdown, the
   section `## Ten lakh (issue 19)` of docs/benchmarks.md and its chart; then tears everything down and checks it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jansamvad.auth import TokenService
from jansamvad.localredis import free_port
from jansamvad.protocol.roles import Role

from . import million_hosts, procstat
from .children import die_with_parent
from .million_hosts import Host, Hosts
from .million_probe import cpu_s, listen_drops, meminfo_kb, memory_kb, slab_growth, slabs_kb, sockstat, tree
from .million_valkey import Valkey
from .profile import PySpy, py_spy_binary, summarize
from .serverproc import jansamvad_command
from .storm import Leader

ROOT = Path(__file__).resolve().parents[2]
NODE_PORT = 8000
# The node wants 1,000 open files of headroom above --max-connections (listener, Redis, epoll, pipes, logs) and a
# process may hold 20,000; a worker that is full answers 503 + Retry-After and the client's retry lands elsewhere.
MAX_CONNECTIONS_PER_WORKER = 19_000


@dataclass
class Plan:
    connections: int = 1_000_000
    node_hosts: int = 9
    workers: int = 6
    client_hosts: int = 11
    procs_per_client_host: int = 5
    rate: int = 2500  # handshakes a second started over all client processes, at most
    concurrency: int = 12  # handshakes in flight per client process, at most (55 processes: 660 in all)
    step: int = 25_000  # connections per ramp step (MemAvailable is checked between steps)
    sentences: int = 5
    ping_interval_s: float = 300.0
    presence_interval_s: float = 60.0
    mem_floor_mb: int = 1500
    ramp_limit_s: float = 1080.0
    hold_s: float = 10.0
    deliver_timeout_s: float = 180.0
    rcvbuf: int = 8192
    hello: str = "offer"  # the citizens' hello: in the subprotocol offer (the page's way) or "message" (a frame)
    cluster: bool = True
    namespaces: bool = True
    prefix: str = "jsm-"
    net: int = 88
    profile: bool = True  # py-spy on one node worker during the second ramp step (if installed)
    end_by: str = ""  # "HH:MM" UTC: stop ramping in time for the speech, the checks and the teardown to end by then
    end_reserve_s: float = 300.0  # what the hold, the sentences, the checks and the teardown get after the ramp


@dataclass
class Run:
    plan: Plan
    hosts: Hosts | None = None
    valkey: Valkey | None = None
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    clients: list[asyncio.subprocess.Process] = field(default_factory=list)
    client_pids: list[int] = field(default_factory=list)
    port: int = NODE_PORT  # every node host's port (a free one in loopback mode, where the hosts share one stack)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    admin_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    logs: Path = field(default_factory=lambda: ROOT / "loadtest" / "reports" / f"million-{time.strftime('%H%M%S')}")

    def node_pids(self) -> list[int]:
        return [pid for proc in self.nodes for pid in tree(proc.pid)]

    def env(self) -> dict[str, str]:
        return {**os.environ, "JANSAMVAD_SECRET": self.secret, "JANSAMVAD_ADMIN_KEY": self.admin_key,
                "PYTHONPATH": str(ROOT)}  # fmt: skip


def snapshot(run: Run) -> dict[str, Any]:
    """The machine's and the processes' memory and CPU right now."""
    mem = meminfo_kb()
    nodes, clients = run.node_pids(), run.client_pids
    valkey = run.valkey.pids if run.valkey else []
    return {
        "t": time.monotonic(),
        "mem_available_kb": mem["MemAvailable"],
        "slab_kb": mem["Slab"],
        "slab_unreclaimable_kb": mem["SUnreclaim"],
        "page_tables_kb": mem["PageTables"],
        "tcp_buffers_kb": sockstat()["mem_kb"],
        "node": {**memory_kb(nodes), "cpu_s": cpu_s(nodes), "processes": len(nodes)},
        "client": {**memory_kb(clients), "cpu_s": cpu_s(clients), "processes": len(clients)},
        "valkey": {**memory_kb(valkey), "cpu_s": cpu_s(valkey)},
        "loadavg": procstat.loadavg(),
    }


def node_argv(run: Run, host: Host, redis_url: str) -> list[str]:
    p = run.plan
    return host.wrap([
        *jansamvad_command(), "serve", "--host", host.address, "--port", str(run.port),
        "--workers", str(p.workers), "--redis-url", redis_url, "--log-level", "warning",
        "--max-connections", str(MAX_CONNECTIONS_PER_WORKER),
        # Many citizens share a client host's one address here (as behind a carrier's CGNAT); the ramp's pace is set
        # by the clients (--rate), so the node's own handshake budget is raised out of the way.
        "--max-connections-per-ip", "1000000", "--handshakes-per-second", "100000",
        "--hello-timeout", "60", "--ping-interval", str(p.ping_interval_s), "--ping-timeout", "60",
        "--presence-interval", str(p.presence_interval_s),
        # ~130 processes share 2 cores here: a Redis reply can wait a second for a CPU without Valkey being slow, and
        # the default 1 s deadline would fail the node's calls fast (joins answered `unavailable`) for nothing.
        "--redis-command-timeout", "10",
    ])  # fmt: skip


def http_json(url: str, body: dict[str, Any] | None = None, key: str = "") -> Any:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


async def start_nodes(run: Run, redis_url: str) -> None:
    assert run.hosts is not None
    run.logs.mkdir(parents=True, exist_ok=True)
    for i, host in enumerate(run.hosts.nodes):
        log = (run.logs / f"node-{i}.log").open("ab")
        argv = node_argv(run, host, redis_url)
        run.nodes.append(
            subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=run.env(),
                preexec_fn=die_with_parent,
            )
        )  # fmt: skip
        log.close()
    deadline = time.monotonic() + 60 + 10 * len(run.nodes) * run.plan.workers / 4
    for i, host in enumerate(run.hosts.nodes):
        while True:
            if run.nodes[i].poll() is not None:
                raise RuntimeError(f"node host {i} exited: see {run.logs}/node-{i}.log")
            try:
                await asyncio.to_thread(http_json, f"http://{host.address}:{run.port}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node host {i} not healthy in time") from None
                await asyncio.sleep(0.5)
    # Every worker of every host must be up (healthz answers as soon as one of a host's workers listens).
    # (`--workers 1` runs the node in the supervisor's own process: no children to wait for.)
    wanted = len(run.nodes) * run.plan.workers if run.plan.workers > 1 else 0
    while sum(len(tree(p.pid)) - 1 for p in run.nodes) < wanted:
        if time.monotonic() > deadline:
            raise RuntimeError("not every node worker started in time")
        await asyncio.sleep(0.5)
    await asyncio.sleep(3.0)  # the last workers finish binding and joining Redis


async def start_clients(run: Run, th: str) -> None:
    assert run.hosts is not None
    p = run.plan
    procs = len(run.hosts.clients) * p.procs_per_client_host
    targets = ",".join(f"{h.address}:{run.port}" for h in run.hosts.nodes)
    rate = max(1.0, p.rate / procs)
    for j, host in enumerate(run.hosts.clients):
        for k in range(p.procs_per_client_host):
            index = j * p.procs_per_client_host + k
            argv = [sys.executable, "-m", "loadtest.bench.lean", "--index", str(index), "--targets", targets,
                    "--th", th, "--rate", f"{rate:.3f}", "--concurrency", str(p.concurrency),
                    "--rcvbuf", str(p.rcvbuf), "--hello", p.hello, "--lifetime", "5400"]  # fmt: skip
            if not run.hosts.namespaces:
                argv += ["--source", host.address]
            log = (run.logs / f"client-{index}.log").open("ab")
            proc = await asyncio.create_subprocess_exec(
                *host.wrap(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=run.env(),
                cwd=ROOT, limit=1 << 26, preexec_fn=die_with_parent,
            )  # fmt: skip
            log.close()
            run.clients.append(proc)
            run.client_pids.append(proc.pid)
    for proc in run.clients:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert ready.get("ready"), ready


async def ask(run: Run, commands: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """One command to each client process (in order), all answered within `timeout`."""

    async def one(proc: asyncio.subprocess.Process, cmd: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await proc.stdin.drain()
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError(f"client process {proc.pid} ended (see its log in {run.logs})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"client process {proc.pid}: {reply['error']}")
        return reply

    async with asyncio.timeout(timeout):
        return await asyncio.gather(*(one(p, c) for p, c in zip(run.clients, commands, strict=True)))


def end_by_epoch(hhmm: str) -> float | None:
    """`HH:MM` UTC today as a Unix time (None when unset)."""
    if not hhmm:
        return None
    hour, minute = (int(x) for x in hhmm.split(":"))
    now = time.gmtime()
    return time.time() + (hour * 3600 + minute * 60) - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)


async def profile_during(run: Run, out: dict[str, Any], step: int) -> PySpy | None:
    """py-spy (sampling from outside, non-blocking) on one node worker over ramp step 2: where a join's CPU goes
    with many processes on two cores. The worker is the largest child of node host 0's supervisor."""
    if not run.plan.profile or step != 2 or py_spy_binary() is None or not run.nodes:
        return None
    workers = tree(run.nodes[0].pid)[1:] or [run.nodes[0].pid]
    worker = max(workers, key=lambda pid: memory_kb([pid])["rss_kb"])
    spy = PySpy(worker, run.logs / "node-profile.raw", rate=100, native=False)
    spy.start()
    return spy


async def settle(run: Run, limit_s: float = 90.0) -> float:
    """Until the idle cluster uses under half a core (starting ~130 processes on 2 cores takes a while)."""
    started = time.monotonic()
    pids = run.node_pids() + run.client_pids
    before = cpu_s(pids)
    while time.monotonic() - started < limit_s:
        await asyncio.sleep(2.0)
        now = cpu_s(pids)
        if now - before < 1.0:
            break
        before = now
    return round(time.monotonic() - started, 1)


async def ramp(run: Run, out: dict[str, Any]) -> None:
    p = run.plan
    n = len(run.clients)
    total, samples, stopped = 0, [snapshot(run)], ""
    out["failed"] = {}  # joins that failed every try (lean.MAX_ATTEMPTS), by reason
    out["retried"] = {}  # tries that failed and were tried again, as a citizen's page does, by reason
    started = time.monotonic()
    per_conn_kb = 0.0
    end_by = end_by_epoch(p.end_by)
    while total < p.connections:
        step = min(p.step, p.connections - total)
        now = samples[-1]
        avail_mb = now["mem_available_kb"] / 1024
        if per_conn_kb and avail_mb - step * per_conn_kb / 1024 < p.mem_floor_mb:
            stopped = (f"MemAvailable: {avail_mb:.0f} MB left; the next {step:,} connections at the measured "
                       f"{per_conn_kb:.1f} KB each would go below the {p.mem_floor_mb} MB floor")  # fmt: skip
            break
        step_s = (time.monotonic() - started) / max(1, total) * step if total else 0.0  # the last steps' pace
        if end_by is None and time.monotonic() + step_s - started > p.ramp_limit_s:  # --end-by replaces the limit
            pace = total / (time.monotonic() - started)
            stopped = f"ramp time limit ({p.ramp_limit_s:.0f} s) reached: joins ran at ~{pace:.0f}/s"
            break
        if end_by is not None and time.time() + step_s > end_by - p.end_reserve_s:
            stopped = (f"time: the run had to end by {p.end_by} UTC (the machine's slot); joins ran at "
                       f"~{total / (time.monotonic() - started):.0f}/s")  # fmt: skip
            break
        counts = [step // n + (1 if i < step % n else 0) for i in range(n)]
        spy = await profile_during(run, out, len(samples))
        replies = await ask(run, [{"op": "open", "count": c} for c in counts], timeout=120 + 3 * step / p.rate)
        total = sum(r["joined"] for r in replies)
        failed = dict(sum((Counter(r["failed"]) for r in replies), Counter()))
        retried = dict(sum((Counter(r["retried"]) for r in replies), Counter()))
        samples.append({**snapshot(run), "connections": total})
        if spy is not None:
            await spy.stop()
            out["node_profile"] = {"worker_pid": spy.pid, "during_step": 2, **summarize(spy.out, top=12)}
        # The next step's cost: what MemAvailable lost per connection so far, or (if the page cache or another
        # process blurred that) the sum of what the nodes, the clients and the kernel's slab grew, if larger.
        first, last = samples[0], samples[-1]
        grown = sum(last[k]["pss_kb"] - first[k]["pss_kb"] for k in ("node", "client", "valkey"))
        grown += last["slab_kb"] - first["slab_kb"] + last["page_tables_kb"] - first["page_tables_kb"]
        per_conn_kb = max(first["mem_available_kb"] - last["mem_available_kb"], grown) / max(1, total)
        print(f"ramp: {total:,} joined, MemAvailable {samples[-1]['mem_available_kb'] // 1024} MB, "
              f"{per_conn_kb:.1f} KB/conn, failed {failed}, retried {retried}, load {samples[-1]['loadavg']}",
              file=sys.stderr)  # fmt: skip
        out["failed"] = dict(Counter(out["failed"]) + Counter(failed))
        out["retried"] = dict(Counter(out["retried"]) + Counter(retried))
        if sum(failed.values()) > step // 200:
            stopped = f"joins failed in the last step: {failed} (more than 0.5 %)"
            break
    samples[0]["connections"] = 0
    out["ramp_s"] = round(time.monotonic() - started, 1)
    out["stopped_by"] = stopped or "reached the target"
    out["samples"] = samples


async def speak(run: Run, leader: Leader, out: dict[str, Any]) -> list[int]:
    p = run.plan
    n = len(run.clients)
    spoken, sent_ns = [], []
    for i in range(p.sentences):
        sent_ns.append(time.monotonic_ns())
        reply = await leader.request({"t": "speech", "text": f"वाक्य {i + 1}: दस लाख लोगों तक एक साथ", "final": True})
        spoken.append(int(reply["seq"]))
        waited = await ask(run, [{"op": "wait", "seq": spoken[-1], "timeout": p.deliver_timeout_s}] * n,
                           timeout=p.deliver_timeout_s + 30)  # fmt: skip
        print(f"sentence {i + 1} (seq {spoken[-1]}): {sum(w['got'] for w in waited):,} of "
              f"{sum(w['joined'] for w in waited):,}", file=sys.stderr)  # fmt: skip
    out["sent_ns"] = sent_ns
    return spoken


def check(spoken: list[int], sent_ns: list[int], collected: list[dict[str, Any]], opened: int) -> dict[str, Any]:
    joined = sum(c["joined"] for c in collected)
    missing = 0
    deliver_s = []
    for seq, sent in zip(spoken, sent_ns, strict=True):
        got = [c["counts"].get(str(seq), 0) for c in collected]
        missing += sum(abs(c["joined"] - g) for c, g in zip(collected, got, strict=True))  # fewer or more: wrong
        deliver_s.append(round((max(int(c["last_ns"].get(str(seq), 0)) for c in collected) - sent) / 1e9, 3))
    return {
        "joined_at_end": joined,
        "lost_connections": opened - joined,
        "deliveries_missing": missing,
        "gaps": sum(c["gaps"] for c in collected),
        "repeats": sum(c["repeats"] for c in collected),
        "every_connection_every_sentence_once": missing == 0
        and opened == joined
        and not any(c["gaps"] or c["repeats"] for c in collected),
        "deliver_all_s": deliver_s,
        "pings_answered": sum(c["pings"] for c in collected),
        "closes": {k: sum(c["closes"].get(k, 0) for c in collected) for c in collected for k in c["closes"]},
        "other_messages": {k: sum(c["other"].get(k, 0) for c in collected) for c in collected for k in c["other"]},
    }


def figures(out: dict[str, Any]) -> dict[str, Any]:
    """Per connection and per second, from the samples before the ramp and after the hold."""
    base, held = out["samples"][0], out["held"]
    n = max(1, out["check"]["joined_at_end"])
    ramp_end = out["samples"][-1]
    joined = ramp_end["connections"]

    def ramp_cpu(kind: str) -> float:
        return float(ramp_end[kind]["cpu_s"] - base[kind]["cpu_s"])

    def per(after: float, before: float) -> float:
        return round((after - before) / n, 3)

    return {
        "connections": out["check"]["joined_at_end"],
        "node_rss_kb_per_conn": per(held["node"]["rss_kb"], base["node"]["rss_kb"]),
        "node_pss_kb_per_conn": per(held["node"]["pss_kb"], base["node"]["pss_kb"]),
        "client_rss_kb_per_conn": per(held["client"]["rss_kb"], base["client"]["rss_kb"]),
        "client_pss_kb_per_conn": per(held["client"]["pss_kb"], base["client"]["pss_kb"]),
        "slab_kb_per_conn_both_ends": per(held["slab_kb"], base["slab_kb"]),
        "slab_unreclaimable_kb_per_conn_both_ends": per(held["slab_unreclaimable_kb"], base["slab_unreclaimable_kb"]),
        "tcp_buffers_kb_per_conn_both_ends": per(held["tcp_buffers_kb"], base["tcp_buffers_kb"]),
        "page_tables_kb_per_conn": per(held["page_tables_kb"], base["page_tables_kb"]),
        "mem_available_used_kb_per_conn": per(base["mem_available_kb"], held["mem_available_kb"]),
        "node_base_pss_mb": round(base["node"]["pss_kb"] / 1024),
        "client_base_pss_mb": round(base["client"]["pss_kb"] / 1024),
        "handshakes_per_s": round(joined / max(0.001, out["ramp_s"]), 1),
        "handshakes_per_node_cpu_s": round(joined / max(0.001, ramp_end["node"]["cpu_s"] - base["node"]["cpu_s"]), 1),
        "node_cpu_ms_per_handshake": round(1000 * ramp_cpu("node") / max(1, joined), 3),
        "client_cpu_ms_per_handshake": round(1000 * ramp_cpu("client") / max(1, joined), 3),
        "valkey_cpu_s_ramp": round(ramp_end["valkey"]["cpu_s"] - base["valkey"]["cpu_s"], 2),
        "valkey_rss_mb": round(held["valkey"]["rss_kb"] / 1024, 1),
        "valkey_rss_mb_before": round(base["valkey"]["rss_kb"] / 1024, 1),
    }  # fmt: skip


async def drive(run: Run, out: dict[str, Any]) -> None:
    p = run.plan
    reason = million_hosts.namespaces_usable() if p.namespaces else "asked for loopback addresses"
    if reason is None:
        run.hosts = Hosts.create(p.prefix, p.net, p.node_hosts, p.client_hosts)
    else:
        out["namespaces_fallback"] = reason
        run.hosts = Hosts.loopback(p.prefix, p.net, p.node_hosts, p.client_hosts)
        run.port = free_port()
    run.valkey = Valkey(run.hosts.gateway, cluster=p.cluster)
    run.valkey.start()  # in this thread: its servers' PR_SET_PDEATHSIG follows the thread that started them
    await start_nodes(run, run.valkey.url)
    first = f"http://{run.hosts.nodes[0].address}:{run.port}"
    th = str((await asyncio.to_thread(http_json, f"{first}/api/townhalls", {"title": "दस लाख", "lang": "hi"},
                                      run.admin_key))["id"])  # fmt: skip
    leader_token = TokenService(run.secret).issue(sub="l-million", role=Role.LEADER, th=th, ttl_s=7200, name="नेता")[0]
    leader = await Leader.join(first, leader_token)
    await leader.request({"t": "go_live"})
    # The leader leaves during the ramp and comes back to speak: its client's own keepalive (websockets' 20 s ping)
    # must not meet 20 minutes of a node on a crowded machine.
    await leader.close()
    await start_clients(run, th)
    out["settled_s"] = await settle(run)
    out["slabs_before"] = slabs_kb()
    await ramp(run, out)
    await asyncio.sleep(p.hold_s)
    out["held"] = snapshot(run)
    out["slab_growth_kb"] = slab_growth(out["slabs_before"], slabs_kb())
    del out["slabs_before"]
    out["sockets_per_host"] = {h.name: sockstat(run.nodes[i].pid)["inuse"] for i, h in enumerate(run.hosts.nodes)}
    out["listen_drops_per_host"] = {h.name: listen_drops(run.nodes[i].pid) for i, h in enumerate(run.hosts.nodes)}
    leader = await Leader.join(first, leader_token)
    spoken = await speak(run, leader, out)
    collected = await ask(run, [{"op": "collect"}] * len(run.clients), timeout=120)
    out["check"] = check(spoken, out.pop("sent_ns"), collected, out["samples"][-1]["connections"])
    out["after_speech"] = snapshot(run)
    out["figures"] = figures(out)
    await leader.close()


def teardown(run: Run) -> dict[str, Any]:
    """SIGKILL every process we started (by PID, clients first: nothing is measured any more), then the hosts."""
    started = time.monotonic()
    pids = run.client_pids + run.node_pids() + (run.valkey.pids if run.valkey else [])
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in run.nodes:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    if run.valkey is not None:
        run.valkey.stop()
    removed = run.hosts.destroy() if run.hosts is not None else {}
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and not million_hosts._zombie(pid)]
    left = million_hosts.ours(run.plan.prefix) if run.hosts is not None and run.hosts.namespaces else []
    return {"seconds": round(time.monotonic() - started, 1), "processes_alive": len(alive), "namespaces_left": left,
            "removed": removed, "clean": not alive and not left}  # fmt: skip


def run_million(plan: Plan) -> dict[str, Any]:
    run = Run(plan)
    out: dict[str, Any] = {"scenario": "million", "plan": asdict(plan), "loadavg_before": procstat.loadavg(),
                           "machine": procstat.machine(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}  # fmt: skip

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}

    async def drive_then_end_clients() -> None:
        try:
            await drive(run, out)
        finally:  # inside the loop, so that the pipes of the client processes close before it does
            for proc in run.clients:
                if proc.returncode is None:
                    proc.kill()
            for proc in run.clients:
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    pass

    try:
        asyncio.run(drive_then_end_clients())
    except (Exception, KeyboardInterrupt) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        out["loadavg_after"] = procstat.loadavg()
        out["teardown"] = teardown(run)
        for s, handler in old.items():
            signal.signal(s, handler)
    out["logs"] = str(run.logs.relative_to(ROOT))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(Plan()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    parser.add_argument("--markdown", help="replace the section `## Ten lakh (issue 19)` of this file")
    parser.add_argument("--chart", default="docs/million.png", help="with --markdown: the chart's path")
    args = vars(parser.parse_args(argv))
    markdown, chart = args.pop("markdown"), args.pop("chart")
    plan = Plan(**args)
    result = run_million(plan)
    reports = ROOT / "loadtest" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"million-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "machine")}, ensure_ascii=False))
    print(f"report: {path}", file=sys.stderr)
    if markdown and "figures" in result:
        from .million_report import write_section

        write_section(result, Path(markdown), Path(chart), " ".join(sys.argv[1:] if argv is None else argv))
    ok = "error" not in result and result.get("check", {}).get("every_connection_every_sentence_once")
    sys.exit(0 if ok and result["teardown"]["clean"] else 1)


if __name__ == "__main__":
    main()
