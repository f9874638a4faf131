"""One command for a locust load test: start a node (unless --target), set a town hall up, run locust headless for a
bounded time, keep the reports, and exit non-zero when the scenario's thresholds are missed.

    .venv/bin/python loadtest/run_locust.py --scenario townhall --users 500 --duration 60s
    .venv/bin/python loadtest/run_locust.py --target https://townhall.example.org --admin-key "$KEY" --users 2000
    make loadtest SCENARIO=reconnect-storm USERS=1000 DURATION=2m

Reports go to loadtest/reports/<timestamp>-<scenario>/ (git-ignored): locust's report.html and CSVs, summary.json
(the verdict), locust.log, and for a local node node.log and node_stats.json. loadtest/reports/latest points at the
newest. Anything after `--` goes to locust unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from jansamvad.localredis import free_port
from jansamvad.regions import write_csv
from jansamvad.regions_generate import generate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from jansamvad_locust import rest, scenarios  # noqa: E402  (plain modules: no locust, no gevent)

REPORTS = HERE / "reports"
NODE_READY_TIMEOUT_S = 20.0
NODE_STOP_TIMEOUT_S = 15.0
LOCUST_GRACE_S = 90.0  # startup, stopping users and writing reports, on top of --duration
STOP_TIMEOUT_S = 5  # locust --stop-timeout: users get this long to leave politely
ROLLUP_EVERY_S = 2.0  # scenario booths: how often the launcher reads the roll-up, as the war room's dashboard does


def parse_duration(text: str) -> int:
    """locust's --run-time format (90, 90s, 2m, 1h30m) in seconds."""
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 60s, 2m, 1h30m)")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=list(scenarios.SCENARIOS), default="townhall")
    parser.add_argument("--users", type=int, default=500, help="peak users (citizens + moderators + 1 leader)")
    parser.add_argument("--duration", type=parse_duration, default=60, help="e.g. 60s, 5m (default 60s)")
    parser.add_argument("--spawn-rate", type=float, default=0, help="users started per second (default users/10)")
    parser.add_argument("--processes", type=int, default=1, help="locust processes on this machine (-1: one a core)")
    parser.add_argument("--target", default="", help="base URL of a running deployment; no local node is started")
    parser.add_argument("--admin-key", default=os.environ.get("JANSAMVAD_ADMIN_KEY", ""), help="for --target")
    parser.add_argument("--th", default="", help="an existing town hall (with --leader-token, --moderator-token)")
    parser.add_argument("--leader-token", default=os.environ.get("JANSAMVAD_LT_LEADER_TOKEN", ""))
    parser.add_argument(
        "--moderator-token",
        default=os.environ.get("JANSAMVAD_LT_MODERATOR_TOKEN", ""),
        help="one per moderator, comma-separated (moderators share them round-robin)",
    )
    parser.add_argument(
        "--screen-token",
        default=os.environ.get("JANSAMVAD_LT_SCREEN_TOKEN", ""),
        help="with --th: booth screen tokens, comma-separated (scenario booths)",
    )
    parser.add_argument(
        "--units-file",
        type=Path,
        default=None,
        help="with --target: the unit codes citizens join by, one a line (scenario booths; the local node gets a "
        "generated tree and its booths)",
    )
    parser.add_argument("--reports", type=Path, default=REPORTS, help="where the run's report folder goes")
    parser.add_argument("--node-arg", action="append", default=[], help="extra flag for the local node (repeat)")
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    else:
        extra = []
    args = parser.parse_args(argv)
    if args.users < 3:
        parser.error("--users must be at least 3 (a leader, a moderator, a citizen)")
    if args.target and not args.admin_key and not (args.th and args.leader_token):
        parser.error("--target needs --admin-key, or --th with --leader-token (and --moderator-token)")
    return args, extra


