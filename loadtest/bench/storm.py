"""Reconnect storm at scale: tens of thousands of sessions dropped at the same instant, all reconnecting at once.

    python -m loadtest.bench.storm --clients 30000 --workers 3 --client-procs 4

What it does (loopback only; every loop bounded in count and time):
1. starts Valkey and one node with `--workers W` (SO_REUSEPORT: W processes share the port, each below the
   20,000 open-file cap) and admission control (`--handshakes-per-second` per worker);
2. joins N citizens from P client processes (each process its own source addresses in 127.0.0.0/8, so no source
   runs out of ephemeral ports), and a leader who speaks;
3. aborts every citizen's connection at the same moment (no close handshake: a NAT or load balancer restart), the
   leader speaks twice during the storm, and every citizen reconnects at once with `last_seq`, honouring HTTP 503
   `Retry-After` with jitter (x0.5-1.5) like the real clients;
4. measures the time until every citizen is back, the 503s, /healthz answer times during the storm (from a thread),
   and checks that every citizen holds exactly the spoken seqs, in order, once each.

Prints one JSON line; `--markdown FILE` appends a report section. The clients (`StormClient`) and the health probe
are shared with `tests/test_chaos.py`, which runs the same storm at a few thousand clients on one process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgpack
from loadtest.bench import wire

from jansamvad.auth import TokenService
from jansamvad.protocol.roles import Role

from . import procstat
from .million_probe import tree
from .profile import PySpy, summarize
from .sockets import connect_from
from .storm_client import EARLY_CLOSES, LATE_CLOSES, LeanStormClient

PROBE_TIMEOUT_S = 5.0


def http_status(url: str, path: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url + path, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, TimeoutError):
        return 0


class StormClient:
    """A lean raw WebSocket client (streams, zero mask key) that behaves like the real ones: on HTTP 503 it waits
    Retry-After with jitter (x0.5..1.5), on a refused or reset connection it backs off with jitter, and it resumes
    with the last seq it saw. `source` picks the local address (spread over 127.0.0.0/8 for tens of thousands)."""

    def __init__(self, port: int, token: str, rng: random.Random, source: str | None = None) -> None:
        self.port, self.token, self.rng, self.source = port, token, rng, source
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.seqs: list[int] = []
        self.last_seq: int | None = None
        self.rejected = 0  # HTTP 503 answers
        self.most_retry_after = 0  # the longest Retry-After one was told (join_backlog.py: it grows with the queue)
        self.refused = 0  # connect errors
        self.closed_early = 0  # closed after the 101 but before welcome (1013 join timeout, 4008): reconnected
        self.recovered: bool | None = None
        self.problems: list[str] = []  # LeanStormClient's: this one raises instead
        self.back = asyncio.Event()

    async def connect(self) -> None:
        """Connect and join; a close before `welcome` (1013, 4008: docs/protocol.md says reconnect) starts over."""
        while not await self._attempt():
            self.closed_early += 1
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))

    async def _attempt(self) -> bool:
        self.back.clear()
        while True:
            try:
                if self.source:
                    sock = await connect_from(self.source, "127.0.0.1", self.port)
                    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
                else:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 16)
            except OSError:
                self.refused += 1
                await asyncio.sleep(self.rng.uniform(0.1, 0.5))
                continue
            try:
                writer.write(wire.upgrade_request("127.0.0.1", self.port))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                writer.transport.abort()
                self.refused += 1
                await asyncio.sleep(self.rng.uniform(0.1, 0.5))
                continue
            code = int(head.split(b" ", 2)[1])
            if code == 101:
                break
            writer.transport.abort()
            if code != 503:
                raise AssertionError(head)
            self.rejected += 1
            lines = head.split(b"\r\n")
            retry_after = next((int(v.split(b":", 1)[1]) for v in lines if v.lower().startswith(b"retry-after:")), None)
            if retry_after is None:  # docs/protocol.md: every 503 of the handshake says when to come back
                raise AssertionError(f"HTTP 503 without Retry-After: {head!r}")
            self.most_retry_after = max(self.most_retry_after, retry_after)
            await asyncio.sleep(retry_after * self.rng.uniform(0.5, 1.5))
        hello: dict[str, object] = {"t": "hello", "token": self.token}
        if self.last_seq is not None:
            hello["last_seq"] = self.last_seq
        writer.write(wire.message_frame(hello))
        self.writer = writer
        self.task = asyncio.create_task(self._read(reader, writer))
        back = asyncio.create_task(self.back.wait())
        await asyncio.wait((back, self.task), return_when=asyncio.FIRST_COMPLETED)
        if self.back.is_set():
            return True
        back.cancel()
        writer.transport.abort()
        self.writer = None
        return False

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                opcode, payload = await wire.read_frame(reader)
                if opcode == wire.OP_PING:
                    writer.write(wire.client_frame(wire.OP_PONG, payload))
                    continue
                if opcode == wire.OP_CLOSE:
                    return
                message = msgpack.unpackb(payload)
                t = message.get("t")
                if t == "welcome":
                    self.recovered = message.get("recovered")
                    self.back.set()
                elif t == "speech":
                    self.seqs.append(message["seq"])
                    self.last_seq = message["seq"]
                elif t == "snapshot":
                    self.last_seq = message["seq"] if self.last_seq is None else max(self.last_seq, message["seq"])
                elif t == "error":
                    raise AssertionError(message)
        except (OSError, asyncio.IncompleteReadError):
            return

    def drop(self) -> None:
        """The connection vanishes without a close handshake (a network blip, a load balancer restart)."""
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None

    async def stop(self) -> None:
        self.drop()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class HealthProbe:
    """Asks /healthz every 100 ms from a thread (not a busy event loop) and keeps the worst answer time.

    The node answers it on the same event loop that parses the storm's handshakes, so an answer waits behind the
    burst of upgrades that arrived just before it. The probe allows 5 s (a load balancer's health check should
    allow as much) and every probe must get its 200."""

    def __init__(self, url: str) -> None:
        self.url, self.worst, self.count = url, 0.0, 0
        self.failures: list[tuple[int, float]] = []  # (status, seconds); status 0: no answer in time or refused
        self.stopped = False

    def run(self) -> None:
        while not self.stopped:
            started = time.monotonic()
            code = http_status(self.url, "/healthz", timeout=PROBE_TIMEOUT_S)
            took = time.monotonic() - started
            self.worst = max(self.worst, took)
            self.count += 1
            if code != 200:
                self.failures.append((code, took))
            time.sleep(0.1)


class Leader:
    """The leader's session (websockets' client) on the staff lane, as the leader's page connects: speaks and waits
    for each acknowledgement.

    It reads every frame as it arrives, like the leader's page, into a queue of its own. A client that stops reading
    while the room's `viewers` counts keep coming fills websockets' receive buffer (16 frames), which then stops
    reading the socket: the node's keepalive ping is never answered and the node closes the session with 1011 after
    ping_interval + ping_timeout (40 s) without a pong. A storm's first connect of 30,000 can take longer than that."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.next_id = ws, 1
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, url: str, token: str) -> Leader:
        from websockets.asyncio.client import connect

        url = url.replace("http://", "ws://") + "/ws?lane=staff"
        # No client-side keepalive: the node pings the leader itself, and an orchestrator starved of CPU by tens of
        # thousands of joins on the same 2 cores must not close its own leader for a late pong.
        ws = await connect(url, subprotocols=["jansamvad.v1.msgpack"], ping_interval=None)  # type: ignore[list-item]
        leader = cls(ws)
        await ws.send(msgpack.packb({"t": "hello", "token": token}))
        while (await leader.recv())["t"] != "welcome":
            pass
        return leader

    async def _read(self) -> None:
        async for frame in self.ws:
            self.inbox.put_nowait(msgpack.unpackb(frame))

    async def recv(self) -> dict[str, Any]:
        getting = asyncio.ensure_future(self.inbox.get())
        done, _ = await asyncio.wait((getting, self.reader), timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if getting in done:
            return getting.result()
        getting.cancel()
        if self.reader in done:  # closed by the node: say with which code
            raise RuntimeError(f"the leader's session was closed: {self.ws.close_code} {self.ws.close_reason}")
        raise TimeoutError("the leader got nothing for 30 s")

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        msg_id, self.next_id = self.next_id, self.next_id + 1
        await self.ws.send(msgpack.packb({**message, "id": msg_id}))
        while (reply := await self.recv()).get("re") != msg_id:
            pass
        if reply["t"] != "ack":
            raise RuntimeError(f"the leader's {message['t']} was answered {reply}")
        return reply

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.reader, return_exceptions=True)


