"""Region search at Bihar scale: the time of one lookup in a tree of ~1.09 lakh units (docs/benchmarks.md).

Builds the generated Bihar tree (38 real districts, 243 constituencies, 8,400 panchayats, 1 lakh booths:
jansamvad.regions_generate), times the index build, then each query below `--rounds` times in process (what a node
spends per `GET /api/regions`, without HTTP). With `--http` it also starts a real node (`jansamvad serve --regions`)
on loopback and times the whole request with a keep-alive client. Prints one JSON object; bounded in count and time.

    PYTHONPATH=. .venv/bin/python -m loadtest.bench.regions_search [--rounds 2000] [--http 500]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlencode

from jansamvad.region_search import RegionIndex
from jansamvad.regions import write_csv
from jansamvad.regions_generate import generate

# (what a person types, level filter, subtree): autocomplete's first keystrokes, Hinglish, Devanagari, a booth code.
QUERIES: list[tuple[str, str | None, str | None]] = [
    ("g", None, None),
    ("ga", None, None),
    ("gaya", None, None),
    ("muzaffarpur", None, None),
    ("मुज़", None, None),
    ("पटना", "district", None),
    ("ram", "booth", None),
    ("राम", "panchayat", None),
    ("ram", "booth", "BR-236"),
    ("", "ac", "BR-236"),
    ("BR-B054321", None, None),
    ("xyzzy", None, None),
]


def _stats(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def in_process(index: RegionIndex, rounds: int) -> list[dict[str, Any]]:
    results = []
    for q, level, within in QUERIES:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            found = index.search(q, level=level, within=within, limit=10)
            samples.append(time.perf_counter() - start)
        results.append({"q": q, "level": level, "within": within, "found": len(found), **_stats(samples)})
    return results


def over_http(csv_path: str, requests: int, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    from jansamvad.localredis import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "jansamvad", "serve", "--port", str(port), "--secret", "b" * 40]
    cmd += ["--admin-key", "bench-admin-key-0123", "--regions", csv_path, "--log-level", "warning"]
    node = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        deadline = time.monotonic() + timeout_s
        while True:  # bounded: the node starts, then builds its index on the first search
            try:
                conn.request("GET", "/api/regions?q=gaya")
                response = conn.getresponse()
                body = json.loads(response.read())
                if body["units"]:
                    break
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            if time.monotonic() > deadline:
                raise TimeoutError("the node did not answer with the tree in time")
            time.sleep(0.2)
        results = []
        for q, level, within in QUERIES:
            params = {"q": q, **({"level": level} if level else {}), **({"within": within} if within else {})}
            path = "/api/regions?" + urlencode(params)
            samples = []
            for _ in range(requests):
                start = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                samples.append(time.perf_counter() - start)
                assert response.status == 200, response.status
            results.append({"q": q, "level": level, "within": within, **_stats(samples)})
        conn.close()
        return results
    finally:
        node.terminate()
        node.wait(timeout=30)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000, help="in-process searches per query")
    parser.add_argument("--http", type=int, default=0, help="HTTP requests per query against a real node (0: none)")
    args = parser.parse_args(argv)
    rss_before = _rss_mb()
    start = time.perf_counter()
    tree = generate()
    generated_s = time.perf_counter() - start
    rss_tree = _rss_mb()
    start = time.perf_counter()
    index = RegionIndex(tree)
    build_s = time.perf_counter() - start
    rss_index = _rss_mb()
    report: dict[str, Any] = {
        "units": len(tree),
        "generate_s": round(generated_s, 2),
        "index_build_s": round(build_s, 2),
        "rss_tree_mb": round(rss_tree - rss_before, 1),  # the tree (what the generator also leaves: approximate)
        "rss_index_mb": round(rss_index - rss_tree, 1),
        "load_avg": os.getloadavg(),
        "in_process": in_process(index, args.rounds),
    }
    if args.http:
        with tempfile.NamedTemporaryFile("w", suffix=".csv", encoding="utf-8", delete=False) as f:
            f.write(write_csv(tree))
        try:
            report["http"] = over_http(f.name, args.http)
        finally:
            os.unlink(f.name)
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
