"""The live roll-up at full scale: 80 nodes' per-second writes for 1M citizens over 1 lakh booths, against a real
Valkey on loopback (docs/benchmarks.md "Roll-up by region", docs/capacity.md).

Simulates what the 80 node processes do each tick, in one process: every node holds its share of the citizens, each
at a random booth of the generated Bihar tree (jansamvad.regions_generate); each second `--churn` of them leave and as
many join at random booths, and questions, reactions and poll votes arrive at random booths. Each node's `UnitTally`
(what a real node runs) counts them, and its one write per tick goes to Valkey through `RedisRollup`, all 80 at once as
a real tick would send them, each unit summed up the tree by the node. The dashboard reads `--reads` times a tick
the two views it shows most: the state and its districts, a district and its constituencies. With `--screens`, booth
screens at random booths (spread over the nodes) say how many people watch them (20-500) and `--screen-updates` of
them change that number each second (jansamvad/screens.py: two more gauges per unit, `screens` and `audience`).

Measured: Redis calls per second (Valkey's own command stats), Valkey CPU per second (INFO cpu), the write batch's
wall time, a node's CPU per second for its tally (counting and taking the changed units) and for its write (the
client's encoding included), and a dashboard read's latency. Bounded: `--ticks` ticks. Prints one JSON object.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.rollup [--nodes 80] [--citizens 1000000] [--ticks 10]
        [--screens 60000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

import redis

from jansamvad.localredis import start_standalone
from jansamvad.redis_conn import RedisConn
from jansamvad.redis_keys import RedisKeys
from jansamvad.regions_generate import generate
from jansamvad.rollup.redis import RedisRollup
from jansamvad.rollup.tally import PathOf, UnitTally, path_in
from jansamvad.screens import ScreenAudiences

TH = "bench"


def _cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _calls(client: redis.Redis) -> tuple[int, int]:
    """(scripts called by clients, commands run inside them and by clients): Valkey counts both."""
    stats = client.info("commandstats")
    scripts = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))
    return scripts, sum(int(s["calls"]) for s in stats.values())


class SimNode:
    """One node's citizens (their booths) and its tally."""

    def __init__(self, name: str, booths: list[str], citizens: int, rng: random.Random) -> None:
        self.name = name
        self.tally = UnitTally()
        self.screens = ScreenAudiences(self.tally)
        self.screen_ids: list[int] = []
        self.at: list[str] = []
        for _ in range(citizens):
            self.join(rng.choice(booths))

    def join(self, booth: str) -> None:
        self.at.append(booth)
        self.tally.join(TH, booth)

    def leave(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.at))
        self.at[i], self.at[-1] = self.at[-1], self.at[i]
        self.tally.leave(TH, self.at.pop())


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(16)
    tree = generate()
    booths = [u.code for u in tree.units.values() if u.level == "booth"]
    path_of = path_in(tree)
    root = next(u.code for u in tree.units.values() if not u.parent)
    district = tree.children[root][0]
    # What the war room reads: the state and its districts, then one district and its constituencies.
    views = [[root, *tree.children[root]], [district, *tree.children[district]]]
    per_node = args.citizens // args.nodes
    nodes = [SimNode(f"node{i}", booths, per_node, rng) for i in range(args.nodes)]
    for screen in range(args.screens):  # the booth screens, spread over the nodes like their connections
        node = nodes[screen % args.nodes]
        node.screens.joined(screen, TH, rng.choice(booths))
        node.screens.set_people(screen, rng.randint(20, 500))
        node.screen_ids.append(screen)
    screen_updates = max(0, int(len(nodes[0].screen_ids) * args.screen_updates))
    server = start_standalone(persistent=True, appendfsync="everysec")  # AOF as in production
    stats = server.client()
    # A generous command timeout: on a shared machine one full write can pass the node's 1 s, and the bench measures
    # how long the calls take rather than failing them.
    conn = RedisConn(server.url, max_in_flight=args.nodes * 2, command_timeout_s=10.0)
    rollup = RedisRollup(conn, RedisKeys("bench"), ttl_s=600.0)  # the full writes below take longer than 3 s
    try:
        # Every node sends all its units once (what a node taken for dead does when it comes back), one after another:
        # real nodes fill up over minutes, so this is the worst single write, not a tick.
        full_wall = []
        for node in nodes:
            start = time.perf_counter()
            await _write(rollup, node, _take(node, path_of))
            full_wall.append(time.perf_counter() - start)

        churn = max(1, int(per_node * args.churn))
        per_tick = {kind: max(0, int(rate / args.nodes)) for kind, rate in (("asked", args.questions),
                    ("reactions", args.reactions), ("votes", args.votes))}  # fmt: skip
        tally_cpu, write_cpu, batch_wall, changed, read_wall = [], [], [], [], []
        redis_cpu_start, calls_start, wall_start = _cpu_s(stats), _calls(stats), time.perf_counter()
        for _ in range(args.ticks):
            tick_start = time.perf_counter()
            cpu = time.process_time()
            for node in nodes:  # a second of churn and activity, as each node's sessions would cause it
                for _ in range(churn):
                    node.leave(rng)
                    node.join(rng.choice(booths))
                for kind, n in per_tick.items():
                    for _ in range(n):
                        node.tally.count(TH, kind, rng.choice(booths))
                for _ in range(screen_updates):  # volunteers counting their crowd again
                    node.screens.set_people(rng.choice(node.screen_ids), rng.randint(20, 500))
            takes = [_take(n, path_of) for n in nodes]
            tally_cpu.append((time.process_time() - cpu) / args.nodes)
            changed.append(statistics.mean(len(t[0]) for t in takes))
            cpu, start = time.process_time(), time.perf_counter()
            await asyncio.gather(*(_write(rollup, n, t) for n, t in zip(nodes, takes, strict=True)))
            batch_wall.append(time.perf_counter() - start)
            write_cpu.append((time.process_time() - cpu) / args.nodes)
            for _ in range(args.reads):
                for codes in views:
                    start = time.perf_counter()
                    counts = await rollup.read(TH, codes)
                    read_wall.append(time.perf_counter() - start)
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick_start)))  # ticks a second apart
        elapsed = time.perf_counter() - wall_start
        redis_cpu = _cpu_s(stats) - redis_cpu_start
        scripts_end, commands_end = _calls(stats)
        scripts, commands = scripts_end - calls_start[0], commands_end - calls_start[1] - 2  # less our INFO calls
        viewers = (await rollup.read(TH, [root]))[root]["viewers"]
        assert viewers == per_node * args.nodes, (viewers, per_node * args.nodes)  # the sum is exact
        assert counts  # the last view read something
        return {
            "nodes": args.nodes,
            "citizens": per_node * args.nodes,
            "booths": len(booths),
            "screens": args.screens,
            "screen_updates_per_s": screen_updates * args.nodes,
            "units_in_tree": len(tree),
            "ticks": args.ticks,
            "churn_per_node_per_s": churn * 2,
            "activity_per_s": {kind: n * args.nodes for kind, n in per_tick.items()},
            "full_write_of_one_node_ms": _ms(full_wall),
            "changed_units_per_node_write": round(statistics.mean(changed), 1),  # with their ancestors
            "redis_calls_per_s": round(scripts / elapsed, 1),
            "redis_commands_per_s_inside_scripts": round((commands - scripts) / elapsed, 1),
            "redis_cpu_percent_of_a_core": round(100 * redis_cpu / elapsed, 1),
            "write_batch_wall_ms": _ms(batch_wall),
            "node_tally_cpu_ms_per_s": round(1000 * statistics.mean(tally_cpu), 3),
            "node_write_cpu_ms_per_s": round(1000 * statistics.mean(write_cpu), 3),
            "dashboard_read_ms": _ms(read_wall) if read_wall else None,
        }
    finally:
        await rollup.close()
        stats.close()
        server.cleanup()


