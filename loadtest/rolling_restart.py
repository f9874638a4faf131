"""Roll a local cluster under a locust load and check that nothing is lost.

    .venv/bin/python loadtest/rolling_restart.py --users 200 --duration 60s

Starts `jansamvad cluster up`'s parts (Redis, 3 nodes, HAProxy: jansamvad.cluster.LocalCluster), runs the locust
`townhall` scenario through the load balancer (loadtest/run_locust.py --target), and while it runs restarts the
nodes one at a time (SIGTERM: drain with `reconnect` + 1012, start again, wait for /readyz). The exit status is
locust's verdict: non-zero when speech was lost, duplicated or late past the scenario's thresholds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from jansamvad.cluster import LocalCluster
from run_locust import parse_duration, stop  # this script's folder is first on sys.path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--duration", type=parse_duration, default=60, help="e.g. 60s, 2m (default 60s)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--reports", default=str(REPO / "loadtest" / "reports"))
    args = parser.parse_args()
    if not shutil.which("haproxy"):
        print("rolling_restart: haproxy is not installed (apt-get install haproxy)", file=sys.stderr)
        return 2
    limits = ["--max-connections-per-ip", "100000", "--joins-per-minute-per-ip", "100000"]
    limits += ["--ask-per-minute-per-ip", "100000", "--drain-window", "2"]
    cluster = LocalCluster(nodes=args.nodes, redis="standalone", balancer=True, extra_args=limits)
    cluster.start()
    try:
        print(f"rolling_restart: entry {cluster.entry_url}, {args.nodes} nodes", flush=True)
        # The admin key goes in the environment: out of `ps`, and a key that starts with "-" (token_urlsafe makes
        # one in 64) would read as an option to argparse.
        locust = subprocess.Popen(
            [sys.executable, str(REPO / "loadtest" / "run_locust.py"), "--scenario", "townhall",
             "--users", str(args.users), "--duration", f"{args.duration}s", "--target", cluster.entry_url,
             "--reports", args.reports],
            env={**os.environ, "JANSAMVAD_ADMIN_KEY": cluster.admin_key},
        )  # fmt: skip
        total = args.duration
        rolled: list[str] = []

        def roll() -> None:
            time.sleep(total * 0.25)  # let the audience join first
            for index in range(args.nodes):
                if locust.poll() is not None:
                    return
                cluster.kill(index, signal.SIGTERM)
                cluster.restart(index)
                rolled.append(f"node{index}")
                time.sleep(total * 0.5 / args.nodes)

        roller = threading.Thread(target=roll, daemon=True)
        roller.start()
        try:
            status = locust.wait(timeout=total + 180)
        except subprocess.TimeoutExpired:
            stop(locust, signal.SIGINT, 30)  # it writes its reports on SIGINT; SIGKILL after 30 s
            print("rolling_restart: locust did not finish in time", flush=True)
            return 4
        roller.join(5)
        print(f"rolling_restart: restarted {', '.join(rolled) or 'nothing'}; locust exited with {status}", flush=True)
        return status if rolled == [f"node{i}" for i in range(args.nodes)] else 3
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
