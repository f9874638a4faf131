"""`python -m loadtest.bench`: run the scenarios, print JSON, append the report to docs/benchmarks.md, draw charts."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvloop

from . import anatomy, audio, charts, joins, procstat, report, targets
from .harness import CLIENT_CORE, SERVER_CORE, BenchOptions, Stage, unpinned
from .pool import REPO
from .scenarios import broadcast, crossnode, floor, handshake, memory, profiled, vs_picows

SCENARIOS = ("memory", "broadcast", "burst", "floor", "joins", "crossnode", "picows", "audio")
# Run only when named: `handshake`, the first bench's handshakes on one node without Redis (issue 19 item 3 asked for
# the join a citizen makes instead: `joins`, Valkey, 2 nodes, a growing room, the hello in the offer).
ON_REQUEST = ("handshake",)
MAX_PER_NODE = 19_800  # the node's open files are capped at 20,000: N + warm-up + leaders + its own files
FULL = {
    "sizes": [1_000, 5_000, 10_000, 19_500],
    "rounds": 20,
    "burst_rounds": 10,
    "handshakes": 10_000,
    "handshake_reps": 3,
    "join_clients": 10_000,
    "join_reps": 3,
    "cross_n": 10_000,
    "cross_memory_n": 50_000,
    "budget_s": 3600.0,
    "audio_n": 2_000,  # listeners of the audio scenario (the shared 2-core machine; the 20k needs a real one)
    "audio_s": 45.0,
}
QUICK = {
    "sizes": [200, 1_000],
    "rounds": 5,
    "burst_rounds": 3,
    "handshakes": 1_000,
    "handshake_reps": 1,
    "join_clients": 1_000,
    "join_reps": 1,
    "cross_n": 1_000,
    "cross_memory_n": 0,
    "budget_s": 150.0,
    "audio_n": 200,
    "audio_s": 8.0,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small N, few rounds, no picows: about a minute and a half")
    p.add_argument("--scenarios", help=f"comma-separated subset of {','.join(SCENARIOS)} (quick: all but picows)")
    p.add_argument("--sizes", help="comma-separated N for memory / broadcast / burst (default: by mode)")
    p.add_argument("--rounds", type=int, help="single-broadcast rounds per N")
    p.add_argument("--burst-size", type=int, default=20, help="speeches per tick in the burst scenario (>= 10)")
    p.add_argument("--burst-rounds", type=int, help="burst rounds per N")
    p.add_argument("--handshakes", type=int, help="connections per handshake rep")
    p.add_argument("--handshake-reps", type=int)
    p.add_argument("--handshake-workers", type=int, default=2)
    p.add_argument("--handshake-concurrency", type=int, default=100, help="handshakes in flight per client process")
    p.add_argument("--join-clients", type=int, help="citizens per joins rep (the room grows to this)")
    p.add_argument("--join-reps", type=int, help="runs of the joins scenario (the median is judged)")
    p.add_argument(
        "--join-client", choices=("picows", "websockets"), default="picows", help="the joins' outside client"
    )
    p.add_argument("--tick-ms", type=float, default=5.0, help="the node's --tick-ms")
    p.add_argument("--text-bytes", type=int, default=100, help="speech text size")
    p.add_argument("--conns-per-worker", type=int, default=10_000, help="sockets per client process (< 19,000)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the node to core 0 and the clients to core 1")
    p.add_argument("--picows-n", type=int, help="listeners per process in the picows scenario (10,000; quick 500)")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, help="py-spy pass (default: on in full mode)")
    p.add_argument("--profile-n", type=int, help="N for the profile pass (default: the largest size)")
    p.add_argument("--no-doc", action="store_true", help="do not append to the doc nor draw charts")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--charts-dir", type=Path, help="default: docs/ in full mode, loadtest/reports/ in quick mode")
    p.add_argument("--reports-dir", type=Path, default=REPO / "loadtest" / "reports")
    p.add_argument("--render", type=Path, metavar="JSON", help="run nothing: report and chart a saved run's JSON")
    args = p.parse_args(argv)
    mode = QUICK if args.quick else FULL
    args.sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else mode["sizes"]
    for name in ("rounds", "burst_rounds", "handshakes", "handshake_reps", "join_clients", "join_reps"):
        if getattr(args, name) is None:
            setattr(args, name, mode[name])
    args.budget_s = mode["budget_s"]
    args.cross_n, args.cross_memory_n = mode["cross_n"], mode["cross_memory_n"]
    args.audio_n, args.audio_s = mode["audio_n"], mode["audio_s"]
    if args.scenarios is None:  # the side by side with picows needs its 10,000 a process: not in a quick run
        args.scenarios = ",".join(s for s in SCENARIOS if not (args.quick and s == "picows"))
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(args.scenarios) - set(SCENARIOS) - set(ON_REQUEST):
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if max(args.sizes) > MAX_PER_NODE:
        p.error(f"N over {MAX_PER_NODE:,} needs several nodes (open files are capped at 20,000 per process)")
    if args.burst_size < 10:
        p.error("--burst-size must be at least 10 (the issue asks for >= 10 messages per tick)")
    if not 0 < args.conns_per_worker < 19_000:
        p.error("--conns-per-worker must stay below 19,000 (open files per process)")
    if args.profile is None:
        args.profile = not args.quick
    return args


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """Each scenario's result as one JSON line on stdout."""
    print(json.dumps(result, ensure_ascii=False), flush=True)