# ----------------------------------------------------------------------------------------------- client processes


def source_address(proc: int, i: int) -> str:
    """127.(20+proc).x.y: 250 addresses per process and 28k ephemeral ports each, far more than needed."""
    return f"127.{20 + proc}.{i // 250 % 250 + 1}.{i % 250 + 1}"


def _no_errors(answers: list[Any]) -> list[Any]:
    for answer in answers:
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"a client process: {answer['error']}")
    return answers


def _summed(counts: Any) -> dict[str, int]:
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(total)


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += procstat.cpu(pid).seconds
        except OSError:  # gone: a storm must not fail on its bookkeeping
            pass
    return total


CLIENTS: dict[str, type[StormClient] | type[LeanStormClient]] = {"lean": LeanStormClient, "streams": StormClient}


async def _timed_connect(client: StormClient | LeanStormClient, started: float, back: list[float]) -> None:
    await client.connect()
    back.append(time.monotonic() - started)


async def _serve_commands(
    pipe: Connection, port: int, tokens: list[str], proc: int, seed: int, kind: str, hello: str = "offer"
) -> None:
    rng = random.Random(seed)
    clients: list[StormClient | LeanStormClient]
    if kind == "lean":
        in_offer = hello == "offer"
        clients = [LeanStormClient(port, t, rng, source_address(proc, i), in_offer) for i, t in enumerate(tokens)]
    else:  # the streams client says hello as a message
        clients = [CLIENTS[kind](port, t, rng, source_address(proc, i)) for i, t in enumerate(tokens)]
    loop = asyncio.get_running_loop()
    try:
        while True:
            command, arg = await loop.run_in_executor(None, pipe.recv)
            if command == "connect" or command == "storm":
                if command == "storm":
                    for client in clients:
                        client.drop()
                before = [sum(c.rejected for c in clients), sum(c.refused for c in clients)]
                before.append(sum(c.closed_early for c in clients))
                closes_before = Counter(EARLY_CLOSES)
                started = time.monotonic()
                back: list[float] = []

                try:
                    async with asyncio.timeout(arg):
                        await asyncio.gather(*(_timed_connect(c, started, back) for c in clients))
                except TimeoutError:  # say so instead of leaving the orchestrator waiting on the pipe
                    pipe.send({"error": f"{len(clients) - len(back)} of {len(clients)} not back within {arg} s"})
                    continue
                pipe.send(
                    {
                        "back_s": sorted(back),
                        "rejected": sum(c.rejected for c in clients) - before[0],
                        "refused": sum(c.refused for c in clients) - before[1],
                        "closed_early": sum(c.closed_early for c in clients) - before[2],
                        "early_closes": dict(EARLY_CLOSES - closes_before),
                        "most_503_one_client": max(c.rejected for c in clients),
                        "most_retry_after_s": max(c.most_retry_after for c in clients),
                        "recovered": sum(1 for c in clients if c.recovered),
                    }
                )
            elif command == "wait_seq":
                try:
                    async with asyncio.timeout(60):
                        while not all(c.last_seq == arg for c in clients):
                            await asyncio.sleep(0.05)
                except TimeoutError:  # say who is behind and why, instead of leaving the orchestrator on the pipe
                    behind = [c.last_seq for c in clients if c.last_seq != arg]
                    why = f"closed after welcome: {dict(LATE_CLOSES)}"
                    pipe.send({"error": f"{len(behind)} not at seq {arg} in 60 s (e.g. at {behind[:5]}); {why}"})
                    continue
                pipe.send(True)
            elif command == "verify":
                wrong = [c.seqs + c.problems for c in clients if c.seqs != arg or c.problems]
                pipe.send({"wrong": len(wrong), "example": wrong[0] if wrong else None})
            elif command == "stop":
                break
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
        pipe.send("stopped")


