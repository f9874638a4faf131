"""Scenario `picows` (issue 19 item 4): JanSamvad and a minimal picows fan-out server side by side, in one run.

The same workload for both: 2 server processes joined by one Valkey, N listeners per process held by the same load
client (worker.py, counting every speech by seq: all delivered exactly once), and a leader that publishes `rounds`
sentences of `text_bytes` every `interval_s`.

- JanSamvad: `jansamvad serve` twice on the Valkey (`--redis-url`), citizens with real tokens, the leader a real
  leader connection on node A (speech → seq script → SPUBLISH → both nodes → tick → every listener).
- picows: picows_server.py twice, subscribed to one pub/sub channel; the bench PUBLISHes the msgpack speech map
  itself (the leader hop and the seq script are JanSamvad's alone); each process frames it once and writes it to
  every listener. It takes any hello: the listeners join token-less as far as the server is concerned.

Reported per side: node CPU per delivery (schedstat of both server processes over the speaking window, gross and
net of the idle rate measured just before), publish → receipt p50 / p99 (every delivery) and publish → last
receiver, RSS per connection (after the joins minus before, both processes), delivered == expected. The sides run
one after the other in the same run, on the same Valkey, unpinned (2 servers, Valkey and the clients share 2 cores;
`--pin` puts both servers of a side on core 0 and the clients, Valkey and the orchestrator on core 1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import shutil
import statistics
import sys
import time
from typing import Any

import msgpack
from redis.asyncio import Redis

from .. import drift
from ..children import die_with_parent
from ..harness import CLIENT_CORE, SERVER_CORE, BenchOptions, Receipts, Stage
from ..leader import speech_text
from ..pool import REPO, WorkerPool
from ..procstat import CpuSample, cpu, loadavg, rss_kb
from ..profile import PerfRecord, PySpy, summarize
from ..serverproc import ServerFailed, free_port
from .common import check_delivery, cpu_summary, latency_summary
from .crossnode import _stages, redis_server

CHANNEL = "bench:speech"
IDLE_S = 2.0
IDLE_TRIES = 5
SETTLE_S = 2.0  # after the joins, before RSS is read (as the memory scenario does)


@dataclasses.dataclass
class Workload:
    per_node: int = 10_000
    rounds: int = 20
    text_bytes: int = 200
    interval_s: float = 0.5
    picows_write: str = "raw"  # raw: pre-framed bytes to underlying_transport.write; send: picows frames per listener
    picows_read_buffer: int = 16 * 1024  # picows' default read_buffer_init_size
    profile: bool = False  # py-spy (--native) on the first server process of each side while the leader speaks
    perf: bool = False  # perf record -g (kernel stacks) on the first server process of each side instead
    # Pinned: both servers of either side on core 0, the client workers, Valkey and the orchestrator on core 1, so
    # neither side's servers lose time to the other's clients or to migrations (the default leaves it to the kernel).
    pin: bool = False


def _cpu_sum(pids: list[int]) -> CpuSample:
    total = CpuSample(0.0, 0.0, 0)
    for pid in pids:
        s = cpu(pid)
        total = CpuSample(total.user_s + s.user_s, total.system_s + s.system_s, total.sched_ns + s.sched_ns)
    return total


async def _idle_rate(pids: list[int]) -> float:
    before, t0 = _cpu_sum(pids), time.monotonic()
    await asyncio.sleep(IDLE_S)
    return (_cpu_sum(pids) - before).seconds / (time.monotonic() - t0)


async def _quiet_idle_rate(stages: list[Stage], pids: list[int]) -> float:
    """The nodes' idle rate over a window without broadcast writes: the last `viewers` update after the joins goes to
    every listener (a whole fan-out), and counted as idle it would make the net figure look too good."""
    for _ in range(IDLE_TRIES):
        before = [(await s.server.stats())["broadcast_writes"] for s in stages]
        rate = await _idle_rate(pids)
        after = [(await s.server.stats())["broadcast_writes"] for s in stages]
        if after == before:
            return rate
    return rate  # still busy after IDLE_TRIES windows: the last one, reported as it is


def _merge(parts: list[Receipts]) -> Receipts:
    merged = Receipts()
    for receipts in parts:
        merged.add_receipts(receipts)
    return merged


def _result(
    side: str,
    citizens: int,
    seqs: list[int],
    receipts: Receipts,
    delta: CpuSample,
    wall_s: float,
    idle_rate: float,
    rss_before: list[int],
    rss_after: list[int],
    extra: dict[str, Any],
) -> dict[str, Any]:
    deliveries = sum(receipts.counts.get(seq, 0) for seq in seqs)
    return {
        "side": side,
        "n": citizens,
        "rounds": len(seqs),
        "deliveries": deliveries,
        "check": check_delivery(receipts, seqs, citizens),
        "cpu": cpu_summary(delta, wall_s, idle_rate, deliveries),
        "latency": latency_summary(receipts, seqs),
        "rss_kb_per_conn": round((sum(rss_after) - sum(rss_before)) / max(1, citizens), 2),
        "rss_kb": rss_after,
        **extra,
    }


async def _profiled(opts: BenchOptions, w: Workload, side: str, pid: int, window: Any) -> tuple[Any, dict[str, Any]]:
    """Run the speaking window, under py-spy on `pid` when the workload asks for it; (its result, the profile)."""
    if w.perf:
        data = opts.reports_dir / f"perf-vs-picows-{side}-{pid}.data"
        perf = PerfRecord(pid, data)
        perf.start()
        await asyncio.sleep(1.0)  # perf attaches
        try:
            result = await window()
        finally:
            await perf.stop()
        return result, {"perf": str(data.relative_to(REPO))}
    if not w.profile:
        return await window(), {}
    raw = opts.reports_dir / f"profile-vs-picows-{side}.raw"
    spy = PySpy(pid, raw)
    spy.start()
    await asyncio.sleep(1.0)  # py-spy attaches
    try:
        result = await window()
    finally:
        await spy.stop()
    return result, {"profile": {"raw": str(raw.relative_to(REPO)), **summarize(raw)}} if raw.exists() else {}


async def _paced(rounds: int, interval_s: float, publish: Any) -> tuple[list[int], float]:
    """Call `publish(r)` every interval_s; the seqs it returns and the wall time from the first call."""
    seqs: list[int] = []
    t0 = time.monotonic()
    for r in range(rounds):
        delay = t0 + r * interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        seqs += await publish(r)
    return seqs, time.monotonic() - t0


async def _jansamvad(opts: BenchOptions, url: str, w: Workload) -> dict[str, Any]:
    stages = await _stages(opts, url, w.per_node, 2, "vs-picows-jansamvad")
    try:
        pids = [s.server.pid for s in stages]
        rss_before = [rss_kb(pid) for pid in pids]
        for stage in stages:
            join = await stage.add_citizens(w.per_node)
            if join["joined"] < w.per_node:
                raise ServerFailed(f"joins failed: {join['failed']}; {stage.server.log_tail(2)}")
        await asyncio.sleep(SETTLE_S)
        rss_after = [rss_kb(pid) for pid in pids]
        a = stages[0]
        await a.leaders.reserve(1, w.rounds)
        for stage in stages:
            await stage.collect()
        idle_rate = await _quiet_idle_rate(stages, pids)

        async def publish(r: int) -> list[int]:
            got, _ = await a.leaders.speak(1, f"j{r}", w.text_bytes)
            return got

        async def window() -> tuple[list[int], float, CpuSample]:
            before = _cpu_sum(pids)
            t0 = time.monotonic()
            seqs, _ = await _paced(w.rounds, w.interval_s, publish)
            if seqs:
                await asyncio.gather(*(s.wait_delivered(seqs[-1]) for s in stages))
            return seqs, time.monotonic() - t0, _cpu_sum(pids) - before

        stats_before = [await s.server.stats() for s in stages]
        (seqs, wall, delta), profile = await _profiled(opts, w, "jansamvad", pids[0], window)
        stats_after = [await s.server.stats() for s in stages]
        # What the nodes did in the window, from their own counters: a broadcast write per listener per sentence
        # (more would be other traffic), frames encoded per sentence per node (1: one format in use).
        counters = {
            key: sum(a[key] - b[key] for a, b in zip(stats_after, stats_before, strict=True))
            for key in ("broadcast_writes", "frames_built")
        }
        receipts = _merge([await s.collect() for s in stages])
        citizens = sum(s.citizens for s in stages)
        return _result(
            "jansamvad", citizens, seqs, receipts, delta, wall, idle_rate, rss_before, rss_after,
            {"command": stages[0].server.command(), "node_counters": counters, **profile},
        )  # fmt: skip
    finally:
        for stage in stages:
            await stage.close()


async def _start_picows(opts: BenchOptions, url: str, w: Workload) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    argv = ["taskset", "-c", str(SERVER_CORE)] if w.pin and shutil.which("taskset") else []
    argv += [
        sys.executable, "-m", "loadtest.bench.picows_server", "--port", str(port), "--redis-url", url,
        "--channel", CHANNEL, "--write", w.picows_write, "--read-buffer", str(w.picows_read_buffer),
        "--lifetime", str(opts.lifetime_s),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        line = await proc.stdout.readline()
    if not line.startswith(b"ready"):
        raise ServerFailed(f"picows_server did not start: {line!r}")
    return proc, port


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        async with asyncio.timeout(10):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _picows(opts: BenchOptions, url: str, w: Workload) -> dict[str, Any]:
    procs: list[tuple[asyncio.subprocess.Process, int]] = []
    pools: list[WorkerPool] = []
    redis = Redis.from_url(url)
    try:
        for _ in range(2):
            procs.append(await _start_picows(opts, url, w))
        workers = max(1, math.ceil(w.per_node / opts.conns_per_worker))
        for i in range(2):
            pools.append(
                await WorkerPool.start(workers, cpu=opts.client_core, lifetime=opts.lifetime_s, first_index=10 + i * 4)
            )
        pids = [p.pid for p, _ in procs]
        rss_before = [rss_kb(pid) for pid in pids]
        citizens = 0
        for (_, port), pool in zip(procs, pools, strict=True):
            k = len(pool)
            shares = [w.per_node // k + (1 if i < w.per_node % k else 0) for i in range(k)]
            args = {"host": "127.0.0.1", "port": port, "secret": "x" * 32, "th": "picows", "concurrency": 200}
            replies = await pool.call_each(
                "open", 60.0 + w.per_node / 100, [{**args, "count": s, "timeout": 30.0} for s in shares]
            )
            citizens += sum(r["open_joined"] for r in replies)
        await asyncio.sleep(SETTLE_S)
        rss_after = [rss_kb(pid) for pid in pids]
        for pool in pools:
            await pool.call_all("collect", 30.0, reset=True)
        idle_rate = await _idle_rate(pids)

        async def publish(r: int) -> list[int]:
            seq = r + 1
            text = speech_text(f"p{r}", w.text_bytes)
            message = {"t": "speech", "seq": seq, "text": text, "final": True, "ts": int(time.time() * 1000)}
            await redis.publish(CHANNEL, msgpack.packb(message))
            return [seq]

        async def window() -> tuple[list[int], float, CpuSample]:
            before = _cpu_sum(pids)
            t0 = time.monotonic()
            seqs, _ = await _paced(w.rounds, w.interval_s, publish)
            await asyncio.gather(
                *(p.call_all("wait", opts.round_timeout_s, seq=seqs[-1], timeout=opts.round_timeout_s) for p in pools)
            )
            return seqs, time.monotonic() - t0, _cpu_sum(pids) - before

        (seqs, wall, delta), profile = await _profiled(opts, w, "picows", pids[0], window)
        parts = []
        for pool in pools:
            receipts = Receipts()
            for part in await pool.call_all("collect", 30.0, reset=True):
                receipts.add(part)
            parts.append(receipts)
        return _result(
            "picows", citizens, seqs, _merge(parts), delta, wall, idle_rate, rss_before, rss_after,
            {"write": w.picows_write, "read_buffer_init_size": w.picows_read_buffer, **profile},
        )  # fmt: skip
    finally:
        await redis.aclose()
        for pool in pools:
            try:
                await pool.call_all("close", 30.0)
            finally:
                await pool.stop()
        for proc, _ in procs:
            await _stop(proc)


def _summary(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """One side's figures over its repeats: the median of each (a repeat that lost deliveries still counts)."""

    def median(values: list[float | None]) -> float | None:
        present = sorted(v for v in values if v is not None)
        return round(statistics.median(present), 3) if present else None

    return {
        "us_per_delivery": median([r["cpu"].get("us_per_delivery") for r in runs]),
        "us_per_delivery_net": median([r["cpu"].get("us_per_delivery_net_of_idle") for r in runs]),
        "p50_ms": median([r["latency"]["delivery_ms"].get("p50") for r in runs]),
        "p99_ms": median([r["latency"]["delivery_ms"].get("p99") for r in runs]),
        "last_receiver_p99_ms": median([r["latency"]["last_receiver_ms"].get("p99") for r in runs]),
        "rss_kb_per_conn": median([r["rss_kb_per_conn"] for r in runs]),
    }