def invocation(argv: list[str]) -> str:
    if os.environ.get("MAKELEVEL"):
        return "make bench" + (f" BENCH_ARGS={shlex.quote(' '.join(argv))}" if argv else "")
    return " ".join([".venv/bin/python -m loadtest.bench", *map(shlex.quote, argv)])


def git_commit() -> str:
    """HEAD, and whether the node's code in the working tree differs from it (others commit concurrently)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD") or "?"
        return head + (" + uncommitted changes in server/" if git("status", "--porcelain", "server") else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


class Run:
    """The results of one run, saved after every step, so an interrupted or partly failed run keeps what it measured."""

    def __init__(self, results: dict[str, Any], json_path: Path) -> None:
        self.results = results
        self.json_path = json_path

    def save(self) -> None:
        self.json_path.write_text(json.dumps(self.results, indent=1, ensure_ascii=False))

    async def step(self, where: str, coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any] | None:
        """Run one scenario; a failure is logged and recorded, and the run goes on with the next one."""
        try:
            result = await coro
        except Exception as exc:
            log(f"{where} FAILED: {type(exc).__name__}: {exc}")
            self.results["errors"].append({"where": where, "error": f"{type(exc).__name__}: {exc}"})
            self.save()
            return None
        emit(result)
        self.save()
        return result


async def at_size(args: argparse.Namespace, opts: BenchOptions, run: Run, n: int) -> dict[str, Any]:
    """Memory, then single broadcasts, then bursts, on one fresh node with N citizens."""
    wanted = set(args.scenarios)
    results = run.results
    log(f"N = {n:,}: starting a node and client workers")
    stage = await Stage.create(opts, n + memory.WARMUP_CITIZENS, f"n{n}")
    results["meta"].setdefault("server_command", stage.server.command())
    try:
        if "memory" in wanted:
            if row := await run.step(f"memory N={n}", memory.measure(stage, n)):
                log(f"memory: {row['kb_per_conn']} KB per connection ({row['joined']:,} joined)")
                results["memory"].append(row)
        else:
            await stage.add_citizens(n)
        if "broadcast" in wanted:
            coro = broadcast.measure(stage, rounds=args.rounds, per_round=1, text_bytes=args.text_bytes)
            if row := await run.step(f"broadcast N={n}", coro):
                log(
                    f"broadcast: {row['cpu']['us_per_delivery']} µs/delivery, last receiver p99 "
                    f"{row['latency']['last_receiver_ms'].get('p99')} ms, lost {row['check']['lost']}"
                )
                results["broadcast"].append(row)
        if "burst" in wanted:
            coro = broadcast.measure(
                stage, rounds=args.burst_rounds, per_round=args.burst_size, text_bytes=args.text_bytes
            )
            if row := await run.step(f"burst N={n}", coro):
                log(f"burst: {row['cpu']['deliveries_per_cpu_s']:,} deliveries per CPU-s, lost {row['check']['lost']}")
                results["burst"].append(row)
    finally:
        await stage.close()
    return {"scenario": "size", "n": n}


async def scenarios(args: argparse.Namespace, opts: BenchOptions, run: Run) -> None:
    results = run.results
    if set(args.scenarios) & {"memory", "broadcast", "burst"}:
        for n in args.sizes:
            await run.step(f"N={n}", at_size(args, opts, run, n))
    if "memory" in args.scenarios:
        if row := await run.step("anatomy", anatomy.measure_in_subprocess()):
            results["anatomy"] = row
    if "floor" in args.scenarios:
        n = max(args.sizes) + memory.WARMUP_CITIZENS
        log(f"floor: one transport.write per listener, no engine, N = {n:,}")
        results["floor"] = []
        for same_core in (False, True) if opts.pin else (False,):
            if row := await run.step("floor", floor.measure(opts, n=n, rounds=args.rounds, same_core=same_core)):
                results["floor"].append(row)
                log(f"floor, clients {row['clients']}: {row['cpu']['us_per_delivery']} µs/delivery")
    if "handshake" in args.scenarios:
        log(f"handshakes: {args.handshake_reps} × {args.handshakes:,}")
        coro = handshake.measure(
            opts,
            per_rep=args.handshakes,
            reps=args.handshake_reps,
            workers=args.handshake_workers,
            concurrency=args.handshake_concurrency,
        )
        if row := await run.step("handshake", coro):
            results["handshake"] = row
            log(f"handshakes: {row['per_server_cpu_s_median']:,} per node CPU-s")
    if "joins" in args.scenarios:
        log(f"joins as citizens make them: {args.join_reps} × {args.join_clients:,} over 2 nodes on Valkey")
        with unpinned():  # as loadtest/bench/joins.py runs alone: nodes, Valkey and clients on both cores
            if row := await run.step("joins", _joins(args)):
                results["joins"] = row
                log(f"joins: {row['joins_per_node_cpu_s_median']:,} per node CPU-s")
    if "crossnode" in args.scenarios:
        log("cross-node through Redis")
        coro = crossnode.measure(
            opts, n=args.cross_n, rounds=args.rounds, text_bytes=args.text_bytes, memory_n=args.cross_memory_n
        )
        with unpinned():  # two or three nodes, Redis and the clients: the kernel balances them over both cores
            if row := await run.step("crossnode", coro):
                results["crossnode"] = row
                log(f"cross-node: {row.get('skipped', 'done')}")
    if "audio" in args.scenarios:
        log(f"audio: a leader streaming to {args.audio_n:,} listeners, 30 % and 100 % in audio mode")
        with unpinned():  # one node and its listeners, placed by the kernel (its node starts from a worker thread)
            if row := await run.step("audio", audio.measure(args.audio_n, args.audio_s, [0.3, 1.0])):
                results["audio"] = row
    if "picows" in args.scenarios:
        w = vs_picows.Workload(per_node=args.picows_n or (500 if args.quick else 10_000), text_bytes=200)
        log(f"picows side by side: 2 processes × {w.per_node:,} listeners each, JanSamvad then picows")
        with unpinned():  # the workload is unpinned: 2 servers, Valkey and the clients on both cores
            coro = vs_picows.measure(opts, w, order=vs_picows.abba(1 if args.quick else 2))
            if row := await run.step("picows", coro):
                results["picows"] = row
                log(f"picows ÷ JanSamvad: {row.get('picows_over_jansamvad')}")
    if args.profile:
        n = args.profile_n or max(args.sizes)
        log(f"profile pass at N = {n:,} (py-spy)")
        coro = profiled.measure(
            opts, n=n, rounds=args.rounds, burst_size=args.burst_size, burst_rounds=args.burst_rounds, handshakes=0
        )
        if row := await run.step("profile", coro):
            results["profile"] = row


async def _joins(args: argparse.Namespace) -> dict[str, Any]:
    """`loadtest/bench/joins.py` with its defaults (JSON, the hello in the offer, picows' client), `join_reps` times."""
    runs = []
    for _ in range(args.join_reps):
        opts = joins.options(clients=args.join_clients, client=args.join_client, reports_dir=str(args.reports_dir))
        runs.append(await joins.measure(opts))
    per_join = statistics.median(r["node_cpu_us_per_join"] for r in runs)
    return {
        "scenario": "joins",
        "clients": args.join_clients,
        "command": f"python -m loadtest.bench.joins --clients {args.join_clients} --client {args.join_client}",
        "runs": runs,
        "node_cpu_us_per_join_median": round(per_join, 1),
        "joins_per_node_cpu_s_median": round(1e6 / per_join),
        "joined": sum(r["joined"] for r in runs),
        "failed": sum(sum(r["failed"].values()) for r in runs),
    }


async def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    opts = BenchOptions(
        quick=args.quick,
        pin=pin,
        conns_per_worker=args.conns_per_worker,
        text_bytes=args.text_bytes,
        tick_ms=args.tick_ms,
        reports_dir=args.reports_dir,
        lifetime_s=args.budget_s + 120,
    )
    if pin:
        os.sched_setaffinity(0, {CLIENT_CORE})  # the orchestrator and its leader connections go with the clients
    started = time.monotonic()
    stamp = dt.datetime.now(dt.UTC)
    json_path = args.reports_dir / f"bench-{stamp:%Y%m%d-%H%M%S}.json"
    results: dict[str, Any] = {
        "meta": {
            "started": f"{stamp:%Y-%m-%d %H:%M} UTC",
            "mode": "quick" if args.quick else "full",
            "command": invocation(argv),
            "commit": git_commit(),
            "versions": procstat.versions(),
            "machine": procstat.machine(),
            "pinning": (
                f"node on core {SERVER_CORE}; client processes, leaders and orchestrator on core {CLIENT_CORE} "
                "(taskset / sched_setaffinity); joins, cross-node, picows and audio unpinned"
                if pin
                else "none (both cores shared by node and clients)"
            ),
            "pinning_short": f"node core {SERVER_CORE}, clients core {CLIENT_CORE}" if pin else "unpinned",
            "load_before": procstat.loadavg(),
            "tick_ms": args.tick_ms,
            "text_bytes": args.text_bytes,
            "conns_per_worker": args.conns_per_worker,
            "json_path": str(json_path.relative_to(REPO)) if json_path.is_relative_to(REPO) else str(json_path),
        },
        "memory": [],
        "broadcast": [],
        "burst": [],
        "errors": [],
    }
    bench = Run(results, json_path)
    try:
        async with asyncio.timeout(args.budget_s):
            await scenarios(args, opts, bench)
    except TimeoutError:
        log(f"the run's budget of {args.budget_s:.0f} s is over: reporting what was measured")
        results["errors"].append({"where": "run", "error": f"budget of {args.budget_s:.0f} s exceeded"})
    results["targets"] = targets.evaluate(results)
    results["meta"]["load_after"] = procstat.loadavg()
    results["meta"]["wall_s"] = time.monotonic() - started
    results["meta"].setdefault("server_command", "")
    bench.save()
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.reports_dir.mkdir(parents=True, exist_ok=True)
    if args.render:
        results = json.loads(args.render.read_text())
        results["targets"] = targets.evaluate(results)
        args.quick = results["meta"]["mode"] == "quick"
    else:
        results = uvloop.run(run(args, argv))
    # A quick run never replaces the full run's charts in docs/.
    args.charts_dir = args.charts_dir or (args.reports_dir if args.quick else REPO / "docs")
    json_path = REPO / results["meta"]["json_path"]
    if not args.no_doc:
        prefix = "bench-quick" if args.quick else "bench"
        written = charts.render(results, args.charts_dir, prefix)
        results["meta"]["charts"] = [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in written]
        report.append(args.doc, report.render(results))
        log(f"appended to {args.doc}; charts: {', '.join(results['meta']['charts']) or 'none'}")
    json_path.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    emit({"targets": results["targets"]})
    log(f"results: {json_path}")
    for t in results["targets"]:
        log(f"target {t['status']:>7}: {t['target']}: {t['measured']} {t['unit']} (limit {t['limit']:,})")
    lost = (
        any(row["check"]["lost"] or not row["check"]["ok"] for key in ("broadcast", "burst") for row in results[key])
        or any(row["lost"] for row in results["memory"])
        or bool(results.get("joins", {}).get("failed"))
        or any(r["check"]["lost"] or not r["check"]["ok"] for r in results.get("picows", {}).get("runs", []))
    )
    if lost:
        log("LOSSES: some deliveries or joins were lost (see the JSON)")
    if results["errors"]:
        log(f"{len(results['errors'])} step(s) failed: {results['errors']}")
    return 1 if lost or results["errors"] else 0