def client_process(
    pipe: Connection, port: int, tokens: list[str], proc: int, seed: int, kind: str, hello: str = "offer"
) -> None:
    import uvloop

    uvloop.run(_serve_commands(pipe, port, tokens, proc, seed, kind, hello))


# ------------------------------------------------------------------------------------------------------- the run


def run(opts: argparse.Namespace) -> dict[str, Any]:
    from jansamvad.cluster import LocalCluster
    from jansamvad.localredis import free_port

    health_port = free_port()

    per_worker = -(-opts.clients // opts.workers) + 2000
    if per_worker > 18_000:
        raise SystemExit(f"{opts.clients} clients over {opts.workers} workers exceed 18,000 per worker: add workers")
    local = LocalCluster(
        nodes=1,
        workers=opts.workers,
        redis="standalone",
        balancer=False,
        extra_args=[
            "--handshakes-per-second", str(opts.rate),
            "--max-connections-per-ip", "1000000",
            # All clients share 127.0.0.1: per-network admission is out of the way (a real storm comes from many).
            "--ip-handshakes-per-second", "1000000", "--ip-handshake-burst", "1000000",
            "--max-unjoined-per-ip", "1000000",
            "--max-connections", str(per_worker),
            "--health-port", str(health_port),
            *(["--max-joining", str(opts.max_joining)] if opts.max_joining else []),
        ],
    )  # fmt: skip
    local.start()
    ctx = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs: list[Any] = []
    probes: list[HealthProbe] = []
    result: dict[str, Any] = {}
    try:
        node = local.node_procs[0]
        assert node.proc is not None
        node_pid = node.proc.pid
        valkey_pids = [server.proc.pid for server in local.redis_servers if server.proc is not None]
        th = local.create_townhall("तूफ़ान")
        tokens = TokenService(local.secret)
        citizen_tokens = [
            tokens.issue(sub=f"c-{i}", role=Role.CITIZEN, th=th, ttl_s=3600, name="c")[0] for i in range(opts.clients)
        ]
        for p in range(opts.client_procs):
            mine, theirs = ctx.Pipe()
            share = citizen_tokens[p :: opts.client_procs]
            proc = ctx.Process(
                target=client_process,
                args=(theirs, node.port, share, p, opts.seed + p, opts.client, opts.hello),
                daemon=True,
            )
            proc.start()
            pipes.append(mine)
            procs.append(proc)

        async def leader_session() -> dict[str, Any]:
            leader_token = tokens.issue(sub="l-1", role=Role.LEADER, th=th, ttl_s=3600, name="l")[0]
            leader = await Leader.join(node.url, leader_token)
            await leader.request({"t": "go_live"})

            def ask_all(command: str, arg: Any) -> list[Any]:
                for pipe in pipes:
                    pipe.send((command, arg))
                return _no_errors([pipe.recv() for pipe in pipes])

            started = time.monotonic()
            first = await asyncio.to_thread(ask_all, "connect", opts.bound_s * 4)
            first_in = time.monotonic() - started
            print(f"storm: first connect of {opts.clients:,} in {first_in:.1f} s", file=sys.stderr, flush=True)
            spoken = [(await leader.request({"t": "speech", "text": f"पहले {i}"}))["seq"] for i in range(2)]
            await asyncio.to_thread(ask_all, "wait_seq", spoken[-1])

            # The same probe on the main port (whose listen queue the storm overflows) and on the health port.
            probes.extend([HealthProbe(node.url), HealthProbe(f"http://127.0.0.1:{health_port}")])
            threads = [threading.Thread(target=probe.run, daemon=True) for probe in probes]
            for thread in threads:
                thread.start()
            # Whose CPU the storm took: on this machine the clients share the node's cores, on a real one they are
            # phones, so the node's own CPU per rejoin is what says how fast a node machine takes a storm back.
            groups = {"node": tree(node_pid), "clients": [proc.pid for proc in procs], "valkey": valkey_pids}
            spy = None
            if opts.profile:  # one worker, from the drop to the last one back: where a rejoin's node CPU goes
                busiest = max(groups["node"], key=lambda pid: _cpu_s([pid]))  # a worker (not the supervisor)
                spy = PySpy(busiest, Path(opts.profile), native=False)
                spy.start()
                await asyncio.sleep(1.0)  # py-spy attaches
            cpu_before = {name: _cpu_s(pids) for name, pids in groups.items()}
            started = time.monotonic()
            for pipe in pipes:  # every process drops all its clients and reconnects them at once
                pipe.send(("storm", opts.bound_s))
            missed = [(await leader.request({"t": "speech", "text": f"बीच में {i}"}))["seq"] for i in range(2)]
            storm = await asyncio.to_thread(lambda: _no_errors([pipe.recv() for pipe in pipes]))
            all_back = time.monotonic() - started
            cpu_storm = {name: _cpu_s(pids) - cpu_before[name] for name, pids in groups.items()}
            profile = None
            if spy is not None:
                await spy.stop()
                profile = summarize(spy.out)
            await asyncio.to_thread(ask_all, "wait_seq", missed[-1])
            caught_up = time.monotonic() - started
            for probe, thread in zip(probes, threads, strict=True):
                probe.stopped = True
                thread.join(10)
            main_probe, health_probe = probes
            verified = await asyncio.to_thread(ask_all, "verify", spoken + missed)
            ready = http_status(node.url, "/readyz")
            await leader.close()
            back = sorted(s for part in storm for s in part["back_s"])
            return {
                "first_connect_s": round(first_in, 2),
                "first_connect_503": sum(p["rejected"] for p in first),
                "all_back_s": round(all_back, 2),
                "back_p50_s": round(back[len(back) // 2], 2),
                "back_p99_s": round(back[int(len(back) * 0.99)], 2),
                "all_caught_up_s": round(caught_up, 2),
                "storm_503": sum(p["rejected"] for p in storm),
                "most_503_one_client": max(p["most_503_one_client"] for p in storm),
                "most_retry_after_s": max(p["most_retry_after_s"] for p in first + storm),
                "refused_connects": sum(p["refused"] for p in storm),
                "closed_before_welcome": sum(p["closed_early"] for p in first + storm),
                # By close code, lean client only ("none": lost without a close frame): first connect, storm.
                "early_closes": [_summed(p["early_closes"] for p in part) for part in (first, storm)],
                "recovered": sum(p["recovered"] for p in storm),
                "lost_or_duplicated": sum(v["wrong"] for v in verified),
                "healthz_probes": health_probe.count,
                "healthz_failures": len(health_probe.failures),
                "healthz_worst_s": round(health_probe.worst, 2),
                "main_port_healthz_probes": main_probe.count,
                "main_port_healthz_failures": len(main_probe.failures),
                "main_port_healthz_worst_s": round(main_probe.worst, 2),
                "readyz_after": ready,
                "storm_cpu_s": {name: round(seconds, 2) for name, seconds in cpu_storm.items()},
                "node_cpu_us_per_rejoin": round(cpu_storm["node"] * 1e6 / opts.clients),
                "client_cpu_us_per_rejoin": round(cpu_storm["clients"] * 1e6 / opts.clients),
                # The node's CPU alone spread over this machine's cores: how long the storm would take the node side
                # with the clients elsewhere, as they are in a real one (every worker busy, none idle).
                "node_only_s_on_these_cores": round(cpu_storm["node"] / (os.cpu_count() or 1), 2),
                **({"profile": profile} if profile else {}),
            }

        result = asyncio.run(leader_session())
    finally:
        for probe in probes:
            probe.stopped = True
        for pipe in pipes:
            try:
                pipe.send(("stop", None))
            except OSError:
                pass
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        local.stop()
    return {
        "scenario": "reconnect_storm",
        "clients": opts.clients,
        "workers": opts.workers,
        "client_procs": opts.client_procs,
        "client": opts.client,
        "hello": opts.hello if opts.client == "lean" else "message",
        "handshakes_per_second_per_worker": opts.rate,
        "max_joining": opts.max_joining or "default",
        **result,
    }


def markdown(result: dict[str, Any], argv: list[str]) -> str:
    r = result
    cpu = r["storm_cpu_s"]
    client_us, node_only = r["client_cpu_us_per_rejoin"], r["node_only_s_on_these_cores"]
    rate = r["handshakes_per_second_per_worker"]
    health = f"{r['healthz_probes']} probes, {r['healthz_failures']} failed, worst {r['healthz_worst_s']} s"
    main = (
        f"{r['main_port_healthz_probes']} probes, {r['main_port_healthz_failures']} failed (5 s timeout), "
        f"worst {r['main_port_healthz_worst_s']} s"
    )
    shed = (
        f"{r['storm_503']:,} (at most {r['most_503_one_client']} for one client; "
        f"longest `Retry-After` {r.get('most_retry_after_s', 1)} s)"
    )
    return f"""
### Reconnect storm: {r["clients"]:,} clients ({time.strftime("%Y-%m-%d %H:%M")})

`{" ".join(["python -m loadtest.bench.storm", *argv])}` on {os.cpu_count()} CPUs ({platform.machine()},
Python {platform.python_version()}); one node with {r["workers"]} workers
(`--handshakes-per-second {rate}`, `--max-joining {r["max_joining"]}` each), Valkey, and {r["client_procs"]} client
processes (`--client {r.get("client", "streams")}`, hello {r.get("hello", "message")}) on the same machine.

| measure | value |
|---|---|
| first connect of all clients | {r["first_connect_s"]} s ({r["first_connect_503"]:,} HTTP 503s) |
| **all back after the drop** | **{r["all_back_s"]} s** (per client: p50 {r["back_p50_s"]} s, p99 {r["back_p99_s"]} s) |
| all caught up (the 2 speeches spoken during the storm received) | {r["all_caught_up_s"]} s |
| HTTP 503 + `Retry-After` during the storm | {shed} |
| refused or reset connects | {r["refused_connects"]:,} |
| closed after the 101 before `welcome` (1013 / 4008), reconnected | {r.get("closed_before_welcome", 0):,} |
| resumed with `recovered: true` | {r["recovered"]:,} of {r["clients"]:,} |
| **speech lost, duplicated or out of order** | **{r["lost_or_duplicated"]} clients** |
| `/healthz` on `--health-port` during the storm | {health} |
| `/healthz` on the main port during the storm | {main} |
| `/readyz` afterwards | {r["readyz_after"]} |
| CPU during the storm: node (all workers) / clients / Valkey | {cpu["node"]} / {cpu["clients"]} / {cpu["valkey"]} s |
| node CPU per rejoin (client CPU per rejoin) | {r["node_cpu_us_per_rejoin"]:,} µs ({client_us:,} µs) |
| the node's CPU alone over this machine's {os.cpu_count()} cores (clients elsewhere) | {node_only} s |
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=3, help="node worker processes sharing the port")
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1000, help="--handshakes-per-second of each worker")
    parser.add_argument("--max-joining", type=int, help="--max-joining of each worker (default: the node's, 2000)")
    parser.add_argument("--bound-s", type=float, default=180.0, help="fail if the storm takes longer")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--client", choices=sorted(CLIENTS), default="lean", help="lean: storm_client.py; streams: StormClient"
    )
    parser.add_argument(
        "--hello",
        choices=("offer", "message"),
        default="offer",
        help="the lean client's hello: in the subprotocol offer, as the citizen's page joins, or as a first frame",
    )
    parser.add_argument("--markdown", help="append a report section to this file")
    parser.add_argument("--profile", help="py-spy one worker during the storm into this raw file (needs py-spy)")
    opts = parser.parse_args(argv)
    result = run(opts)
    print(json.dumps(result))
    if opts.markdown:
        with open(opts.markdown, "a", encoding="utf-8") as out:
            out.write(markdown(result, argv))
    failed = result["lost_or_duplicated"] or result["healthz_failures"] or result["recovered"] != opts.clients
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