def raise_open_file_limit(needed: int) -> None:
    """Every user holds a socket (and the local node one more): lift the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextmanager
def local_node(port: int, users: int, report: Path, extra: list[str]) -> Iterator[tuple[str, str]]:
    """A node on loopback for the run: yields (base URL, admin key); stops it (SIGTERM, then SIGKILL) afterwards."""
    admin_key = secrets.token_urlsafe(18)
    env = {**os.environ, "JANSAMVAD_SECRET": secrets.token_urlsafe(32), "JANSAMVAD_ADMIN_KEY": admin_key}
    argv = [sys.executable, "-m", "jansamvad", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # Every simulated citizen comes from 127.0.0.1: the per-IP cap must not be what the test measures.
    argv += ["--log-level", "warning", "--max-connections-per-ip", str(2 * users + 100)]
    argv += ["--joins-per-minute-per-ip", str(10 * users + 100), "--max-unjoined-per-ip", str(2 * users + 100)]
    argv += ["--ip-handshakes-per-second", "1000000", "--ip-handshake-burst", "1000000", *extra]
    base = f"http://127.0.0.1:{port}"
    with open(report / "node.log", "wb") as log:
        node = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rest.wait_ready(base, NODE_READY_TIMEOUT_S)
            yield base, admin_key
            save_node_stats(base, report)
        finally:
            stop(node, signal.SIGTERM, NODE_STOP_TIMEOUT_S)


def save_node_stats(base: str, report: Path) -> None:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
            stats = json.loads(response.read())
    except OSError as exc:
        stats = {"error": str(exc)}
    (report / "node_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"node: {json.dumps(stats)}")


def stop(proc: subprocess.Popen[Any], sig: signal.Signals, timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tee(source: IO[bytes], sink: IO[bytes]) -> None:
    """Copy locust's output to the console and to locust.log, line by line, until it closes its end."""
    for line in iter(source.readline, b""):
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
        sink.write(line)