def _ratios(jansamvad: dict[str, float | None], picows: dict[str, float | None]) -> dict[str, float | None]:
    """picows ÷ JanSamvad per figure: above 1 means JanSamvad is ahead (less CPU, lower latency, less memory)."""
    return {key: round(p / j, 3) if (p := picows[key]) and (j := jansamvad[key]) else None for key in jansamvad}


# Sides of an io_uring A/B: JanSamvad with --io-uring on / off (--order jansamvad-uring,jansamvad-direct,...).
URING, DIRECT = "jansamvad-uring", "jansamvad-direct"


def abba(repeats: int) -> tuple[str, ...]:
    """JanSamvad, picows, picows, JanSamvad, ...: a drift of the machine's load during the run hits both sides."""
    pair = ("jansamvad", "picows")
    return tuple(side for i in range(repeats) for side in (pair if i % 2 == 0 else pair[::-1]))


async def measure(
    opts: BenchOptions, w: Workload, *, order: tuple[str, ...] = ("jansamvad", "picows")
) -> dict[str, Any]:
    # Unpinned by default (2 servers, Valkey and the clients on 2 cores: the kernel balances); --pin: see Workload.
    opts = dataclasses.replace(opts, pin=w.pin)
    if w.pin:
        os.sched_setaffinity(0, {CLIENT_CORE})  # Valkey, started next, inherits it
    runs: list[dict[str, Any]] = []
    load_before = loadavg()
    async with redis_server(opts.reports_dir / "redis-vs-picows") as url:
        for side in order:
            run = _picows if side == "picows" else _jansamvad
            pileup = drift.pileup()
            # "jansamvad-uring" / "jansamvad-direct": the same nodes with --io-uring on / off, for an A/B in one run.
            if side in (URING, DIRECT):
                os.environ["JANSAMVAD_IO_URING"] = "on" if side == URING else "off"
            try:
                runs.append({**await run(opts, url, w), "side": side, "pileup_before": pileup})
            finally:
                os.environ.pop("JANSAMVAD_IO_URING", None)
    summary = {side: _summary([r for r in runs if r["side"] == side]) for side in dict.fromkeys(order)}
    result: dict[str, Any] = {
        "scenario": "picows",
        "workload": dataclasses.asdict(w),
        "order": list(order),
        "load_before": load_before,
        "load_after": loadavg(),
        "runs": runs,
        "summary": summary,
    }
    if "jansamvad" in summary and "picows" in summary:
        result["picows_over_jansamvad"] = _ratios(summary["jansamvad"], summary["picows"])
        result["picows_over_jansamvad_drift"] = _drift_ratios(runs, "jansamvad", "picows")
    if URING in summary and DIRECT in summary:  # direct ÷ io_uring: above 1, the ring is ahead
        result["direct_over_uring_drift"] = _drift_ratios(runs, URING, DIRECT)
    return result


