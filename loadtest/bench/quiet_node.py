"""A quiet node's own CPU (issue 19 item 4): `python -m loadtest.bench.quiet_node`

One node on one Valkey holds N joined citizens of one live town hall who say nothing and hear nothing (the bench's
node settings: pings every 600 s, so none fall in the window); it measures the node's CPU per second over a window,
after the joins have settled. With `--before DIR` (a copy of another commit's `server/`, e.g. from `git archive`)
the runs alternate between that engine and this one (ABBA), each on a fresh node and Valkey, so the two are compared
in one session. The node on core 0, Valkey and the clients on core 1. Loopback only; every wait is bounded.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from jansamvad.auth import TokenService
from jansamvad.protocol.roles import Role

from .harness import CLIENT_CORE, SERVER_CORE
from .idle import open_listeners
from .procstat import cpu, loadavg
from .profile import PySpy, summarize
from .rawclient import RawCitizen
from .scenarios.crossnode import redis_server
from .serverproc import ServerConfig, ServerProcess

JOIN_TIMEOUT_S = 120.0


async def _open(port: int, tokens: list[str]) -> list[asyncio.Transport]:
    return await open_listeners(port, tokens, RawCitizen, JOIN_TIMEOUT_S)


async def one_run(
    engine: str, before: Path | None, listeners: int, settle_s: float, window_s: float, profile: Path | None = None
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="quiet-node-"))
    saved = os.environ.get("PYTHONPATH")
    if engine == "before" and before is not None:  # the node's child process imports that engine first
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(before), saved) if p)
    try:
        async with redis_server(workdir / "valkey") as url:
            config = ServerConfig(
                secrets.token_urlsafe(32), secrets.token_urlsafe(18), workdir / "node.log", cpu=SERVER_CORE
            )
            config.redis_url = url
            node = ServerProcess(config)
            await node.start()
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
            try:
                th = await node.create_townhall("शांत")
                await node.request("POST", f"/api/townhalls/{th}/start", {}, admin=True)
                issuer = TokenService(config.secret)
                tokens = [issuer.issue(sub=f"c-{i}", role=Role.CITIZEN, th=th, ttl_s=3600)[0] for i in range(listeners)]
                transports = await _open(node.port, tokens)
                await asyncio.sleep(settle_s)  # the joins' viewer counts and roll-up writes are done
                load_before = loadavg()
                spy = (
                    PySpy(node.pid, profile / f"quiet-{engine}-{secrets.token_hex(3)}.raw", rate=1000)
                    if profile
                    else None
                )
                if spy is not None:
                    spy.start()
                first, t0 = cpu(node.pid), time.monotonic()
                await asyncio.sleep(window_s)
                used, wall = cpu(node.pid) - first, time.monotonic() - t0
                if spy is not None:
                    await spy.stop()
                stats = await node.stats()
                for transport in transports:
                    transport.abort()
                return {
                    "engine": engine,
                    "listeners": listeners,
                    "connections": stats.get("connections"),
                    "window_s": round(wall, 2),
                    "idle_cpu_pct_of_core": round(used.sched_ns / 1e9 / wall * 100, 3),
                    "user_s": round(used.user_s, 3),
                    "system_s": round(used.system_s, 3),
                    "loadavg_before": load_before,
                    "loadavg_after": loadavg(),
                    **({"profile": summarize(spy.out, top=12)} if spy is not None else {}),
                }
            finally:
                await node.stop()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    order = ["after", "before", "before", "after"] if opts.before else ["after", "after"]
    runs = []
    for _ in range(opts.repeats):
        for engine in order:
            runs.append(await one_run(engine, opts.before, opts.listeners, opts.settle, opts.window, opts.profile))
            print(json.dumps(runs[-1]), flush=True)
    summary: dict[str, Any] = {}
    for engine in dict.fromkeys(order):
        rates = sorted(r["idle_cpu_pct_of_core"] for r in runs if r["engine"] == engine)
        summary[engine] = {"runs": rates, "mean": round(sum(rates) / len(rates), 3)}
    return {"scenario": "quiet_node", "runs": runs, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listeners", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds after the joins before the window")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of measured quiet")
    parser.add_argument("--repeats", type=int, default=1, help="ABBA sets (AA without --before)")
    parser.add_argument("--before", type=Path, help="another engine's server/ directory, for ABBA pairs")
    parser.add_argument("--profile", type=Path, help="py-spy (1,000 Hz) the node over each window, raw files here")
    opts = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CORE})
    print(json.dumps(asyncio.run(run(opts))))


if __name__ == "__main__":
    main()