def region_units(args: argparse.Namespace, scenario: scenarios.Scenario, report: Path) -> Path | None:
    """Scenario booths: the unit codes citizens join by, in a file. For a local node, a generated Bihar tree with
    `scenario.units` booths (passed to the node with --regions) and its booths; for a target, --units-file."""
    if not scenario.units:
        return None
    if args.target:
        return args.units_file
    tree = generate(panchayats=max(1, scenario.units // 5), booths=scenario.units)
    (report / "regions.csv").write_text(write_csv(tree), encoding="utf-8")
    args.node_arg += ["--regions", str(report / "regions.csv")]
    units = report / "units.txt"
    units.write_text("".join(f"{u.code}\n" for u in tree.units.values() if u.level == "booth"), encoding="utf-8")
    return units


class RollupWatch:
    """Reads the war room's roll-up of the town hall every ROLLUP_EVERY_S while locust runs, as the dashboard does,
    and keeps what it saw (rollup.json): the counts at the top, and how long each read took under the load."""

    def __init__(self, base: str, admin_key: str, th: str) -> None:
        self.url = f"{base}/api/townhalls/{th}/rollup"
        self.admin_key = admin_key
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(ROLLUP_EVERY_S):
            request = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {self.admin_key}"})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    view = json.loads(response.read())
            except OSError:
                self.errors += 1
                continue
            read_ms = round((time.monotonic() - started) * 1000, 1)
            self.samples.append({"t": round(time.time(), 1), "read_ms": read_ms, **view["counts"]})

    def __enter__(self) -> RollupWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(10)

    def save(self, report: Path) -> None:
        (report / "rollup.json").write_text(json.dumps({"samples": self.samples, "errors": self.errors}, indent=1))
        if not self.samples:
            print(f"roll-up: no reading ({self.errors} failed)")
            return
        peak = max(self.samples, key=lambda s: s["reached"])
        reads = sorted(s["read_ms"] for s in self.samples)
        print(
            f"roll-up at its peak: {peak['viewers']} viewers, {peak['screens']} screens, {peak['audience']} people at "
            f"screens, {peak['reached']} people reached; {peak['joins']} joins, {peak['asked']} asked, "
            f"{peak['approved']} approved; {len(reads)} reads, median {reads[len(reads) // 2]} ms, max {reads[-1]} ms, "
            f"{self.errors} failed"
        )


def run_locust(
    args: argparse.Namespace, base: str, hall: rest.Hall, report: Path, extra: list[str], units: Path | None = None
) -> int:
    spawn_rate = args.spawn_rate or max(1.0, args.users / 10)
    argv = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--only-summary"]
    argv += ["--host", base, "--users", str(args.users), "--spawn-rate", str(spawn_rate)]
    argv += ["--run-time", f"{args.duration}s", "--stop-timeout", str(STOP_TIMEOUT_S)]
    argv += ["--csv", str(report / "locust"), "--csv-full-history", "--html", str(report / "report.html")]
    if args.processes != 1:
        argv += ["--processes", str(args.processes)]
    argv += extra
    # Tokens travel in the environment, not on the command line (which every user of the machine can read).
    env = {
        **os.environ,
        "JANSAMVAD_LT_SCENARIO": args.scenario,
        "JANSAMVAD_LT_TH": hall.th,
        "JANSAMVAD_LT_LEADER_TOKEN": hall.leader_token,
        "JANSAMVAD_LT_MODERATOR_TOKEN": hall.moderator_token,
        "JANSAMVAD_LT_SCREEN_TOKEN": hall.screen_token,
        "JANSAMVAD_LT_UNITS_FILE": str(units) if units else "",
        "JANSAMVAD_LT_SUMMARY_JSON": str(report / "summary.json"),
    }
    env.pop("JANSAMVAD_LT_ADMIN_KEY", None)
    with open(report / "locust.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.stdout is not None
        copier = threading.Thread(target=tee, args=(proc.stdout, log), daemon=True)
        copier.start()
        try:
            code = proc.wait(args.duration + LOCUST_GRACE_S)
        except subprocess.TimeoutExpired:
            print(f"locust did not finish within {args.duration + LOCUST_GRACE_S:.0f} s; stopping it", file=sys.stderr)
            stop(proc, signal.SIGINT, 15)
            code = 3
        finally:
            copier.join(5)
    return code


def main(argv: list[str]) -> int:
    args, extra = arguments(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = args.reports / f"{stamp}-{args.scenario}"
    report.mkdir(parents=True, exist_ok=True)
    latest = args.reports / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(report.name)
    raise_open_file_limit(4 * args.users + 1024)

    scenario = scenarios.get(args.scenario)
    units = region_units(args, scenario, report)
    node = _remote(args) if args.target else local_node(free_port(), args.users, report, args.node_arg)
    with node as (base, admin_key):
        if args.th:
            hall = rest.Hall(args.th, args.leader_token, args.moderator_token, args.screen_token)
        else:
            title = f"लोड टेस्ट {args.scenario} {stamp}"
            codes = units.read_text(encoding="utf-8").split() if units else []
            screen_units = random.Random(16).sample(codes, min(scenario.screens, len(codes)))
            scopes = scenario.moderator_scopes if not args.target else ()  # districts of the generated tree
            hall = rest.create_hall(base, admin_key, title, scenario.moderators, screen_units, scopes)
        print(f"load test: scenario {args.scenario}, {args.users} users, {args.duration} s against {base}")
        print(f"town hall {hall.th}; reports in {report}")
        if units and admin_key:
            with RollupWatch(base, admin_key, hall.th) as watch:
                code = run_locust(args, base, hall, report, extra, units)
            watch.save(report)
        else:
            code = run_locust(args, base, hall, report, extra, units)

    summary = report / "summary.json"
    if not summary.exists():
        print(f"FAIL: locust wrote no {summary.name} (exit code {code}); see {report / 'locust.log'}", file=sys.stderr)
        return code or 2
    passed = json.loads(summary.read_text())["passed"]
    print(f"{'PASS' if passed else 'FAIL'}: report {report / 'report.html'}")
    return 0 if passed and code == 0 else code or 1


@contextmanager
def _remote(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    base = args.target.rstrip("/")
    rest.wait_ready(base, NODE_READY_TIMEOUT_S)
    yield base, args.admin_key


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