Take = tuple[dict[str, int], dict[str, dict[str, int]], bool]


def _take(node: SimNode, path_of: PathOf) -> Take:
    return node.tally.take(TH, path_of)


async def _write(rollup: RedisRollup, node: SimNode, take: Take) -> None:
    viewers, activity, full = take
    assert await rollup.write(node.name, TH, viewers, activity, full=full)
    node.tally.written(TH, "written")


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered) * 1000, 2), "max": round(ordered[-1] * 1000, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=80)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=10, help="seconds simulated (bounded)")
    parser.add_argument("--churn", type=float, default=0.01, help="share of a node's citizens leaving a second")
    parser.add_argument("--questions", type=int, default=200, help="questions a second over all nodes")
    parser.add_argument("--reactions", type=int, default=20_000, help="reactions a second over all nodes")
    parser.add_argument("--votes", type=int, default=5_000, help="poll votes a second over all nodes")
    parser.add_argument("--reads", type=int, default=1, help="dashboard reads a tick")
    parser.add_argument("--screens", type=int, default=0, help="booth screens with an audience, over all nodes")
    parser.add_argument("--screen-updates", type=float, default=0.05, help="share of screens recounting a second")
    print(json.dumps(asyncio.run(run(parser.parse_args(argv))), indent=2))


if __name__ == "__main__":
    main()