def _drift_ratios(runs: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """b ÷ a per figure over the runs of these two sides (in their order), with a linear drift taken out."""
    pair = [r for r in runs if r["side"] in (a, b)]
    sides = [r["side"] for r in pair]
    return {key: drift.ratios([get(r) for r in pair], sides, a, b) for key, get in _FIGURES.items()}


_FIGURES = {  # the figures compared with the drift taken out (drift.py)
    "us_per_delivery": lambda r: r["cpu"].get("us_per_delivery"),
    "p50_ms": lambda r: r["latency"]["delivery_ms"].get("p50"),
    "p99_ms": lambda r: r["latency"]["delivery_ms"].get("p99"),
    "last_receiver_p99_ms": lambda r: r["latency"]["last_receiver_ms"].get("p99"),
}


def markdown(result: dict[str, Any]) -> str:
    """The side-by-side table of one run (docs/benchmarks.md)."""
    w = result["workload"]
    lines = [
        f"#### Fan-out vs picows: 2 processes on one Valkey, {w['per_node']:,} listeners each, {w['rounds']} × "
        f"{w['text_bytes']}-byte sentences every {w['interval_s']} s (scenarios/vs_picows.py)",
        "",
        f"Load average before {result['load_before']}, after {result['load_after']}; sides ran in the order "
        f"{', '.join(result['order'])}.",
        "",
        "| server | listeners | delivered / expected | node CPU µs per delivery (net of idle) | publish → receipt "
        "p50 / p99 ms | publish → last receiver p99 ms | RSS KB per connection |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        c, lat = r["cpu"], r["latency"]
        side = r["side"]
        label = side if side != "picows" else f"picows ({r['write']} write, read buffer {r['read_buffer_init_size']})"
        lines.append(
            f"| {label} | {r['n']:,} | {r['check']['delivered']:,} / {r['check']['expected']:,} | "
            f"{c.get('us_per_delivery')} ({c.get('us_per_delivery_net_of_idle')}) | "
            f"{lat['delivery_ms'].get('p50')} / {lat['delivery_ms'].get('p99')} | "
            f"{lat['last_receiver_ms'].get('p99')} | {r['rss_kb_per_conn']} |"
        )
    for side, m in result["summary"].items():
        lines.append(
            f"| **{side}, median** | | | {m['us_per_delivery']} ({m['us_per_delivery_net']}) | {m['p50_ms']} / "
            f"{m['p99_ms']} | {m['last_receiver_p99_ms']} | {m['rss_kb_per_conn']} |"
        )
    ratios = result.get("picows_over_jansamvad")
    if ratios:
        lines += [
            "",
            "picows ÷ JanSamvad, medians (above 1: JanSamvad ahead): "
            + ", ".join(f"{k} {v}" for k, v in ratios.items()),
        ]
    for key, r in result.get("picows_over_jansamvad_drift", {}).items():
        lines.append(f"{key}: means {r['mean']}, drift taken out {r['drift_fit']} (drift {r['slope_per_run']} per run)")
    for key, r in result.get("direct_over_uring_drift", {}).items():
        lines.append(f"direct ÷ io_uring, {key}: means {r['mean']}, drift taken out {r['drift_fit']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m loadtest.bench.scenarios.vs_picows`: this scenario alone, one JSON document on stdout."""
    import argparse
    import json

    import uvloop

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-node", type=int, default=10_000, help="listeners per server process")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--text-bytes", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--picows-write", choices=("raw", "send", "oswrite"), default="raw")
    p.add_argument("--picows-read-buffer", type=int, default=16 * 1024)
    p.add_argument(
        "--repeats", type=int, default=1, help="pairs of runs, in ABBA order (JanSamvad, picows, picows, ...)"
    )
    p.add_argument("--order", help="sides, comma-separated, in the order they run (overrides --repeats)")
    p.add_argument("--profile", action="store_true", help="py-spy on the first process of each side (adds load)")
    p.add_argument("--perf", action="store_true", help="perf record -g on the first process of each side")
    p.add_argument("--tick-ms", type=float, default=5.0, help="the node's --tick-ms")
    p.add_argument("--pin", action="store_true", help="servers on core 0; clients, Valkey and this process on core 1")
    args = p.parse_args(argv)
    w = Workload(
        args.per_node,
        args.rounds,
        args.text_bytes,
        args.interval,
        args.picows_write,
        args.picows_read_buffer,
        args.profile,
        args.perf,
        args.pin,
    )
    opts = BenchOptions(tick_ms=args.tick_ms, reports_dir=REPO / "loadtest" / "reports")
    result = uvloop.run(measure(opts, w, order=tuple(args.order.split(",")) if args.order else abba(args.repeats)))
    print(json.dumps(result, indent=1))
    print(markdown(result), file=sys.stderr)
    ok = all(r["check"]["ok"] for r in result["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
